"""Client benchmarks: evaluation through ``client.is_enabled`` and snapshot upkeep.

Evaluation through the client must cost what the bare engine costs (the client
adds a snapshot lookup and a constant fast path): the same cases and targets
as ``bench_eval.py``, each beside the floor measured in the same run (a plain
function doing a dict lookup and ``zlib.crc32(uid.encode()) % 100``). Applying
one change to a 10,000-flag snapshot must be O(1)-ish (one parse and one dict
copy, not a reload) and a cold load of 10,000 flags must stay under 0.5 s.

Run alone: ``.venv/bin/python benchmarks/bench_client.py [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flagstaff import Context
from flagstaff.client import Client, Options
from flagstaff.stores import Change, Record
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


GROUP = "client"


def _median_ns(body: Callable[[], int], batches: int) -> float:
    """``body`` runs a loop and returns how many calls it made; median ns/call."""
    body()  # warm up
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        calls = body()
        samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(samples)


def _documents() -> dict[str, Any]:
    """The measured flags, plus fillers up to 100 flags of mixed shapes."""
    allow = [f"member-{i}" for i in range(10_000)]
    docs: dict[str, Any] = {
        "bool": "on",
        "pct": 10,
        "allow": {"users": allow},
        "five": {
            "admin": True,
            "employee": True,
            "gold": True,
            "users": ["umbrae", "ajacksified", *allow[:50]],
            "subreddits": ["wtf", "aww"],
        },
        "exp": {
            "experiment": {
                "loggedin": True,
                "experiment_id": 12345,
                "variants": {"test_something": 5.5, "test_something_else": 10},
            }
        },
    }
    shapes: list[Any] = [
        "on",
        "off",
        10,
        50,
        {"users": [f"member-{i}" for i in range(100)]},
        {"admin": True, "employee": True, "percent_loggedin": 5},
        {"rules": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}]},
        {"experiment": {"loggedin": True, "variants": {"a": 20, "b": 20}}},
        {"groups": ["beta"], "percentage": 1.5},
        {"subreddits": ["aww"], "users": ["umbrae"]},
    ]
    for i in range(100 - len(docs)):
        docs[f"flag-{i}"] = shapes[i % len(shapes)]
    return docs


def _loop_client(client: Client, name: str, contexts: Sequence[Context], repeat: int) -> Callable[[], int]:
    def body() -> int:
        is_enabled = client.is_enabled
        for _ in range(repeat):
            for ctx in contexts:
                is_enabled(name, ctx)
        return repeat * len(contexts)

    return body


def _loop_variant(client: Client, name: str, contexts: Sequence[Context], repeat: int) -> Callable[[], int]:
    def body() -> int:
        variant = client.variant
        for _ in range(repeat):
            for ctx in contexts:
                variant(name, ctx)
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


def run(quick: bool) -> list[Row]:
    store = MemoryStore()
    for name, doc in _documents().items():
        store.put(name, json.dumps(doc))
    client = Client(store, Options(timeout=30))
    try:
        assert len(client.snapshot) == 100, "the client did not load the benchmark flags"
        return _evaluation_rows(client, quick) + _snapshot_rows(quick)
    finally:
        client.close()
        store.close()


def _evaluation_rows(client: Client, quick: bool) -> list[Row]:
    n_users = 10_000 if quick else 100_000
    batches = 5 if quick else 15
    uids = [f"user-{i}" for i in range(n_users)]
    plain = Context(user_id="user-1", user_name="someone", groups=frozenset({"beta"}), location="pics")
    rollout = [Context(user_id=u) for u in uids]
    cases: list[tuple[str, Callable[..., Callable[[], int]], str, list[Context], str]] = [
        ("boolean flag", _loop_client, "bool", [plain], "<= 400 ns"),
        ("10% rollout, distinct users", _loop_client, "pct", rollout, "<= 800 ns"),
        ("10k allow-list, hit", _loop_client, "allow", [Context(user_id="member-9876")], "<= 600 ns"),
        ("10k allow-list, miss", _loop_client, "allow", [Context(user_id="stranger")], "<= 600 ns"),
        ("five selectors (none match)", _loop_client, "five", [plain], "<= 2000 ns"),
        ("experiment variant", _loop_variant, "exp", rollout, "<= 2000 ns"),
    ]
    rows: list[Row] = []
    for label, loop, name, contexts, target in cases:
        repeat = max(1, 20_000 // len(contexts))
        value = _median_ns(loop(client, name, contexts, repeat), batches)
        floor = _median_ns(_loop_floor(uids[: len(contexts)], repeat), batches)
        rows.append(Row(GROUP, f"client.is_enabled: {label}", value, "ns/call", floor, target))

    rows += _built_in_the_call_rows(client, uids, batches)

    ctx = Context(
        user_id="user-42", user_name="umbrae", groups=frozenset({"beta"}), attributes={"plan": "pro"}
    )

    def all_flags() -> int:
        every = client.all
        for _ in range(200):
            every(ctx)
        return 200

    names = list(client.snapshot)
    table = dict.fromkeys(names, 10.0)

    def all_floor() -> int:
        def floor(flag: str, uid: str) -> bool:
            return zlib.crc32(uid.encode()) % 100 < table[flag]

        for _ in range(200):
            for name in names:
                floor(name, "user-42")
        return 200

    rows.append(
        Row(
            GROUP,
            "client.all: 100 flags for one user",
            _median_ns(all_flags, batches),
            "ns/call",
            _median_ns(all_floor, batches),
            "<= 50000 ns",
        )
    )
    return rows


PER_REQUEST = 5  # checks of one flag per request (per user), as a page checks a few flags


def _built_in_the_call_rows(client: Client, uids: Sequence[str], batches: int) -> list[Row]:
    """The check as applications write it: the context built in the call, a new user per
    request, PER_REQUEST checks each; beside the floor doing the same checks. 10,000 users in
    turn, more than the client's table of shared contexts holds, so every request's first
    check builds its context."""
    users = uids[:10_000]

    def as_dict() -> int:
        is_enabled = client.is_enabled
        for uid in users:
            for _ in range(PER_REQUEST):
                is_enabled("pct", {"user_id": uid})
        return len(users) * PER_REQUEST

    def bare_id() -> int:
        is_enabled = client.is_enabled
        for uid in users:
            for _ in range(PER_REQUEST):
                is_enabled("pct", uid)
        return len(users) * PER_REQUEST

    def context_per_request() -> int:
        is_enabled = client.is_enabled
        for uid in users:
            ctx = Context(user_id=uid)
            for _ in range(PER_REQUEST):
                is_enabled("pct", ctx)
        return len(users) * PER_REQUEST

    def context_per_check() -> int:
        is_enabled = client.is_enabled
        for uid in users:
            for _ in range(PER_REQUEST):
                is_enabled("pct", Context(user_id=uid))
        return len(users) * PER_REQUEST

    floor = _median_ns(_loop_floor(users, PER_REQUEST), batches)
    cases = [
        ("{'user_id': uid} in the call", as_dict, "<= 3x floor"),
        ("bare id in the call", bare_id, "<= 3x floor"),
        ("Context(user_id=uid) once per request", context_per_request, "<= 3x floor"),
        ("Context(user_id=uid) in every call", context_per_check, "(no target)"),
    ]
    return [
        Row(GROUP, f"10% rollout, {label}", _median_ns(body, batches), "ns/call", floor, target)
        for label, body, target in cases
    ]


def _snapshot_rows(quick: bool) -> list[Row]:
    """A cold start of a client on 10,000 flags, then single changes applied to it."""
    n = 10_000
    store = MemoryStore()
    for i in range(n):
        store.put(f"flag_{i}", json.dumps({"percentage": i % 100, "owner": "team"}))
    loads = []
    for _ in range(1 if quick else 3):
        t0 = time.perf_counter()
        cold = Client(store, Options(timeout=30))  # returns once the first load is in
        loads.append(time.perf_counter() - t0)
        assert len(cold.snapshot) == n
        cold.close()
    client = Client(store, Options(timeout=30))
    try:
        # Drive the watch task's own method on the idle client, to time one change alone.
        applies = []
        changed: set[str] = set()
        for k in range(50 if quick else 300):
            doc = json.dumps({"percentage": k % 100, "owner": "team"})
            change = Change("flag_7", Record("flag_7", doc, k + 2), n + 1 + k)
            t0 = time.perf_counter()
            client.follower._apply_group([change], changed, [])
            applies.append(time.perf_counter() - t0)
        assert len(client.snapshot) == n and client.snapshot.revision == n + len(applies)
    finally:
        client.close()
        store.close()
    return [
        Row(
            GROUP,
            f"apply one change to a {n:,}-flag snapshot",
            statistics.median(applies) * 1000,
            "ms",
            None,
            "<= 1 ms",
        ),
        Row(
            GROUP,
            f"load {n:,} flags cold (new client to first load)",
            statistics.median(loads),
            "s",
            None,
            "<= 0.5 s",
        ),
    ]


def main() -> None:
    for row in run("--quick" in sys.argv):
        floor = "" if row.floor is None else f"(floor {row.floor:,.1f})"
        print(f"{row.name:<50} {row.value:>10,.2f} {row.unit:<8} {floor:<18} target {row.target}")


if __name__ == "__main__":
    main()
