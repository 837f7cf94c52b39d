"""flagstaff.usage and the recorder's ``usage=True``: evaluations per flag per hour, last seen,
through the list, SQLite and JSON-lines sinks; and ``flags="all"``: exposures of plain flags.

The HTTP sink and the ingest endpoint's ``usage`` kind are tested against a real server in
tests/http/test_http_usage.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flagstaff import Context, Decision
from flagstaff.blast import blast_radius
from flagstaff.client import Client, Options
from flagstaff.decision import Reason
from flagstaff.errors import ClientError
from flagstaff.exposures import (
    Event,
    EventError,
    EventKind,
    Exposed,
    JsonLinesSink,
    ListSink,
    Recorder,
    RecorderOptions,
    SQLiteSink,
)
from flagstaff.stores.memory import MemoryStore
from flagstaff.testing import wait_until
from flagstaff.usage import HOUR, FlagUsage, Tally, hour_of, read_usage
from tests._support.client import unique_memory_url

pytestmark = pytest.mark.timeout(60)

EXP = {"experiment": {"experiment_id": 11, "loggedin": True, "variants": {"t": 30}}}


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore.from_url(unique_memory_url())
    s.put("exp", json.dumps(EXP))
    s.put("ramp", "50")  # a percentage: the decision depends on the unit
    s.put("on", '"on"')  # on for everyone: a constant decision
    s.put("quiet", "50")
    yield s
    s.close()


def usage_of(events: list[Event]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        if e.kind is EventKind.USAGE:
            assert e.flag is not None and e.value is not None
            out[e.flag] = out.get(e.flag, 0) + int(e.value)
    return out


def exposures_of(events: list[Event]) -> list[tuple[str | None, str | None, str | None, int | None]]:
    return [(e.key, e.flag, e.variant, e.experiment_id) for e in events if e.kind is EventKind.EXPOSURE]


# ---------------------------------------------------------------- the tally


def test_a_take_returns_what_each_flag_gained_since_the_last() -> None:
    tally = Tally()
    for _ in range(3):
        tally.count("a")
    tally.count("b")
    assert tally.take() == {"a": 3, "b": 1}
    assert tally.take() == {}
    tally.count("b")
    assert tally.take() == {"b": 1}


def test_counting_from_many_threads_loses_nothing() -> None:
    tally = Tally()
    tally.count("x")  # the counter exists: the only race (its creation) is out of the way
    taken: list[dict[str, int]] = []
    done = threading.Event()

    def taker() -> None:
        while not done.is_set():
            taken.append(tally.take())
        taken.append(tally.take())

    def worker() -> None:
        counts = tally.counts
        for _ in range(20_000):
            next(counts["x"])

    background = threading.Thread(target=taker)
    background.start()
    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    background.join()
    assert sum(t.get("x", 0) for t in taken) == 80_001


def test_hour_of() -> None:
    assert hour_of(7199.9) == 3600 and hour_of(7200) == 7200 and HOUR == 3600


# ---------------------------------------------------------------- the client counts


def test_the_client_counts_every_check_of_a_known_flag(store: MemoryStore) -> None:
    sink = ListSink()
    recorder = Recorder(sink, RecorderOptions(usage=True, flags=Exposed.NONE))
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        for i in range(10):
            client.is_enabled("ramp", f"u{i}")
        client.evaluate("on", "u1")  # a constant decision counts too
        client.variant("exp", "u1")
        client.get_bool("ramp", "u1")
        client.is_enabled("nope", "u1")  # unknown: not counted (names can be anything)
        client.all("u1")  # bulk: not counted
        with client.scope("u2"):
            client.is_enabled("ramp")
            client.is_enabled("on")
        client.scope("u3").all()  # bulk: not counted
        assert recorder.flush()
    recorder.close()
    assert usage_of(sink.events) == {"ramp": 12, "on": 2, "exp": 1}
    assert exposures_of(sink.events) == []  # Exposed.NONE: not even the experiment's
    usage = [e for e in sink.events if e.kind is EventKind.USAGE]
    assert all(e.key is None and abs(e.time - time.time()) < 30 for e in usage)


def test_no_usage_counted_unless_asked(store: MemoryStore) -> None:
    sink = ListSink()
    recorder = Recorder(sink)
    assert recorder.tally is None
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        client.is_enabled("ramp", "u1")
    recorder.close()
    assert usage_of(sink.events) == {}


def test_the_task_reports_usage_every_usage_interval(store: MemoryStore) -> None:
    sink = ListSink()
    options = RecorderOptions(usage=True, interval=0.01, usage_interval=0.05)
    recorder = Recorder(sink, options)
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        client.is_enabled("ramp", "u1")
        wait_until(lambda: usage_of(list(sink.events)) == {"ramp": 1}, timeout=10)
        client.is_enabled("ramp", "u1")
        client.is_enabled("ramp", "u2")
        wait_until(lambda: usage_of(list(sink.events)) == {"ramp": 3}, timeout=10)
    recorder.close()
    assert len([e for e in sink.events if e.kind is EventKind.USAGE]) == 2


def test_close_reports_the_last_counts(store: MemoryStore) -> None:
    sink = ListSink()
    recorder = Recorder(sink, RecorderOptions(usage=True))
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        client.is_enabled("quiet", "u1")
    recorder.close()
    assert usage_of(sink.events) == {"quiet": 1}
    stats = recorder.stats()
    assert stats.recorded == stats.written == 1


# ---------------------------------------------------------------- sinks


def test_sqlite_adds_up_usage_per_flag_and_hour(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % HOUR  # the start of an hour
    sink = SQLiteSink(path)
    sink.write(
        [Event(EventKind.USAGE, t0 + 10, flag="a", value=5), Event(EventKind.USAGE, t0 + 20, flag="b")]
    )
    sink.write([Event(EventKind.USAGE, t0 + 30, flag="a", value=2)])  # another process, same hour
    sink.write([Event(EventKind.USAGE, t0 + HOUR + 5, flag="a", value=1)])  # the next hour
    sink.write([Event(EventKind.USAGE, t0 + 25, flag="a", value=1)])  # late: last_seen stays
    sink.close()
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT flag, hour, count, last_seen FROM flagstaff_usage ORDER BY flag, hour"
        ).fetchall()
    assert rows == [
        ("a", int(t0), 8, t0 + 30),
        ("a", int(t0) + HOUR, 1, t0 + HOUR + 5),
        ("b", int(t0), 0, t0 + 20),
    ]
    table = read_usage(path, since=t0 + HOUR + 100)
    assert table is not None
    assert dict(table.flags) == {"a": FlagUsage("a", 1, t0 + HOUR + 5), "b": FlagUsage("b", 0, t0 + 20)}
    assert (table.since, table.first) == (t0 + HOUR, t0)
    assert (table.evaluations("a"), table.evaluations("zzz"), table.last_seen("zzz")) == (1, 0, None)
    table = read_usage(path, since=t0)
    assert table is not None and table.evaluations("a") == 9


def test_read_usage_of_a_missing_file_or_table(tmp_path: Path) -> None:
    assert read_usage(tmp_path / "none.db", since=0) is None
    sqlite3.connect(tmp_path / "other.db").close()
    assert read_usage(tmp_path / "other.db", since=0) is None
    (tmp_path / "text.db").write_text("not a database, not at all" * 10)
    with pytest.raises(sqlite3.DatabaseError):
        read_usage(tmp_path / "text.db", since=0)


def test_recorder_to_sqlite_end_to_end(store: MemoryStore, tmp_path: Path) -> None:
    recorder = Recorder(SQLiteSink(tmp_path / "events.db"), RecorderOptions(usage=True))
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        for i in range(25):
            client.is_enabled("ramp", f"u{i}")
    recorder.close()
    found = read_usage(tmp_path / "events.db", since=time.time() - 86400)
    assert found is not None and found.evaluations("ramp") == 25
    assert abs((found.last_seen("ramp") or 0) - time.time()) < 30


def test_usage_json_shape_and_validation(tmp_path: Path) -> None:
    event = Event(EventKind.USAGE, 1_800_000_000.5, flag="ramp", value=12.0)
    assert event.to_dict() == {"kind": "usage", "time": 1_800_000_000.5, "flag": "ramp", "value": 12}
    assert Event.from_dict(event.to_dict()) == event
    with pytest.raises(EventError) as info:
        Event.from_dict({"kind": "usage", "time": 1, "value": 3})
    assert info.value.path == "flag"
    with pytest.raises(EventError) as info:
        Event.from_dict({"kind": "usage", "time": 1, "flag": "x", "value": 3, "key": "u1"})
    assert info.value.path == "key"
    for bad in (-1, 1.5, True, None):
        with pytest.raises(EventError) as info:
            Event.from_dict({"kind": "usage", "time": 1, "flag": "x", "value": bad})
        assert info.value.path == "value"
    sink = JsonLinesSink(tmp_path)
    sink.write([event])
    sink.close()
    (line,) = (tmp_path / "events-2027-01-15-0000.jsonl").read_text().splitlines()
    assert json.loads(line) == {"kind": "usage", "time": 1_800_000_000.5, "flag": "ramp", "value": 12}


# ---------------------------------------------------------------- exposures of every flag


def test_all_flags_records_plain_decisions_once_per_key(store: MemoryStore) -> None:
    sink = ListSink()
    seen: list[Decision] = []
    recorder = Recorder(sink, RecorderOptions(flags=Exposed.ALL, skip=frozenset({"quiet"})))
    options = Options(timeout=5, exposures=recorder, on_exposure=lambda d, c: seen.append(d))
    with Client(store, options) as client:
        ramp = {f"u{i}": client.is_enabled("ramp", f"u{i}") for i in range(40)}
        for i in range(40):
            client.evaluate("ramp", f"u{i}")  # repeats: deduplicated
            client.is_enabled("on", f"u{i}")  # on for everyone: no exposure
            client.is_enabled("quiet", f"u{i}")  # skipped
        exposed = [f"u{i}" for i in range(40) if client.evaluate("exp", f"u{i}").experiment_id is not None]
        assert recorder.flush()
    recorder.close()
    assert True in ramp.values() and False in ramp.values()  # both arms are recorded
    found = exposures_of(sink.events)
    assert sorted(k for k, f, _, _ in found if f == "ramp") == sorted(ramp)
    assert all(v is None and x is None for _, f, v, x in found if f == "ramp")
    assert {f for _, f, _, _ in found} == {"ramp", "exp"}
    assert sorted(k for k, f, _, _ in found if f == "exp") == sorted(exposed)
    assert recorder.stats().deduplicated >= 40
    assert {d.flag for d in seen} == {"exp"}  # on_exposure stays for experiments only


def test_all_flags_in_a_scope(store: MemoryStore) -> None:
    sink = ListSink()
    recorder = Recorder(sink, RecorderOptions(flags="all", usage=True))  # type: ignore[arg-type]
    assert recorder.options.flags is Exposed.ALL
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        with client.scope("u1"):
            client.is_enabled("ramp")
            client.is_enabled("ramp")
        client.scope("u2").all()  # bulk: no plain exposure, no usage (experiments' as before)
        assert recorder.flush()
    recorder.close()
    assert [x for x in exposures_of(sink.events) if x[1] == "ramp"] == [("u1", "ramp", None, None)]
    assert usage_of(sink.events) == {"ramp": 2}


def test_failed_evaluations_and_excluded_units_expose_nothing() -> None:
    sink = ListSink()
    with Recorder(sink, RecorderOptions(flags=Exposed.ALL)) as recorder:
        for _ in range(2):
            recorder(Decision("x", False, Reason.ERROR, error="boom"), Context(user_id="u1"))
            recorder(Decision("x", False, Reason.EXCLUDED), Context(user_id="u2"))
            recorder(Decision("x", False, Reason.HOLDOUT, rule="staff"), Context(user_id="u3"))
        recorder(Decision("x", True, Reason.PERCENTAGE, rule="percentage"), Context(user_id="u4"))
        assert recorder.flush()
        assert recorder.stats().deduplicated == 3  # remembered: repeats stay on the fast path
    assert exposures_of(sink.events) == [("u4", "x", None, None)]


def test_bad_recorder_options_are_refused() -> None:
    with pytest.raises(ClientError, match="flags"):
        RecorderOptions(flags="some")  # type: ignore[arg-type]
    with pytest.raises(ClientError, match="skip"):
        RecorderOptions(skip="ramp")  # type: ignore[arg-type]
    assert RecorderOptions(skip={"a"}).skip == frozenset({"a"})  # type: ignore[arg-type]


def test_plain_exposures_feed_the_blast_radius(store: MemoryStore, tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    recorder = Recorder(SQLiteSink(path), RecorderOptions(flags=Exposed.ALL))
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        on = sum(client.is_enabled("ramp", f"u{i}") for i in range(200))
    recorder.close()
    radius = blast_radius({"ramp": 50}, "ramp", 0, path)  # the ramp back to 0%
    assert radius.units == 200  # every unit the ramp decided for, on or off
    assert radius.on_to_off == on and radius.changed == on


def test_a_forked_child_reports_only_what_it_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    recorder = Recorder(SQLiteSink(path), RecorderOptions(usage=True, flags=Exposed.NONE))
    tally = recorder.tally
    assert tally is not None
    for _ in range(5):
        tally.count("x")  # counted by the parent before the fork: the parent's to report
    pid = os.fork()
    if pid == 0:  # the child: exits with 0 only if it reported its own 2
        code = 1
        try:
            tally.count("x")
            tally.count("x")
            code = 0 if recorder.flush(10) and recorder.stats().written == 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    recorder.close()
    found = read_usage(path, since=0)
    assert found is not None and found.evaluations("x") == 7


def test_usage_is_reported_on_gevent() -> None:
    pytest.importorskip("gevent")
    from flagstaff.runtime import GeventRuntime

    sink = ListSink()
    options = RecorderOptions(usage=True, flags=Exposed.NONE, interval=0.01, usage_interval=0.02)
    recorder = Recorder(sink, options, runtime=GeventRuntime())
    assert recorder.tally is not None
    for _ in range(3):
        recorder.tally.count("x")
    import gevent

    deadline = time.monotonic() + 10
    while usage_of(list(sink.events)) != {"x": 3} and time.monotonic() < deadline:
        gevent.sleep(0.01)  # the recorder's greenlet takes the counts on its own meanwhile
    assert usage_of(list(sink.events)) == {"x": 3}
    recorder.tally.count("x")
    recorder.close()
    assert usage_of(sink.events) == {"x": 4} and sink.closed
