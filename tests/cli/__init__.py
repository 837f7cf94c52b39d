"""Tests of the command line: commands, demo, scan."""
