"""Moved to :mod:`flagstaff.cli.demo` (``flagstaff demo``); this old import path still works."""

from flagstaff.cli.demo import DEMO_USERS, cell, decide_all, default_demo_store, find_examples, run_demo

__all__ = ["DEMO_USERS", "cell", "decide_all", "default_demo_store", "find_examples", "run_demo"]
