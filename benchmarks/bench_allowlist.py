"""Large allow-lists and segments (issue 17): a 1,000,000-member segment in <= 32 MB
per process and <= 1 us per lookup, stored and followed as an operator would.

The segment is written through the writer (:class:`flagstaff.admin.Admin`) to a SQLite
store: a million ids is a ~12 MB document, so its users are stored in 512 KiB parts
(:mod:`flagstaff.parts`); no limit is lifted. A :class:`~flagstaff.follower.Follower`
(what a :class:`~flagstaff.client.Client` runs) then loads the store, compiling the
head and its parts into one segment.

Each figure is measured twice in the same run: with the compact
:class:`~flagstaff.members.MemberSet` that lists longer than
:data:`~flagstaff.members.COMPACT_ABOVE` compile into, and with plain sets
(``COMPACT_ABOVE`` lifted, so the list compiles into a dict). The plain figure is the
row's floor column.

* write: seconds for ``Admin.set`` of the segment (validate, split, parts, head);
* memory: what a follower of the store holds once loaded (tracemalloc): the compiled
  segment and the parts' texts it keeps (to compile the head again when it changes, and
  for the snapshot cache) and everything else it holds;
* load: seconds for that follower to load the store (no tracemalloc);
* lookups: median ns per call through ``evaluate`` (a flag whose targeting rule names the
  segment, as linked by the follower) and ``Client.is_enabled``, over 1,000 distinct
  member ids (hit) and 1,000 distinct strangers (miss);
* a flag's own ``users`` list is one document (at most 4 MiB): it is measured at
  :data:`FLAG_MEMBERS` ids, about the most such a flag holds.

Run alone: ``.venv/bin/python benchmarks/run.py --only bench_allowlist [--quick]``.
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

from flagstaff import Context, evaluate
from flagstaff.admin import Admin
from flagstaff.client import Client, Options
from flagstaff.follower import Follower
from flagstaff.members import COMPACT_ABOVE
from flagstaff.model import parse_flag
from flagstaff.stores.sqlite import SQLiteStore

GROUP = "allow-list"
_NOT_COMPACT = 10**12
FLAG_MEMBERS = 300_000
"""A flag's ``users`` list measured: ~3.6 MB of ids, under the 4 MiB document limit."""
IN_SEGMENT = {"targeting": [{"segments": ["big"], "serve": "on"}]}


@contextmanager
def _compact_above(threshold: int) -> Iterator[None]:
    """Compile lists longer than ``threshold`` compactly (no other limit is touched)."""
    with (
        mock.patch("flagstaff.checks.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.model.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.segments.COMPACT_ABOVE", threshold),
    ):
        yield


def _median_ns(call: Callable[[Context], Any], contexts: Sequence[Context], batches: int) -> float:
    for ctx in contexts:  # warm up: every id's str hash is computed once, as per request
        call(ctx)
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for ctx in contexts:
            call(ctx)
        samples.append((time.perf_counter_ns() - t0) / len(contexts))
    return statistics.median(samples)


def run(quick: bool) -> list[Row]:
    return rows(200_000 if quick else 1_000_000, 5 if quick else 15)


def rows(n: int, batches: int) -> list[Row]:
    """The table for an ``n``-member segment, lookups timed as the median of ``batches``."""
    users = [f"user-{i}" for i in range(n)]
    label = f"{n:,}-member"
    step = max(1, n // 1000)
    hits = [Context(user_id=f"user-{i}") for i in range(0, n, step)][:1000]
    misses = [Context(user_id=f"stranger-{i}") for i in range(1000)]
    table: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-allowlist-") as tmp:
        path = f"{tmp}/flags.db"
        store = SQLiteStore(path)
        try:
            t0 = time.perf_counter()
            Admin(store, author="bench").set("segment:big", {"users": users})
            wrote = time.perf_counter() - t0
            Admin(store, author="bench").set("in_big", IN_SEGMENT)
            parts = sum(1 for k in store.load().records if ":part:" in k)
        finally:
            store.close()
        del users
        url = f"sqlite:///{path}"
        table.append(Row(GROUP, f"write: {label} segment to SQLite, {parts} parts", wrote, "s", None, ""))
        table += _follower_rows(url, label, hits, misses, batches, n)
    table += _flag_rows(min(n, FLAG_MEMBERS), batches)
    return table


def _load(url: str) -> Follower:
    follower = Follower(url)
    if not follower.wait_loaded(600):
        raise RuntimeError(f"{url} not loaded")
    return follower


def _held_by_follower(url: str) -> float:
    """MB (10**6 bytes) a follower of ``url`` holds once loaded (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        follower = _load(url)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    follower.close()
    return (after - before) / 1e6


def _follower_rows(
    url: str, label: str, hits: list[Context], misses: list[Context], batches: int, n: int
) -> list[Row]:
    mem: dict[bool, float] = {}
    load: dict[bool, float] = {}
    figures: dict[tuple[str, str, bool], float] = {}
    for compact in (False, True):
        with _compact_above(COMPACT_ABOVE if compact else _NOT_COMPACT):
            mem[compact] = _held_by_follower(url)
            gc.collect()
            t0 = time.perf_counter()
            follower = _load(url)
            load[compact] = time.perf_counter() - t0
            client = Client(url, Options(timeout=600))
        try:
            flag = follower.snapshot.flags["in_big"]
            assert evaluate(flag, hits[-1]).enabled and not evaluate(flag, misses[0]).enabled
            assert client.is_enabled("in_big", hits[0])
            for case, contexts in (("hit", hits), ("miss", misses)):
                figures["evaluate", case, compact] = _median_ns(partial(evaluate, flag), contexts, batches)
                figures["client", case, compact] = _median_ns(
                    partial(client.is_enabled, "in_big"), contexts, batches
                )
        finally:
            client.close()
            follower.close()
    target = "<= 32 MB" if n == 1_000_000 else ""
    out = [
        Row(
            GROUP,
            f"memory: follower of a {label} segment (floor: plain)",
            mem[True],
            "MB",
            mem[False],
            target,
        ),
        Row(GROUP, f"load: follower of a {label} segment", load[True], "s", load[False], ""),
    ]
    for what, name in (("evaluate", "evaluate"), ("client", "Client.is_enabled")):
        for case in ("hit", "miss"):
            value, floor = figures[what, case, True], figures[what, case, False]
            out.append(Row(GROUP, f"{name}: {label} segment, {case}", value, "ns/call", floor, "<= 1000 ns"))
    return out


def _flag_rows(n: int, batches: int) -> list[Row]:
    """A flag's own ``users`` list of ``n`` ids (one document, under the 4 MiB limit)."""
    doc = {"users": [f"user-{i}" for i in range(n)]}
    step = max(1, n // 1000)
    hits = [Context(user_id=f"user-{i}") for i in range(0, n, step)][:1000]
    misses = [Context(user_id=f"stranger-{i}") for i in range(1000)]
    figures: dict[tuple[str, bool], float] = {}
    for compact in (False, True):
        with _compact_above(COMPACT_ABOVE if compact else _NOT_COMPACT):
            flag = parse_flag("allow", doc)
        for case, contexts in (("hit", hits), ("miss", misses)):
            figures[case, compact] = _median_ns(partial(evaluate, flag), contexts, batches)
    return [
        Row(
            GROUP,
            f"evaluate: {n:,}-member flag users list, {case}",
            figures[case, True],
            "ns/call",
            figures[case, False],
            "<= 1000 ns",
        )
        for case in ("hit", "miss")
    ]


def main() -> None:
    print(f"{'':<60} {'compact':>10} {'plain':>10}")
    for row in run("--quick" in sys.argv):
        today = "" if row.floor is None else f"{row.floor:,.2f}"
        print(f"{row.name:<60} {row.value:>10,.2f} {today:>10} {row.unit:<8} target {row.target}")


if __name__ == "__main__":
    main()
