"""``flagstaff scan --usage EVENTS_DB --idle-days N``: flags no client evaluated lately,
from an event store written by a real recorder and by the SQLite sink."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.client import Client, Options
from flagstaff.exposures import Event, EventKind, Exposed, Recorder, RecorderOptions, SQLiteSink
from flagstaff.stores.memory import MemoryStore
from flagstaff.usage import HOUR
from tests._support.client import unique_memory_url

DAY = 86_400.0


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def idle_of(*argv: str) -> tuple[int, dict[str, dict[str, Any]]]:
    code, out, err = run(*argv, "--json")
    assert out, err
    return code, {f["flag"]: f for f in json.loads(out)["findings"] if f["category"] == "idle"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    names = ["busy", "sleepy", "never", "young"]
    (src / "app.py").write_text("".join(f"client.is_enabled({n!r})\n" for n in names))
    created = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 2 * DAY))
    flags = {"busy": "on", "sleepy": "50", "never": "50", "young": {"enabled": "on", "created": created}}
    (tmp_path / "flags.json").write_text(json.dumps(flags))
    return tmp_path


def write_usage(path: Path, *events: Event) -> None:
    sink = SQLiteSink(path)
    sink.write(list(events))
    sink.close()


def test_idle_flags_from_usage_a_recorder_wrote(project: Path) -> None:
    events = project / "events.db"
    now = time.time()
    # Usage recorded for 60 days: "sleepy" last seen 40 days ago, "never" never.
    write_usage(
        events,
        Event(EventKind.USAGE, now - 60 * DAY, flag="sleepy", value=3),
        Event(EventKind.USAGE, now - 40 * DAY, flag="sleepy", value=1),
    )
    store = MemoryStore.from_url(unique_memory_url())
    store.put("busy", '"on"')
    recorder = Recorder(SQLiteSink(events), RecorderOptions(usage=True, flags=Exposed.NONE))
    with Client(store, Options(timeout=5, exposures=recorder)) as client:
        client.is_enabled("busy", "u1")  # a real client counts it today
    recorder.close()
    store.close()

    argv = [str(project / "src"), "--flags", str(project / "flags.json"), "--usage", str(events)]
    code, idle = idle_of(*argv, "--idle-days", "30")
    assert code == EXIT.NO
    # busy: seen today; young: created 2 days ago, not judged.
    assert sorted(idle) == ["never", "sleepy"]
    assert idle["sleepy"]["idle_days"] == pytest.approx(40, abs=0.1)
    assert idle["never"]["last_seen"] is None
    code, idle = idle_of(*argv, "--idle-days", "50")
    assert sorted(idle) == ["never"]  # sleepy was seen 40 days ago
    code, out, _ = run(*argv, "--idle-days", "30", "--ignore", "unused")
    assert "flags not evaluated lately (2):" in out
    assert "'sleepy' was last evaluated 40 days ago" in out
    code, idle = idle_of(*argv, "--idle-days", "30", "--ignore", "idle")
    assert idle == {} and code == EXIT.OK


def test_a_flag_never_seen_is_not_judged_before_usage_goes_back_that_far(project: Path) -> None:
    events = project / "events.db"
    write_usage(events, Event(EventKind.USAGE, time.time() - 5 * DAY, flag="busy", value=1))
    argv = [str(project / "src"), "--flags", str(project / "flags.json"), "--usage", str(events)]
    _, idle = idle_of(*argv, "--idle-days", "3")
    # busy: seen 5 days ago; never and sleepy: never counted in those 5 days; young: 2 days old.
    assert sorted(idle) == ["busy", "never", "sleepy"]
    _, idle = idle_of(*argv, "--idle-days", "10")
    assert idle == {}  # usage goes back 5 days only: nothing can be said for 10


def test_without_definitions_the_referenced_flags_are_judged(project: Path) -> None:
    events = project / "events.db"
    now = time.time()
    write_usage(
        events,
        Event(EventKind.USAGE, now - 90 * DAY, flag="sleepy", value=1),
        Event(EventKind.USAGE, now - HOUR, flag="busy", value=1),
    )
    _, idle = idle_of(str(project / "src"), "--usage", str(events), "--idle-days", "30")
    assert sorted(idle) == ["never", "sleepy", "young"]


def test_bad_usage_arguments(project: Path) -> None:
    src = str(project / "src")
    code, _, err = run(src, "--idle-days", "3")
    assert code == EXIT.USAGE and "--idle-days needs --usage" in err
    code, _, err = run(src, "--usage", str(project / "missing.db"))
    assert code == EXIT.USAGE and "no such event store" in err
    (project / "text.db").write_text("this is not a database " * 20)
    code, _, err = run(src, "--usage", str(project / "text.db"))
    assert code == EXIT.USAGE and "not a readable event store" in err
    write_usage(project / "empty.db")  # the tables, no usage row
    code, _, err = run(src, "--usage", str(project / "empty.db"), "--idle-days", "0")
    assert code == EXIT.USAGE and "positive number of days" in err
