"""Segment benchmarks: linking flags to the segments and prerequisites of their snapshot.

Issue 14's numbers: 200 flags referencing one 10,000-member segment, a segment change
applied to the snapshot in <= 2 ms, the segment's memory held once (not per flag); a
cold build of 10,000 flags plus 1,000 segments in <= 0.5 s.

The documents are real ones (``targeting`` rules naming segments, ``prerequisites``)
when the engine parses them; until then flags with a stand-in ``link`` (one closure per
link, as the engine's) measure the snapshot's own work, and the rows say so.

Run alone: ``.venv/bin/python benchmarks/bench_segments.py [--quick]``.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flagstaff import Context, Decision, Reason
from flagstaff.model import EMPTY_ENV, Env, Flag, parse_flag
from flagstaff.segments import Segment, parse_segment
from flagstaff.snapshot import Snapshot

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


GROUP = "segments"
BIG = 10_000  # members of the shared segment
USERS = 200  # flags that use it
FLAGS = 10_000
SEGMENTS = 1_000


def _engine_ready() -> bool:
    """Whether the engine parses segments and the new flag keys (issue 14)."""
    try:
        parse_segment("probe", {"users": ["a"]})
        parse_flag("probe", {"targeting": [{"segments": ["probe"], "serve": "on"}]})
        parse_flag("probe2", {"prerequisites": ["probe"], "percentage": 5})
    except Exception:
        return False
    return True


REAL = _engine_ready()
HOW = "real documents" if REAL else "stand-in link"


# ---------------------------------------------------------------- documents


def _segment(name: str, users: list[str]) -> Segment:
    if REAL:
        return parse_segment(name, {"users": users})
    members = frozenset(users)
    return Segment(name=name, document=json.dumps({"users": users}), contains=lambda c: c.user_id in members)


def _flag(name: str, segments: tuple[str, ...] = (), requires: tuple[str, ...] = ()) -> Flag:
    if REAL:
        doc: dict[str, Any] = {"percentage": 5}
        if segments:
            doc["targeting"] = [{"segments": list(segments), "serve": "on"}]
        if requires:
            doc["prerequisites"] = list(requires)
        return parse_flag(name, doc)
    base = parse_flag(name, {"percentage": 5})
    if not segments and not requires:
        return base
    on = Decision(name, True, Reason.RULE, rule="targeting[0]")
    failed = Decision(name, False, Reason.PREREQUISITE)
    inner = base.run

    def link(env: Env) -> Callable[[Context], Decision]:
        found = [env.segments[s] for s in segments if s in env.segments]
        needed = [env.flags.get(r) for r in requires]

        def run(ctx: Context) -> Decision:
            for prerequisite in needed:
                if prerequisite is None or not prerequisite.run(ctx).enabled:
                    return failed
            for segment in found:
                if segment.contains(ctx):
                    return on
            return inner(ctx)

        return run

    return dataclasses.replace(
        base,
        segments=frozenset(segments),
        requires=requires,
        link=link,
        run=link(EMPTY_ENV),
        constant=None,
    )


def _world() -> tuple[dict[str, Flag], dict[str, Segment]]:
    """10,000 flags and 1,000 segments: 200 flags on the 10k-member segment ``big``,
    3,000 flags on one or two small segments, 500 in prerequisite chains, the rest plain."""
    segments = {
        f"seg-{i}": _segment(f"seg-{i}", [f"u{i}-{j}" for j in range(50)]) for i in range(SEGMENTS - 1)
    }
    segments["big"] = _segment("big", [f"member-{i}" for i in range(BIG)])
    flags: dict[str, Flag] = {}
    for i in range(USERS):
        flags[f"uses_big_{i}"] = _flag(f"uses_big_{i}", ("big",))
    for i in range(3000):
        names = (
            (f"seg-{i % (SEGMENTS - 1)}",) if i % 2 else (f"seg-{i % (SEGMENTS - 1)}", f"seg-{(i * 7) % 999}")
        )
        flags[f"small_{i}"] = _flag(f"small_{i}", names)
    for i in range(500):
        flags[f"chain_{i}"] = _flag(f"chain_{i}", requires=(f"chain_{i - 1}",) if i % 10 else ())
    i = 0
    while len(flags) < FLAGS:
        flags[f"plain_{i}"] = _flag(f"plain_{i}")
        i += 1
    return flags, segments


# ---------------------------------------------------------------- measurements


def run(quick: bool) -> list[Row]:
    flags, segments = _world()
    rounds = 3 if quick else 7
    builds = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        snap = Snapshot(flags, 1, 0.0, segments)
        builds.append(time.perf_counter() - t0)
    assert len(snap) == FLAGS and len(snap.segments) == SEGMENTS
    assert snap.dependents("segment:big") >= {f"uses_big_{i}" for i in range(USERS)}

    # One change of the big segment (one member more each time): what reaches the snapshot.
    base_members = [f"member-{i}" for i in range(BIG)]
    changed = [_segment("big", [*base_members, f"new-{k}"]) for k in range(20 if quick else 100)]
    applies = []
    current = snap
    for k, segment in enumerate(changed):
        t0 = time.perf_counter()
        current = current.with_segment(segment, 2 + k, 0.0)
        applies.append(time.perf_counter() - t0)
    newcomer = Context(user_id=f"new-{len(changed) - 1}")
    assert current.flags["uses_big_0"].run(newcomer).enabled, "the change did not reach the flags"

    parse_ms: float | None = None
    if REAL:
        doc = {"users": [*base_members, "new"]}
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            parse_segment("big", doc)
            samples.append(time.perf_counter() - t0)
        parse_ms = statistics.median(samples) * 1000

    rows = [
        Row(
            GROUP,
            f"segment change reaching {USERS} flags ({BIG:,} members, {FLAGS:,}-flag snapshot; {HOW})",
            statistics.median(applies) * 1000,
            "ms",
            None,
            "<= 2 ms",
        ),
    ]
    if parse_ms is not None:
        rows.append(
            Row(
                GROUP,
                f"  of which parsing the {BIG:,}-member segment: not in the row above",
                parse_ms,
                "ms",
                None,
                "",
            )
        )
    rows.append(
        Row(
            GROUP,
            f"cold build, {FLAGS:,} flags + {SEGMENTS:,} segments, parsing excluded ({HOW})",
            statistics.median(builds),
            "s",
            None,
            "<= 0.5 s",
        )
    )
    if REAL:
        rows.append(_cold_with_parsing(rounds))
    rows.extend(_memory_rows())
    return rows


def _cold_with_parsing(rounds: int) -> Row:
    """Parse every document from its text (as a load from a store does), then build."""
    flags, segments = _world()
    texts = {name: json.dumps(flag.value) for name, flag in flags.items()}
    segment_texts = {name: seg.document for name, seg in segments.items()}
    from flagstaff.model import parse_text
    from flagstaff.segments import parse_segment_text

    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        parsed = {name: parse_text(name, raw) for name, raw in texts.items()}
        parsed_segments = {name: parse_segment_text(name, raw) for name, raw in segment_texts.items()}
        Snapshot(parsed, 1, 0.0, parsed_segments)
        samples.append(time.perf_counter() - t0)
    return Row(
        GROUP,
        f"cold build, {FLAGS:,} flags + {SEGMENTS:,} segments, parsing included",
        statistics.median(samples),
        "s",
        None,
        "<= 0.5 s",
    )


def _allocated(build: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return kept, after - before


def _memory_rows() -> list[Row]:
    """The segment's own size, and what linking 200 flags to it adds (held once: the
    links hold a reference, not a copy)."""
    members = [f"member-{i}" for i in range(BIG)]
    segment, segment_bytes = _allocated(lambda: _segment("big", members))
    flags = {f"uses_big_{i}": _flag(f"uses_big_{i}", ("big",)) for i in range(USERS)}
    snap, all_bytes = _allocated(lambda: Snapshot(flags, 4, 0.0, {"big": segment}))
    assert all(flag.link is not None for flag in snap.flags.values())
    per_flag = all_bytes / USERS
    del snap
    return [
        Row(GROUP, f"memory: one {BIG:,}-member segment ({HOW})", segment_bytes / 1024, "KiB", None, ""),
        Row(
            GROUP,
            f"memory: {USERS} flags linked to it, per flag (flag + link + env)",
            per_flag / 1024,
            "KiB",
            None,
            "held once: << the segment",
        ),
    ]


def main() -> None:
    for row in run("--quick" in sys.argv):
        print(f"{row.name:<90} {row.value:>10,.3f} {row.unit:<4} target {row.target}")


if __name__ == "__main__":
    main()
