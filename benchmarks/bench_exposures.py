"""Exposure benchmarks: what recording an exposure adds to a check, and a sink that is down.

* An experiment check through ``client.variant`` with a :class:`~flagstaff.exposures.Recorder`
  whose every exposure is already remembered (the deduplicated case, the common one) against
  the same check with no recorder, batches interleaved: the issue's target is <= +150 ns.
  A batch is 1,000 checks and there are hundreds: on a shared, loaded machine some batches
  of each client run undisturbed, so the figures are each client's fastest batch; the
  "paired median" row is the median difference of the two batches of a round (load included).
* The first exposure of a unit (every check a new user, so every exposure is recorded):
  what recording adds to the check, fastest batch of each (no target; it was ~1.5 us).
* A sink that raises on every write (slowly: the queue fills too), under 1M checks of
  distinct users (100k in quick mode): 0 exceptions reach the caller, and
  ``dropped + failed`` equals every exposure recorded or dropped (none lost uncounted).

Run alone: ``.venv/bin/python benchmarks/bench_exposures.py [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flagstaff import Context
from flagstaff.client import Client, Options
from flagstaff.exposures import Event, ListSink, Recorder, RecorderOptions
from flagstaff.stores.memory import MemoryStore

try:
    from _row import Row
except ImportError:  # until the shared plumbing has landed
    from typing import NamedTuple

    class Row(NamedTuple):  # type: ignore[no-redef]
        group: str
        name: str
        value: float
        unit: str
        floor: float | None
        target: str


GROUP = "exposures"
EXP = {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 20, "b": 20}}}


class DownSink:
    """A sink whose backend is down and slow to say so: every write raises after 20 ms
    (so the queue also fills up and drops)."""

    def write(self, batch: Sequence[Event]) -> None:
        time.sleep(0.02)
        raise ConnectionError("the warehouse is down")

    def close(self) -> None:
        pass


def _client(store: MemoryStore, recorder: Recorder | None) -> Client:
    return Client(store, Options(timeout=30, exposures=recorder))


def _time_variant(client: Client, contexts: Sequence[Context], repeat: int) -> float:
    variant = client.variant
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        for ctx in contexts:
            variant("exp", ctx)
    return (time.perf_counter_ns() - t0) / (repeat * len(contexts))


def _hot_path_rows(store: MemoryStore, quick: bool) -> list[Row]:
    plain = _client(store, None)
    recorder = Recorder(ListSink())
    recording = _client(store, recorder)
    try:
        users = [Context(user_id=f"user-{i}") for i in range(2000)]
        exposed = [c for c in users if plain.evaluate("exp", c).experiment_id is not None][:1000]
        for ctx in exposed:  # remembered: every later exposure is the deduplicated case
            recording.variant("exp", ctx)
        batches, repeat = (100, 1) if quick else (600, 1)
        without, with_ = [], []
        for _ in range(batches):
            without.append(_time_variant(plain, exposed, repeat))
            with_.append(_time_variant(recording, exposed, repeat))
        base, rec = min(without), min(with_)
        paired = statistics.median(w - b for w, b in zip(with_, without, strict=True))
        assert recorder.stats().recorded == len(exposed)
    finally:
        plain.close()
        recording.close()
        recorder.close()
    return [
        Row(GROUP, "client.variant: experiment, no recorder", base, "ns/call", None, ""),
        Row(GROUP, "client.variant: experiment, exposure deduplicated", rec, "ns/call", base, ""),
        Row(
            GROUP,
            "exposure recorded on the hot path (deduplicated): added",
            rec - base,
            "ns/call",
            None,
            "<= 150 ns",
        ),
        Row(GROUP, "exposure recorded on the hot path: added (paired median)", paired, "ns/call", None, ""),
    ]


def _first_rows(store: MemoryStore, quick: bool) -> list[Row]:
    plain = _client(store, None)
    recorder = Recorder(ListSink(), RecorderOptions(max_queue=10_000_000, max_keys=10_000_000))
    recording = _client(store, recorder)
    batches, size = (60, 300) if quick else (300, 300)
    try:
        users = [Context(user_id=f"new-{i}") for i in range(batches * size)]
        without, with_ = [], []
        for b in range(batches):
            batch = users[b * size : (b + 1) * size]  # new units for both: never seen before
            without.append(_time_variant(plain, batch, 1))
            with_.append(_time_variant(recording, batch, 1))
        recorded = recorder.stats().recorded
    finally:
        plain.close()
        recording.close()
        recorder.close()
    base, rec = min(without), min(with_)
    return [
        Row(
            GROUP,
            f"client.variant: experiment, new unit ({recorded:,} exposures recorded)",
            rec,
            "ns/call",
            base,
            "",
        ),
        Row(GROUP, "first exposure of a unit: added", rec - base, "ns/call", None, ""),
    ]


def _sink_down_rows(store: MemoryStore, quick: bool) -> list[Row]:
    checks = 100_000 if quick else 1_000_000
    recorder = Recorder(DownSink(), RecorderOptions(max_queue=10_000, interval=0.05))
    client = _client(store, recorder)
    exceptions = 0
    try:
        t0 = time.perf_counter()
        is_enabled = client.is_enabled
        for i in range(checks):
            try:
                is_enabled("exp", Context(user_id=f"u{i}"))
            except Exception:
                exceptions += 1
        elapsed = time.perf_counter() - t0
        flushed = recorder.flush(30)
    finally:
        client.close()
        recorder.close()
    stats = recorder.stats()
    assert flushed and stats.queued == 0
    exposures = stats.recorded + stats.dropped  # every exposure not deduplicated (distinct users)
    lost = stats.dropped + stats.failed
    return [
        Row(GROUP, f"sink down: {checks:,} checks, exceptions to callers", exceptions, "count", None, "0"),
        Row(
            GROUP,
            f"sink down: {exposures:,} exposures, lost minus counted",
            exposures - lost,
            "count",
            None,
            "0",
        ),
        Row(GROUP, "sink down: dropped (queue full)", stats.dropped, "count", None, ""),
        Row(GROUP, "sink down: failed (sink raised)", stats.failed, "count", None, ""),
        Row(GROUP, "sink down: check with an exposure recorded", elapsed / checks * 1e9, "ns/call", None, ""),
    ]


def run(quick: bool) -> list[Row]:
    store = MemoryStore()
    store.put("exp", json.dumps(EXP))
    try:
        return _hot_path_rows(store, quick) + _first_rows(store, quick) + _sink_down_rows(store, quick)
    finally:
        store.close()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
