"""Report benchmark: ``flagstaff report`` over 1M exposures + 1M metric events in SQLite.

Writes 1M exposures (800k units; a fifth of them exposed twice, 0.1% to a second variant)
and 1M metric events (a conversion and a valued metric, from exposed and unexposed keys,
some before exposure) through :class:`~flagstaff.exposures.SQLiteSink` in batches of
10,000 (bounded memory), then times :func:`flagstaff.report.build` for both metrics: the
issue's target is <= 5 s. Also: the same with CUPED (a 7-day pre-period read from the store),
and a repeated report answered by :class:`~flagstaff.report.ReportCache` (the store
unchanged: the stamp check only). Quick mode: 100k of each.

Run alone: ``.venv/bin/python benchmarks/bench_report.py [--quick]``.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.report import Query, ReportCache, build

GROUP = "report"
BATCH = 10_000
T0 = 1_767_225_600.0  # 2026-01-01 UTC
VARIANTS = ("control_1", "control_2", "treatment")


def _exposures(n: int, rng: random.Random) -> Iterator[Event]:
    units = n * 4 // 5
    for i in range(n):
        unit = i if i < units else rng.randrange(units)  # the rest: re-exposures
        variant = VARIANTS[unit % 3]
        if i >= units and rng.random() < 0.005:
            variant = VARIANTS[(unit + 1) % 3]  # a unit that saw a second variant
        yield Event(EventKind.EXPOSURE, T0 + unit * 0.5 + (i >= units) * 60, f"u{unit}", "exp", variant, 7, 1)


def _events(n: int, exposures: int, rng: random.Random) -> Iterator[Event]:
    units = exposures * 4 // 5
    for _ in range(n):
        unit = rng.randrange(units + units // 10)  # some keys never exposed
        t = T0 + unit * 0.5 + rng.uniform(-30, 86400)
        if rng.random() < 0.5:
            yield Event(EventKind.TRACK, t, f"u{unit}", name="purchase")
        else:
            yield Event(EventKind.TRACK, t, f"u{unit}", name="revenue", value=round(rng.expovariate(0.05), 2))


def _write(sink: SQLiteSink, events: Iterator[Event]) -> None:
    batch: list[Event] = []
    for event in events:
        batch.append(event)
        if len(batch) == BATCH:
            sink.write(batch)
            batch = []
    if batch:
        sink.write(batch)


def run(quick: bool) -> list[Row]:
    n = 100_000 if quick else 1_000_000
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.db"
        sink = SQLiteSink(path)
        t0 = time.perf_counter()
        _write(sink, _exposures(n, rng))
        _write(sink, _events(n, n, rng))
        written = time.perf_counter() - t0
        sink.close()
        weights = dict.fromkeys(VARIANTS, 1.0)
        times = []
        for _ in range(1 if not quick else 3):
            t0 = time.perf_counter()
            result = build(path, "exp", metrics=["purchase", "revenue"], weights=weights)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cuped = build(path, Query("exp", ("purchase", "revenue"), cuped_days=7), weights=weights)
        with_cuped = time.perf_counter() - t0
        cache = ReportCache()
        query = Query("exp", ("purchase", "revenue"))
        cache.get(path, query, weights)
        t0 = time.perf_counter()
        for _ in range(100):
            cache.get(path, query, weights)
        cached = (time.perf_counter() - t0) / 100
        assert cache.hits == 100 and all(m.comparisons[0].cuped for m in cuped.result.metrics)
    assert sum(result.units.values()) > 0 and result.excluded > 0 and len(result.result.metrics) == 2
    label = f"{n // 1000:,}k" if n < 1_000_000 else f"{n // 1_000_000}M"
    return [
        Row(
            GROUP,
            f"report: {label} exposures + {label} metric events, 2 metrics",
            min(times),
            "s",
            None,
            "<= 5 s" if not quick else "",
        ),
        Row(
            GROUP,
            f"report: {label} + {label}, 2 metrics, CUPED (7-day pre-period)",
            with_cuped,
            "s",
            None,
            "",
        ),
        Row(GROUP, "report: repeated, unchanged store (ReportCache hit)", cached * 1e3, "ms", None, ""),
        Row(
            GROUP, f"write {label} + {label} events through SQLiteSink (10k batches)", written, "s", None, ""
        ),
    ]


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
