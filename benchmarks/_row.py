"""The one row type every ``benchmarks/bench_*.py`` module returns (see BENCH.md)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Row"]


class Row(NamedTuple):
    group: str  # e.g. "evaluation", "client", "sqlite"
    name: str  # what was measured
    value: float  # the measured number (median unless the name says otherwise)
    unit: str  # "ns/call", "ms", "s", "MB"...
    floor: float | None  # the floor measured in the same run, if any
    target: str  # the target from the issue, e.g. "<= 400 ns", or ""
