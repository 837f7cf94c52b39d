"""Tests of the compatibility layers for the seed systems."""
