"""Tests of the integrations: web frameworks, templates, OpenFeature."""
