"""Targeting benchmarks (issue 14): ordered rules against today's selectors, and a cold load with segments.

(a) A flag with five targeting rules whose fifth matches and serves a 10% rollout,
beside today's five-selector document (the same five conditions as selectors,
none matching, then a 10% ``percentage``: the same checks and the same hash).
Both through ``flagstaff.evaluate`` and through ``client.is_enabled``, over
distinct users. The legacy case is the floor of the targeting row, so the
``x floor`` column is the ratio the issue bounds (target <= 2x). The legacy
row's own floor is the plain ``zlib.crc32(uid.encode()) % 100`` function of
``bench_eval.py``.

(b) A cold load of 10,000 flags and 1,000 segments: every document parsed and the
snapshot built (each flag linked to the segments and prerequisites it names),
then the same through a new client on a memory store (store load included).
Target <= 0.5 s. A third row builds with the cyclic garbage collector paused: a
load allocates some hundred thousand tracked objects (closures, tuples, frozen
dataclasses) that all survive, so the collector runs full passes over the growing
heap that find nothing (in a fresh process: 6 full passes, 0 objects collected,
about two thirds of the 1.5 s); the row shows what pausing it during a load
would save.

Run alone: ``python benchmarks/bench_targeting.py [--quick]``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

from flagstaff import Context, Snapshot, evaluate, parse_flag
from flagstaff.client import Client, Options
from flagstaff.document import segment_key
from flagstaff.model import Flag, parse_text
from flagstaff.segments import Segment, parse_segment_text
from flagstaff.stores.memory import MemoryStore

GROUP = "targeting"

_ALLOW = ["umbrae", "ajacksified", *(f"member-{i}" for i in range(50))]

LEGACY: dict[str, Any] = {
    "salt": "five",
    "admin": True,
    "employee": True,
    "gold": True,
    "users": _ALLOW,
    "subreddits": ["wtf", "aww"],
    "percentage": 10,
}
"""Today's five-selector case (bench_eval's) with a 10% percentage after it (one salt for both
documents, so the same users are in)."""

RULES: dict[str, Any] = {
    "salt": "five",
    "targeting": [
        {"groups": ["admin"], "serve": "on"},
        {"groups": ["employee"], "serve": "on"},
        {"groups": ["gold"], "serve": "on"},
        {"users": _ALLOW, "serve": "on"},
        {
            "when": [{"attribute": "location", "op": "in", "value": ["wtf", "aww"]}],
            "serve": {"percentage": 10},
        },
    ],
    "default": "off",
}
"""The same five conditions as ordered rules; the fifth matches and serves a 10% rollout."""


def _median_ns(body: Callable[[], int], batches: int) -> float:
    """``body`` runs a loop and returns how many calls it made; median ns/call."""
    body()  # warm up
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        calls = body()
        samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(samples)


def _paired_ns(base: Callable[[], int], new: Callable[[], int], batches: int) -> tuple[float, float]:
    """Median ns/call of two loops measured in alternating batches, so that a load
    change on the machine hits both alike (the ratio is what the issue bounds)."""
    base()
    new()
    a, b = [], []
    for _ in range(batches):
        for body, samples in ((base, a), (new, b)):
            t0 = time.perf_counter_ns()
            calls = body()
            samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(a), statistics.median(b)


def _loop_eval(flag: Flag, contexts: Sequence[Context], repeat: int) -> Callable[[], int]:
    def body() -> int:
        ev = evaluate
        for _ in range(repeat):
            for ctx in contexts:
                ev(flag, ctx)
        return repeat * len(contexts)

    return body


def _loop_client(client: Client, name: str, contexts: Sequence[Context], repeat: int) -> Callable[[], int]:
    def body() -> int:
        is_enabled = client.is_enabled
        for _ in range(repeat):
            for ctx in contexts:
                is_enabled(name, ctx)
        return repeat * len(contexts)

    return body


def _loop_floor(uids: Sequence[str], repeat: int) -> Callable[[], int]:
    table = {"f": 10.0}

    def floor(flag: str, uid: str) -> bool:
        return zlib.crc32(uid.encode()) % 100 < table[flag]

    def body() -> int:
        for _ in range(repeat):
            for uid in uids:
                floor("f", uid)
        return repeat * len(uids)

    return body


def _contexts(n: int, location: str) -> list[Context]:
    return [
        Context(user_id=f"user-{i}", user_name=f"someone-{i}", groups=frozenset({"beta"}), location=location)
        for i in range(n)
    ]


def rule_rows(quick: bool) -> list[Row]:
    n_users = 10_000 if quick else 100_000
    batches = 7 if quick else 21
    repeat = max(1, 20_000 // n_users)
    legacy, rules = parse_flag("legacy", LEGACY), parse_flag("rules", RULES)
    # The legacy contexts match no selector and reach the percentage; the targeting
    # contexts fail four rules and match the fifth: the same work up to the document.
    legacy_ctx, rules_ctx = _contexts(n_users, "pics"), _contexts(n_users, "wtf")
    share = sum(evaluate(rules, c).enabled for c in rules_ctx) / n_users
    assert 0.08 < share < 0.12, f"the fifth rule served {share:.1%}, not 10%"
    assert all(evaluate(rules, c).rule == "targeting[4]" for c in rules_ctx[:100])
    # One salt, and a rule's rollout is the flag-level percentage's bucket test: the same users.
    legacy_on = [evaluate(legacy, c).enabled for c in legacy_ctx]
    assert legacy_on == [evaluate(rules, c).enabled for c in rules_ctx]

    floor = _median_ns(_loop_floor([c.user_id or "" for c in legacy_ctx], repeat), batches)
    base, new = _paired_ns(
        _loop_eval(legacy, legacy_ctx, repeat), _loop_eval(rules, rules_ctx, repeat), batches
    )
    rows = [
        Row(GROUP, "evaluate: 5 selectors none match, then 10%", base, "ns/call", floor, ""),
        Row(GROUP, "evaluate: 5 rules, 10% rollout in the 5th", new, "ns/call", base, "<= 2x floor"),
    ]

    store = MemoryStore()
    store.put("legacy", json.dumps(LEGACY))
    store.put("rules", json.dumps(RULES))
    client = Client(store, Options(timeout=30))
    try:
        assert len(client.snapshot) == 2, "the client did not load the benchmark flags"
        base, new = _paired_ns(
            _loop_client(client, "legacy", legacy_ctx, repeat),
            _loop_client(client, "rules", rules_ctx, repeat),
            batches,
        )
    finally:
        client.close()
        store.close()
    rows += [
        Row(GROUP, "client.is_enabled: 5 selectors, then 10%", base, "ns/call", floor, ""),
        Row(GROUP, "client.is_enabled: 5 rules, 10% in the 5th", new, "ns/call", base, "<= 2x floor"),
    ]
    return rows


# --------------------------------------------------------------------------- cold load


def documents(n_flags: int = 10_000, n_segments: int = 1_000) -> dict[str, str]:
    """Store records: ``n_segments`` segments of 50 users, a group and a rule; ``n_flags``
    flags of mixed shapes, most naming a segment, some a prerequisite."""
    records: dict[str, str] = {}
    for s in range(n_segments):
        records[segment_key(f"seg-{s}")] = json.dumps(
            {
                "description": f"segment {s}",
                "users": [f"user-{s}-{k}" for k in range(50)],
                "groups": [f"team-{s % 20}"],
                "rules": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}],
                "exclude_users": ["intern-9"],
            }
        )
    shapes: list[Callable[[int], Any]] = [
        lambda i: {"percentage": i % 100, "owner": "team"},
        lambda i: {
            "targeting": [
                {"segments": [f"seg-{i % n_segments}"], "serve": "on"},
                {"groups": ["beta"], "serve": {"percentage": 10}},
            ],
            "default": "off",
        },
        lambda i: {
            "deny": {"segments": [f"seg-{(i * 7) % n_segments}"]},
            "bucket_by": "account",
            "targeting": [{"when": [{"attribute": "plan", "op": "eq", "value": "pro"}], "serve": "on"}],
            "default": {"percentage": 20},
        },
        lambda i: {
            "prerequisites": [f"flag_{i - 3}"],
            "targeting": [{"not_segments": [f"seg-{i % n_segments}"], "serve": {"variant": "b"}}],
            "values": {"b": {"limit": i}, "off": {"limit": 0}},
        },
        lambda i: {"users": [f"user-{i}-{k}" for k in range(20)], "percentage": 5},
    ]
    for i in range(n_flags):
        records[f"flag_{i}"] = json.dumps(shapes[i % len(shapes)](i))
    return records


LINKING = "segments" in {f.name for f in dataclasses.fields(Snapshot)}
"""Whether this checkout's snapshot holds segments and links flags to them (else the
cold-load rows time the parsing alone, and say so)."""


def build(records: dict[str, str]) -> Snapshot | None:
    """Parse every record and build the snapshot (linking included)."""
    flags: dict[str, Flag] = {}
    segments: dict[str, Segment] = {}
    for key, raw in records.items():
        if key.startswith("segment:"):
            segments[key] = parse_segment_text(key, raw)
        else:
            flags[key] = parse_text(key, raw)
    if not LINKING:
        return None
    return Snapshot(flags, 1, time.time(), segments)  # type: ignore[call-arg,unused-ignore]


def load_rows(quick: bool) -> list[Row]:
    records = documents()
    n_flags = sum(not k.startswith("segment:") for k in records)
    n_segments = len(records) - n_flags
    label = f"{n_flags:,} flags + {n_segments:,} segments"
    what = "parse + build a snapshot" if LINKING else "parse only (no snapshot linking here)"
    rounds = 1 if quick else 3
    build(records)  # warm up: imports and caches of the first parse
    builds, paused = [], []
    for _ in range(rounds):
        # A cold load starts with no garbage: the snapshots of earlier rounds are cyclic
        # (linked flags refer to each other) and would slow the collector's next passes.
        gc.collect()
        t0 = time.perf_counter()
        snap = build(records)
        builds.append(time.perf_counter() - t0)
        assert snap is None or (len(snap) == n_flags and len(snap.segments) == n_segments)
        del snap
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            snap = build(records)
            paused.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    rows = [
        Row(GROUP, f"{what}: {label}", statistics.median(builds), "s", None, "<= 0.5 s"),
        Row(GROUP, "  the same, garbage collector paused", statistics.median(paused), "s", None, ""),
    ]
    if snap is None:
        return rows
    # The snapshot resolves segments: a member of seg-1 gets flag_1 from its first rule.
    member = Context(user_id="user-1-3")
    decision = evaluate(snap.flags["flag_1"], member)
    assert decision.enabled and decision.rule == "targeting[0]", decision

    store = MemoryStore()
    for key, raw in records.items():
        store.put(key, raw)
    loads = []
    try:
        for _ in range(rounds):
            gc.collect()
            t0 = time.perf_counter()
            client = Client(store, Options(timeout=60))  # returns once the first load is in
            loads.append(time.perf_counter() - t0)
            try:
                assert len(client.snapshot) == n_flags, "the client did not load every flag"
                assert client.is_enabled("flag_1", member)
            finally:
                client.close()
    finally:
        store.close()
    rows.append(
        Row(GROUP, f"new client, first load: {label}", statistics.median(loads), "s", None, "<= 0.5 s")
    )
    return rows


def run(quick: bool) -> list[Row]:
    return rule_rows(quick) + load_rows(quick)


def main() -> None:
    for row in run("--quick" in sys.argv):
        floor = "" if row.floor is None else f"(floor {row.floor:,.1f})"
        print(f"{row.name:<52} {row.value:>10,.3f} {row.unit:<8} {floor:<18} target {row.target}")


if __name__ == "__main__":
    main()
