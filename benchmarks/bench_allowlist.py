"""Large allow-lists and segments (issue 17): a 1,000,000-member ``users`` list in
<= 32 MB per process and <= 1 us per lookup.

Each figure is measured twice in the same run: with the compact
:class:`~flagstaff.members.MemberSet` that lists longer than
:data:`~flagstaff.members.COMPACT_ABOVE` compile into, and with today's sets
(``COMPACT_ABOVE`` lifted, so every list compiles into a frozenset, or a dict for a
segment). The "today" figure is the row's floor column.

* memory: what parsing the document's JSON text leaves allocated (tracemalloc), the
  canonical document text the flag or segment keeps included;
* parse: seconds from the JSON text to the compiled flag or segment (no tracemalloc);
* lookups: median ns per call through ``evaluate`` and through ``Client.is_enabled``
  (a flag with the list, and a flag whose targeting rule names the segment), over 1,000
  distinct member ids (hit) and 1,000 distinct strangers (miss).

A million ids is a ~14 MB document, past the 4 MiB document limit
(:data:`flagstaff.document.MAX_DOCUMENT_BYTES`); this benchmark lifts the limit to
measure the engine, and says so.

Run alone: ``.venv/bin/python benchmarks/run.py --only bench_allowlist [--quick]``.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
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
from flagstaff.client import Client, Options
from flagstaff.members import COMPACT_ABOVE
from flagstaff.model import parse_flag, parse_text
from flagstaff.segments import parse_segment_text
from flagstaff.stores.memory import MemoryStore

GROUP = "allow-list"
_NOT_COMPACT = 10**12


@contextmanager
def _compact_above(threshold: int) -> Iterator[None]:
    """Compile lists longer than ``threshold`` compactly; lift the document size limit."""
    with (
        mock.patch("flagstaff.checks.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.model.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.segments.COMPACT_ABOVE", threshold),
        mock.patch("flagstaff.model.MAX_DOCUMENT_BYTES", 1 << 30),
        mock.patch("flagstaff.segments.MAX_DOCUMENT_BYTES", 1 << 30),
    ):
        yield


def _held_mb(build: Callable[[], Any]) -> float:
    """MB (10**6 bytes) still allocated once ``build()``'s result is all that is kept."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / 1e6


def _seconds(build: Callable[[], Any], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.perf_counter()
        build()
        samples.append(time.perf_counter() - t0)
    return min(samples)


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
    """The table for an ``n``-member list, lookups timed as the median of ``batches``."""
    users = [f"user-{i}" for i in range(n)]
    flag_doc = {"users": users}
    segment_doc = {"users": users}
    label = f"{n:,}-member"
    step = max(1, n // 1000)
    hits = [Context(user_id=f"user-{i}") for i in range(0, n, step)][:1000]
    misses = [Context(user_id=f"stranger-{i}") for i in range(1000)]

    table: list[Row] = []
    mem_target = "<= 32 MB" if n == 1_000_000 else ""
    text = json.dumps(flag_doc)  # as a store gives it: the members are decoded, not shared
    for what, build in (
        ("flag", lambda: parse_text("allow", text)),
        ("segment", lambda: parse_segment_text("big", text)),
    ):
        with _compact_above(_NOT_COMPACT):
            today = _held_mb(build)
            today_s = _seconds(build, 1)
        with _compact_above(COMPACT_ABOVE):
            compact = _held_mb(build)
            compact_s = _seconds(build, 1 if n < 1_000_000 else 3)
        table.append(Row(GROUP, f"memory: {label} {what} (floor: today)", compact, "MB", today, mem_target))
        table.append(
            Row(GROUP, f"parse: {label} {what} document (floor: today)", compact_s, "s", today_s, "")
        )

    evaluated: dict[tuple[str, bool], float] = {}
    for compact in (False, True):
        with _compact_above(COMPACT_ABOVE if compact else _NOT_COMPACT):
            flag = parse_flag("allow", flag_doc)
        for case, contexts in (("hit", hits), ("miss", misses)):
            evaluated[case, compact] = _median_ns(partial(evaluate, flag), contexts, batches)
    for case in ("hit", "miss"):
        table.append(
            Row(
                GROUP,
                f"evaluate: {label} users list, {case}",
                evaluated[case, True],
                "ns/call",
                evaluated[case, False],
                "<= 1000 ns",
            )
        )
    table.extend(_client_rows(flag_doc, segment_doc, label, hits, misses, batches))
    return table


def _client_rows(
    flag_doc: dict[str, Any],
    segment_doc: dict[str, Any],
    label: str,
    hits: list[Context],
    misses: list[Context],
    batches: int,
) -> list[Row]:
    figures: dict[tuple[str, str, bool], float] = {}
    for compact in (False, True):
        with _compact_above(COMPACT_ABOVE if compact else _NOT_COMPACT):
            store = MemoryStore()
            store.put("allow", json.dumps(flag_doc))
            store.put("segment:big", json.dumps(segment_doc))
            store.put("in_big", json.dumps({"targeting": [{"segments": ["big"], "serve": "on"}]}))
            client = Client(store, Options(timeout=120))
        try:
            assert client.is_enabled("allow", hits[0]) and client.is_enabled("in_big", hits[0])
            for name in ("allow", "in_big"):
                for case, contexts in (("hit", hits), ("miss", misses)):
                    figures[name, case, compact] = _median_ns(
                        partial(client.is_enabled, name), contexts, batches
                    )
        finally:
            client.close()
            store.close()
    rows = []
    for name, what in (("allow", "users list"), ("in_big", "segment")):
        for case in ("hit", "miss"):
            rows.append(
                Row(
                    GROUP,
                    f"Client.is_enabled: {label} {what}, {case}",
                    figures[name, case, True],
                    "ns/call",
                    figures[name, case, False],
                    "<= 1000 ns",
                )
            )
    return rows


def main() -> None:
    print(f"{'':<60} {'compact':>10} {'today':>10}")
    for row in run("--quick" in sys.argv):
        today = "" if row.floor is None else f"{row.floor:,.2f}"
        print(f"{row.name:<60} {row.value:>10,.2f} {today:>10} {row.unit:<8} target {row.target}")


if __name__ == "__main__":
    main()
