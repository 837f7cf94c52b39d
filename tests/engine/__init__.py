"""Tests of the engine: documents, rules, bucketing, evaluation."""
