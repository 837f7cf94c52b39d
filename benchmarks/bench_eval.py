"""Evaluation speed: median ns per call through ``flagstaff.evaluate`` on pre-built contexts.

Beside each case, the floor measured in the same run: a plain function doing a
dict lookup and ``zlib.crc32(uid.encode()) % 100`` (what any percentage check
must at least do). Each number is the median over batches of a tight loop.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from _row import Row

from flagstaff import Context, evaluate, parse_flag
from flagstaff.model import Flag

GROUP = "evaluation"


def _median_ns(body: Callable[[], int], batches: int) -> float:
    """``body`` runs a loop and returns how many calls it made; median ns/call."""
    body()  # warm up
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        calls = body()
        samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(samples)


def _loop_eval(flag: Flag, contexts: Sequence[Context], repeat: int) -> Callable[[], int]:
    def body() -> int:
        ev = evaluate
        for _ in range(repeat):
            for ctx in contexts:
                ev(flag, ctx)
        return repeat * len(contexts)

    return body


def _loop_floor(table: dict[str, float], name: str, uids: Sequence[str], repeat: int) -> Callable[[], int]:
    def floor(flag: str, uid: str) -> bool:
        return zlib.crc32(uid.encode()) % 100 < table[flag]

    def body() -> int:
        for _ in range(repeat):
            for uid in uids:
                floor(name, uid)
        return repeat * len(uids)

    return body


def cases(n_users: int) -> dict[str, tuple[Flag, list[Context]]]:
    """The measured flags and the contexts each is evaluated against."""
    users = [f"user-{i}" for i in range(n_users)]
    allow = [f"member-{i}" for i in range(10_000)]
    five = {
        "admin": True,
        "employee": True,
        "gold": True,
        "users": ["umbrae", "ajacksified", *allow[:50]],
        "subreddits": ["wtf", "aww"],
    }
    experiment = {
        "experiment": {
            "loggedin": True,
            "experiment_id": 12345,
            "variants": {"test_something": 5.5, "test_something_else": 10},
        }
    }
    plain = Context(user_id="user-1", user_name="someone", groups=frozenset({"beta"}), location="pics")
    rollout = [Context(user_id=u) for u in users]
    return {
        "boolean flag": (parse_flag("bool", "on"), [plain]),
        "10% rollout, distinct users": (parse_flag("pct", 10), rollout),
        "10k allow-list, hit": (parse_flag("allow", {"users": allow}), [Context(user_id="member-9876")]),
        "10k allow-list, miss": (parse_flag("allow", {"users": allow}), [Context(user_id="stranger")]),
        "five selectors (none match)": (parse_flag("five", five), [plain]),
        "experiment variant": (parse_flag("exp", experiment), rollout),
    }


def hundred_flags() -> list[Flag]:
    """100 flags of mixed shapes, as a real deployment might hold."""
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
    return [parse_flag(f"flag-{i}", shapes[i % len(shapes)]) for i in range(100)]


def run(quick: bool) -> list[Row]:
    n_users = 10_000 if quick else 100_000
    batches = 5 if quick else 15
    rows: list[Row] = []
    uids = [f"user-{i}" for i in range(n_users)]
    table = {"f": 10.0}
    targets = {
        "boolean flag": "<= 400 ns",
        "10% rollout, distinct users": "<= 800 ns",
        "10k allow-list, hit": "<= 600 ns",
        "10k allow-list, miss": "<= 600 ns",
        "five selectors (none match)": "<= 2000 ns",
        "experiment variant": "<= 2000 ns",
    }
    for label, (flag, contexts) in cases(n_users).items():
        repeat = max(1, 20_000 // len(contexts))
        value = _median_ns(_loop_eval(flag, contexts, repeat), batches)
        floor_uids = uids[: len(contexts)]
        floor = _median_ns(_loop_floor(table, "f", floor_uids, repeat), batches)
        rows.append(Row(GROUP, f"evaluate: {label}", value, "ns/call", floor, targets[label]))

    flags = hundred_flags()
    ctx = Context(
        user_id="user-42", user_name="umbrae", groups=frozenset({"beta"}), attributes={"plan": "pro"}
    )
    names = [f.name for f in flags]
    ftable = dict.fromkeys(names, 10.0)

    def all_flags() -> int:
        ev = evaluate
        for _ in range(200):
            for flag in flags:
                ev(flag, ctx)
        return 200

    def all_floor() -> int:
        def floor(flag: str, uid: str) -> bool:
            return zlib.crc32(uid.encode()) % 100 < ftable[flag]

        for _ in range(200):
            for name in names:
                floor(name, "user-42")
        return 200

    rows.append(
        Row(
            GROUP,
            "evaluate: all 100 flags for one user",
            _median_ns(all_flags, batches),
            "ns/call",
            _median_ns(all_floor, batches),
            "<= 50000 ns",
        )
    )
    rows.extend(_regex_rows(batches))
    return rows


def _regex_rows(batches: int) -> list[Row]:
    """A catastrophic pattern on hostile input: RE2 keeps it linear."""
    rows = []
    flag = parse_flag("hostile", {"regex": "(a+)+$"})
    for label, text, target in (
        ('"a"*5000+"!"', "a" * 5000 + "!", "< 10 ms"),
        ("64 KB input", "a" * 65536 + "!", ""),
    ):
        ctx = Context(user_id=text)
        samples = []
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            decision = evaluate(flag, ctx)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            assert not decision.enabled
        rows.append(Row("regex", f"(a+)+$ on {label}", statistics.median(samples), "ms", None, target))
    return rows
