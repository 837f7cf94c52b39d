"""Tests of the HTTP server: the API, the dashboard, golden cases over HTTP."""
