"""Client benchmarks: evaluation through ``client.is_enabled`` and snapshot upkeep.

Evaluation must cost what the bare engine costs (the client adds a snapshot
dict lookup and a constant fast path); applying one change to a 10,000-flag
snapshot must be O(1)-ish (one parse and one dict copy), and a cold load of
10,000 flags must stay under half a second.

Run alone: ``.venv/bin/python benchmarks/bench_client.py [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

from flagstaff import Context
from flagstaff.client import Client, Options
from flagstaff.stores import Change, Record, StoreState
from flagstaff.stores.memory import MemoryStore

try:
    from benchmarks._row import Row
except ImportError:  # until the shared plumbing lands, or when run as a script

    class Row(NamedTuple):  # type: ignore[no-redef]
        group: str
        name: str
        value: float
        unit: str
        floor: float | None
        target: str


GROUP = "client"


def _per_call_ns(fn: Callable[[int], None], calls: int, repeats: int) -> float:
    """Median over ``repeats`` runs of ``fn(calls)``, in ns per call."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn(calls)
        samples.append((time.perf_counter_ns() - start) / calls)
    return statistics.median(samples)


def _documents() -> dict[str, object]:
    docs: dict[str, object] = {
        "boolean": "on",
        "rollout": {"percentage": 10},
        "allow_list": {"users": [f"user{i}" for i in range(10_000)]},
        "five_selectors": {
            "admin": True,
            "beta": True,
            "users": ["alice", "bob", "carol"],
            "subreddits": ["python", "programming"],
            "percent_loggedin": 5,
        },
        "experiment": {
            "experiment": {
                "experiment_id": 4242,
                "loggedin": True,
                "variants": {"red": 20, "green": 20, "blue": 20},
            }
        },
    }
    for i in range(95):
        docs[f"filler_{i}"] = [
            {"percentage": i % 100},
            {"users": [f"user{j}" for j in range(i, i + 20)]},
            "off",
            {"groups": ["staff"], "percentage": 30},
            "on",
        ][i % 5]
    return docs


def run(quick: bool = False) -> list[Row]:
    calls = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    store = MemoryStore()
    for name, doc in _documents().items():
        store.put(name, json.dumps(doc))
    client = Client(store, Options(timeout=10))
    try:
        return _evaluation_rows(client, calls, repeats) + _snapshot_rows(quick)
    finally:
        client.close()


def _evaluation_rows(client: Client, calls: int, repeats: int) -> list[Row]:
    users = [Context(user_id=f"user{i}", groups=frozenset({"member"})) for i in range(100_000)]
    table = {f"flag{i}": i for i in range(100)}
    keys = [c.user_key or b"" for c in users]
    is_enabled = client.is_enabled
    variant = client.variant

    def floor(n: int) -> None:
        # The floor: a dict lookup and crc32 % 100, the least a percentage check can do.
        for i in range(n):
            table.get("flag7")
            zlib.crc32(keys[i % 100_000]) % 100

    def check(name: str, pick: Callable[[int], Context]) -> Callable[[int], None]:
        def loop(n: int) -> None:
            for i in range(n):
                is_enabled(name, pick(i))

        return loop

    by_index: Callable[[int], Context] = lambda i: users[i % 100_000]  # noqa: E731
    hit = users[1234]
    miss = Context(user_id="stranger")
    five = Context(user_id="dave", groups=frozenset({"member"}), location="golang")

    def variants(n: int) -> None:
        for i in range(n):
            variant("experiment", users[i % 100_000])

    floor_ns = _per_call_ns(floor, calls, repeats)
    rows = [
        Row(GROUP, "floor: dict get + crc32 % 100", floor_ns, "ns/call", None, ""),
        ("boolean flag", check("boolean", by_index), "<= 400 ns"),
        ("10% rollout, 100k users", check("rollout", by_index), "<= 800 ns"),
        ("allow-list 10k, hit", check("allow_list", lambda i: hit), "<= 600 ns"),
        ("allow-list 10k, miss", check("allow_list", lambda i: miss), "<= 600 ns"),
        ("five selectors (miss all)", check("five_selectors", lambda i: five), "<= 2000 ns"),
        ("experiment variant", variants, "<= 2000 ns"),
    ]
    out: list[Row] = [rows[0]]  # type: ignore[list-item]
    for label, fn, target in rows[1:]:  # type: ignore[misc]
        out.append(
            Row(
                GROUP,
                f"client.is_enabled: {label}",
                _per_call_ns(fn, calls, repeats),
                "ns/call",
                floor_ns,
                target,
            )
        )
    all_calls = max(200, calls // 100)
    everything = client.all

    def all_flags(n: int) -> None:
        for i in range(n):
            everything(users[i % 100_000])

    all_us = _per_call_ns(all_flags, all_calls, repeats) / 1000
    out.append(
        Row(
            GROUP,
            f"client.all: {len(client.snapshot)} flags, one user",
            all_us,
            "us/call",
            floor_ns * len(client.snapshot) / 1000,
            "<= 50 us",
        )
    )
    return out


def _snapshot_rows(quick: bool) -> list[Row]:
    n = 10_000
    records = {
        f"flag_{i}": Record(f"flag_{i}", json.dumps({"percentage": i % 100, "owner": "team"}), 1)
        for i in range(n)
    }
    state = StoreState(n, records, True)
    store = MemoryStore()
    client = Client(store, Options(timeout=10))
    try:
        # Cold load: parse and validate every document, build the snapshot.
        loads = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            client._adopt(StoreState(state.revision, state.records, True))
            loads.append(time.perf_counter() - start)
            client._documents.clear()  # force a cold parse next time
        # One change applied to the 10,000-flag snapshot.
        applies = []
        changed: set[str] = set()
        for k in range(50 if quick else 300):
            rev = n + 1 + k
            change = Change("flag_7", Record("flag_7", json.dumps({"percentage": k % 100}), k + 2), rev)
            start = time.perf_counter()
            client._apply(change, changed)
            applies.append(time.perf_counter() - start)
        assert len(client.snapshot) == n
    finally:
        client.close()
    return [
        Row(
            GROUP,
            f"apply one change to a {n:,}-flag snapshot",
            statistics.median(applies) * 1000,
            "ms",
            None,
            "<= 1 ms",
        ),
        Row(GROUP, f"load {n:,} flags cold", statistics.median(loads), "s", None, "<= 0.5 s"),
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    for row in run(quick):
        floor = "" if row.floor is None else f"(floor {row.floor:,.1f})"
        print(f"{row.name:<50} {row.value:>10,.2f} {row.unit:<8} {floor:<18} target {row.target}")


if __name__ == "__main__":
    main()
