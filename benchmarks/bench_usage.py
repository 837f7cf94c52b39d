"""What telemetry adds to a check: usage counting, and a repeat exposure of a plain flag.

One table, every figure from the same run, batches interleaved so load hits all alike:

* ``client.is_enabled`` on a percentage flag with no recorder: the floor;
* the same with ``RecorderOptions(usage=True, flags="none")``: usage counted (target
  <= +30 ns);
* the same with ``flags="all"``, every exposure already remembered (the deduplicated
  case, the common one): target <= +150 ns;
* both together; and an experiment's check with and without its (deduplicated)
  exposure, as ``bench_exposures`` measures it.

A batch is 1,000 checks (well under a millisecond) and there are hundreds of rounds: on a
shared, loaded machine some batches of every client run undisturbed. So each figure is the
fastest batch of its client, and "added" the difference of two such figures. The "(paired
median)" rows give the median, over rounds, of the difference between the two batches of a
round (a round times each client once, back to back): that includes what load adds.

Run alone: ``.venv/bin/python benchmarks/run.py --only bench_usage [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

from flagstaff import Context
from flagstaff.client import Client, Options
from flagstaff.exposures import Exposed, ListSink, Recorder, RecorderOptions
from flagstaff.stores.memory import MemoryStore

GROUP = "usage"
EXP = {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 20, "b": 20}}}


def _time(client: Client, flag: str, contexts: Sequence[Context], repeat: int) -> float:
    is_enabled = client.is_enabled
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        for ctx in contexts:
            is_enabled(flag, ctx)
    return (time.perf_counter_ns() - t0) / (repeat * len(contexts))


def run(quick: bool) -> list[Row]:
    store = MemoryStore()
    store.put("ramp", "50")
    store.put("exp", json.dumps(EXP))
    setups: dict[str, RecorderOptions | None] = {
        "none": None,
        "usage": RecorderOptions(usage=True, flags=Exposed.NONE),
        "all": RecorderOptions(flags=Exposed.ALL),
        "both": RecorderOptions(usage=True, flags=Exposed.ALL),
        "experiments": RecorderOptions(),
    }
    recorders = {k: None if o is None else Recorder(ListSink(), o) for k, o in setups.items()}
    clients = {k: Client(store, Options(timeout=30, exposures=r)) for k, r in recorders.items()}
    try:
        users = [Context(user_id=f"user-{i}") for i in range(2000)]
        base = clients["none"]
        exposed = [c for c in users if base.evaluate("exp", c).experiment_id is not None][:1000]
        ramp_users = users[:1000]
        for client in clients.values():  # remember every exposure: the repeats are deduplicated
            _time(client, "ramp", ramp_users, 1)
            _time(client, "exp", exposed, 1)
        rounds, repeat = (100, 1) if quick else (600, 1)
        plain: dict[str, list[float]] = {k: [] for k in ("none", "usage", "all", "both")}
        exp: dict[str, list[float]] = {"none": [], "experiments": []}
        for _ in range(rounds):
            for k, samples in plain.items():
                samples.append(_time(clients[k], "ramp", ramp_users, repeat))
            for k, samples in exp.items():
                samples.append(_time(clients[k], "exp", exposed, repeat))
        for k in ("all", "both"):
            stats = recorders[k].stats()  # type: ignore[union-attr]
            assert stats.recorded == len(ramp_users) + len(exposed), stats  # once each, all else deduplicated
    finally:
        for client in clients.values():
            client.close()
        for recorder in recorders.values():
            if recorder is not None:
                recorder.close()
        store.close()

    def added(samples: dict[str, list[float]], k: str) -> float:
        return min(samples[k]) - min(samples["none"])

    def paired(samples: dict[str, list[float]], k: str) -> float:
        return statistics.median(a - b for a, b in zip(samples[k], samples["none"], strict=True))

    floor, exp_floor = min(plain["none"]), min(exp["none"])
    rows = [Row(GROUP, "is_enabled: percentage flag, no recorder (floor)", floor, "ns/call", None, "")]
    for k, what, target in (
        ("usage", "usage counted", "<= 30 ns"),
        ("all", "repeat exposure (flags=all)", "<= 150 ns"),
        ("both", "usage + repeat exposure", "<= 180 ns"),
    ):
        rows.append(Row(GROUP, f"is_enabled + {what}", min(plain[k]), "ns/call", floor, ""))
        rows.append(Row(GROUP, f"  {what}: added", added(plain, k), "ns/call", None, target))
        rows.append(Row(GROUP, f"  {what}: added (paired median)", paired(plain, k), "ns/call", None, ""))
    exp_with = min(exp["experiments"])
    rows += [
        Row(GROUP, "is_enabled: experiment, no recorder (floor)", exp_floor, "ns/call", None, ""),
        Row(GROUP, "is_enabled + repeat experiment exposure", exp_with, "ns/call", exp_floor, ""),
        Row(
            GROUP,
            "  repeat experiment exposure: added",
            added(exp, "experiments"),
            "ns/call",
            None,
            "<= 150 ns",
        ),
        Row(
            GROUP,
            "  repeat experiment exposure: added (paired median)",
            paired(exp, "experiments"),
            "ns/call",
            None,
            "",
        ),
    ]
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
