"""flagstaff.exposures: the recorder (dedupe window, bounded queue, failing sinks), the
SQLite and JSON-lines sinks, and the client's ``exposures=`` and ``track``.

The HTTP sink and the ingest endpoint are tested against a real server in
tests/http/test_http_ingest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import flagstaff
from flagstaff import Context, Decision, aio
from flagstaff.client import Client
from flagstaff.decision import Reason
from flagstaff.exposures import (
    Event,
    EventError,
    EventKind,
    JsonLinesSink,
    ListSink,
    Recorder,
    RecorderOptions,
    SQLiteSink,
)
from flagstaff.stores.memory import MemoryStore
from flagstaff.testing import wait_until
from tests._support.client import unique_memory_url

pytestmark = pytest.mark.timeout(60)

EXP = {"experiment": {"experiment_id": 11, "loggedin": True, "variants": {"t": 30}}}


def exposure(flag: str = "exp", variant: str = "t") -> Decision:
    return Decision(flag, True, Reason.EXPERIMENT, variant, experiment_id=11)


class FailingSink:
    def __init__(self, failures: int = 10**9) -> None:
        self.failures = failures
        self.calls = 0
        self.events: list[Event] = []

    def write(self, batch: Sequence[Event]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("sink down")
        self.events.extend(batch)

    def close(self) -> None:
        pass


class GatedSink(ListSink):
    """Blocks each write until ``gate`` is set; ``entered`` is set when a write starts."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write(self, batch: Sequence[Event]) -> None:
        self.entered.set()
        self.gate.wait(30)
        super().write(batch)


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore.from_url(unique_memory_url())
    s.put("exp", json.dumps(EXP))
    s.put("plain", "50")
    yield s
    s.close()


def exposed_user(client: Client) -> str:
    for i in range(200):
        if client.evaluate("exp", f"u{i}").experiment_id is not None:
            return f"u{i}"
    raise AssertionError("no user is in the experiment")


# ---------------------------------------------------------------- the recorder


def test_an_exposure_is_recorded_once_per_key_flag_and_variant() -> None:
    sink = ListSink()
    with Recorder(sink) as rec:
        for _ in range(5):
            rec(exposure(), Context(user_id="u1"))
            rec(exposure(variant="control_1"), Context(user_id="u1"))
            rec(exposure(), Context(cookie_id="c9"))
        assert rec.flush()
        stats = rec.stats()
    assert (stats.recorded, stats.deduplicated, stats.written) == (3, 12, 3)
    assert [(e.key, e.variant) for e in sink.events] == [("u1", "t"), ("u1", "control_1"), ("c9", "t")]
    assert sink.events[0].kind is EventKind.EXPOSURE and sink.events[0].experiment_id == 11
    assert sink.closed


def test_a_new_window_records_the_exposure_again() -> None:
    sink = ListSink()
    ctx = Context(user_id="u1")
    with Recorder(sink, RecorderOptions(window=0.05, interval=0.01)) as rec:
        rec(exposure(), ctx)

        def again() -> bool:
            rec(exposure(), ctx)
            return rec.stats().recorded >= 2

        wait_until(again, 10)
    assert len(sink.events) >= 2


def test_the_dedupe_memory_is_bounded_oldest_forgotten_first() -> None:
    with Recorder(ListSink(), RecorderOptions(max_keys=3)) as rec:
        for i in range(5):
            rec(exposure(), Context(user_id=f"u{i}"))
        assert len(rec._seen) == 3
        rec(exposure(), Context(user_id="u4"))  # remembered
        rec(exposure(), Context(user_id="u0"))  # forgotten: recorded again
        assert (rec.stats().recorded, rec.stats().deduplicated) == (6, 1)


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    sink = GatedSink()
    rec = Recorder(sink, RecorderOptions(max_queue=10, batch_size=1, interval=0.01))
    try:
        assert rec.track("first", Context(user_id="u0"))
        assert sink.entered.wait(10)  # the task holds "first" in a blocked write
        accepted = [rec.track("e", Context(user_id=f"u{i}")) for i in range(25)]
        assert accepted.count(True) == 10 and accepted.count(False) == 15
        for i in range(5):
            rec(exposure(), Context(user_id=f"x{i}"))  # never raises either
        stats = rec.stats()
        assert (stats.recorded, stats.dropped, stats.queued) == (11, 20, 10)
        sink.gate.set()
        assert rec.flush(10)
        assert rec.stats().written == 11
    finally:
        sink.gate.set()
        rec.close()


def test_a_failing_sink_is_counted_retried_once_and_never_raised() -> None:
    sink = FailingSink()
    with Recorder(sink, RecorderOptions(batch_size=10)) as rec:
        for i in range(25):
            rec.track("purchase", Context(user_id=f"u{i}"), 1.0)
        assert rec.flush(10)
        stats = rec.stats()
    assert (stats.recorded, stats.failed, stats.written) == (25, 25, 0)
    assert sink.calls == 6  # three batches, each tried twice


def test_a_batch_failing_once_is_written_by_the_retry() -> None:
    sink = FailingSink(failures=1)
    with Recorder(sink) as rec:
        rec.track("purchase", Context(user_id="u1"), 2.5)
        assert rec.flush(10)
        assert (rec.stats().written, rec.stats().failed) == (1, 0)
    assert sink.events[0].value == 2.5


def test_close_flushes_and_later_events_are_dropped() -> None:
    sink = ListSink()
    rec = Recorder(sink, RecorderOptions(interval=60))  # only close() makes it write
    for i in range(7):
        rec.track("view", Context(user_id=f"u{i}"))
    rec.close()
    assert len(sink.events) == 7 and sink.closed
    assert rec.track("late", Context(user_id="u1")) is False
    assert rec.stats().dropped == 1


def test_track_refuses_bad_input_without_raising() -> None:
    with Recorder(ListSink()) as rec:
        assert rec.track("", Context()) is False
        assert rec.track("x", Context(), float("nan")) is False
        assert rec.track("x", Context(), "abc") is False  # type: ignore[arg-type]
        assert rec.track("x", Context(), 3) is True
        assert rec.stats().recorded == 1


def test_event_json_round_trip_and_validation() -> None:
    event = Event(EventKind.TRACK, 1.5, "u1", name="buy", value=3.0, attributes={"plan": "pro"})
    assert Event.from_dict(json.loads(json.dumps(event.to_dict()))) == event
    bad = [
        ({"kind": "click", "time": 1}, "kind"),
        ({"kind": "track", "time": "now", "name": "x"}, "time"),
        ({"kind": "track", "time": 1}, "name"),
        ({"kind": "exposure", "time": 1}, "flag"),
        ({"kind": "track", "time": 1, "name": "x", "value": True}, "value"),
        ({"kind": "track", "time": 1, "name": "x", "extra": 1}, "extra"),
        ({"kind": "exposure", "time": 1, "flag": "f", "experiment_id": "7"}, "experiment_id"),
    ]
    for data, field in bad:
        with pytest.raises(EventError) as caught:
            Event.from_dict(data, "events[0]")
        assert caught.value.path == f"events[0].{field}"


# ---------------------------------------------------------------- sinks


def test_sqlite_sink_writes_both_tables(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    with Recorder(SQLiteSink(path)) as rec:
        rec.follow_revision(lambda: 42)
        rec(exposure(), Context(user_id="u1", time=100.0))
        rec(exposure(variant="control_1"), Context(cookie_id="c1", time=101.0))
        rec.track("purchase", Context(user_id="u1", time=102.0), 9.99, {"sku": "a"})
        rec.track("view", Context(user_id="u2", time=103.0))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    rows = db.execute(
        "SELECT time, flag, experiment_id, variant, key, revision FROM flagstaff_exposures ORDER BY id"
    ).fetchall()
    assert rows == [(100.0, "exp", 11, "t", "u1", 42), (101.0, "exp", 11, "control_1", "c1", 42)]
    events = db.execute(
        "SELECT time, name, key, value, attributes FROM flagstaff_events ORDER BY id"
    ).fetchall()
    assert events == [(102.0, "purchase", "u1", 9.99, '{"sku": "a"}'), (103.0, "view", "u2", None, None)]
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"flagstaff_exposures_flag", "flagstaff_exposures_experiment", "flagstaff_events_name"} <= indexes
    db.close()


def test_json_lines_rotate_by_size_and_day_without_losing_a_line(tmp_path: Path) -> None:
    day = 1_800_000_000.0  # 2027-01-15 UTC
    events = [
        Event(EventKind.TRACK, day + (i // 30) * 86400 + i, f"u{i}", name="view", value=float(i))
        for i in range(60)
    ]
    sink = JsonLinesSink(tmp_path, max_bytes=400)
    for start in range(0, 40, 7):
        sink.write(events[start : min(start + 7, 40)])
    sink.close()
    again = JsonLinesSink(tmp_path, max_bytes=400)  # a restart appends after the last file
    again.write(events[40:])
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) > 4
    assert {f.name[:17] for f in files} == {"events-2027-01-15", "events-2027-01-16"}
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert [Event.from_dict(json.loads(line)) for line in lines] == events
    assert all(f.stat().st_size <= 400 for f in files)


# ---------------------------------------------------------------- the client


def test_client_records_exposures_beside_on_exposure(store: MemoryStore) -> None:
    sink = ListSink()
    hooked: list[str] = []
    rec = Recorder(sink)
    with flagstaff.connect(store.url, exposures=rec, on_exposure=lambda d, c: hooked.append(d.flag)) as c:
        user = exposed_user(c)
        hooked.clear()
        for _ in range(5):
            c.variant("exp", user)
            c.is_enabled("exp", user)
        c.all(user)
        for i in range(20):
            c.is_enabled("plain", f"p{i}")
        revision = c.snapshot.revision
    rec.close()
    assert hooked == ["exp"] * 11  # the caller's hook still sees every exposure
    mine = [e for e in sink.events if e.key == user]
    assert len(mine) == 1
    assert (mine[0].flag, mine[0].experiment_id, mine[0].revision) == ("exp", 11, revision)
    assert all(e.flag == "exp" for e in sink.events)


def test_client_track(store: MemoryStore) -> None:
    sink = ListSink()
    rec = Recorder(sink)
    with flagstaff.connect(store.url, exposures=rec) as c:
        assert c.track("purchase", "u1", 19.5)
        assert c.track("signup", {"cookie_id": "c7"})
        with c.scope({"user_id": "u3"}):
            assert c.track("view")
        assert c.track("bad", object()) is False  # type: ignore[arg-type]
        assert c.track("bad", "u1", "x") is False  # type: ignore[arg-type]
    rec.close()
    assert [(e.name, e.key, e.value) for e in sink.events] == [
        ("purchase", "u1", 19.5),
        ("signup", "c7", None),
        ("view", "u3", None),
    ]
    with flagstaff.connect(store.url) as plain:
        assert plain.track("purchase", "u1", 1.0) is False


def test_async_client_track(store: MemoryStore) -> None:
    sink = ListSink()
    rec = Recorder(sink)

    async def main() -> bool:
        async with await aio.connect(store.url, exposures=rec) as c:
            return c.track("purchase", "u1", 5.0)

    assert asyncio.run(main())
    rec.close()
    assert [(e.name, e.value) for e in sink.events] == [("purchase", 5.0)]


def test_the_recorder_runs_on_gevent() -> None:
    pytest.importorskip("gevent")
    from flagstaff.runtime import GeventRuntime

    sink = ListSink()
    rec = Recorder(sink, RecorderOptions(batch_size=10), runtime=GeventRuntime())
    for i in range(25):
        rec(exposure(), Context(user_id=f"u{i}"))
    assert rec.flush(10)  # waits on a gevent event: the recorder's greenlet runs meanwhile
    rec.close()
    assert len(sink.events) == 25 and sink.closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_records_with_a_task_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    rec = Recorder(SQLiteSink(path))
    rec.track("before", Context(user_id="parent"))
    assert rec.flush(10)
    pid = os.fork()
    if pid == 0:  # the child: exits with 0 only if its own event was written
        code = 1
        try:
            rec.track("child", Context(user_id="child"))
            code = 0 if rec.flush(10) and rec.stats().written == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rec.track("after", Context(user_id="parent"))
    rec.close()
    with sqlite3.connect(path) as db:
        names = sorted(r[0] for r in db.execute("SELECT name FROM flagstaff_events"))
    assert names == ["after", "before", "child"]
