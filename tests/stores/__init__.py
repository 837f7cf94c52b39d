"""Tests of the stores: every backend, the conformance suite, network faults."""
