"""Guard benchmark: one guardrail check, as the server's guard loop makes it each round.

A 50% flag with one guardrail, exposures without a variant (each unit is placed by
deciding the flag for it, the costly case), ``errors`` events for about 4% of units;
times :meth:`flagstaff.guard.Guard.check` (what every round costs per guarded flag) and
one :meth:`flagstaff.http.guarding.GuardLoop.round` over 10 such flags. 200k units
(quick: 20k).

Run alone: ``.venv/bin/python benchmarks/bench_guard.py [--quick]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

from flagstaff.admin import Admin
from flagstaff.client import Client
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.guard import Guard
from flagstaff.http.guarding import GuardLoop
from flagstaff.http.metrics import Metrics
from flagstaff.stores import open_store

GROUP = "guard"
T0 = 1_767_225_600.0  # 2026-01-01 UTC
FLAGS = 10
DOC = {"percentage": 50, "guardrails": [{"metric": "errors", "max_increase": 0.02, "min_units": 100}]}


def run(quick: bool) -> list[Row]:
    n = 20_000 if quick else 200_000
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/flags.db")
        admin = Admin(store)
        for i in range(FLAGS):
            admin.set(f"flag_{i}", DOC)
        sink = SQLiteSink(Path(tmp) / "events.db")
        for i in range(FLAGS):
            sink.write([Event(EventKind.EXPOSURE, T0 + u, f"u{u}", f"flag_{i}") for u in range(n)])
        erring = [u for u in range(n) if rng.random() < 0.04]
        sink.write([Event(EventKind.TRACK, T0 + n + u, f"u{u}", name="errors") for u in erring])
        sink.close()
        guard = Guard(store, Path(tmp) / "events.db")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            verdict = guard.check("flag_0")
            times.append(time.perf_counter() - t0)
        assert verdict.results[0].treatment_units + verdict.results[0].control_units == n
        client = Client(store)
        loop = GuardLoop(store, str(Path(tmp) / "events.db"), lambda: client.snapshot, Metrics(), interval=0)
        t0 = time.perf_counter()
        checks = loop.round()
        round_time = time.perf_counter() - t0
        assert len(checks) == FLAGS and all(c.error is None for c in checks)
        client.close()
        store.close()
    label = f"{n // 1000:,}k"
    return [
        Row(GROUP, f"Guard.check: {label} units placed by the flag, 1 guardrail", min(times), "s", None, ""),
        Row(GROUP, f"GuardLoop.round: {FLAGS} guarded flags x {label} units", round_time, "s", None, ""),
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
