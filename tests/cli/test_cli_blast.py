"""``flagstaff blast``: text, --json, the default event store, and the errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.context import Context
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.model import parse_flag

KEYS = [f"user-{i}" for i in range(1000)]


class Blast:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.db = tmp_path / "flags.db"
        self.url = f"sqlite:///{self.db}"
        self.events = Path(f"{self.db}.events")  # where serve ingests by default
        self.out = self.err = ""

    def __call__(self, *argv: str) -> int:
        code = main(["--store", self.url, "--author", "tester@host", *argv])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def record(self) -> None:
        now = time.time()
        sink = SQLiteSink(self.events)
        sink.write([Event(EventKind.EXPOSURE, now - 3600, key, "checkout") for key in KEYS])
        sink.write([Event(EventKind.EXPOSURE, now - 30 * 86_400, f"old-{i}", "checkout") for i in range(20)])
        sink.close()


@pytest.fixture
def blast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Blast:
    run = Blast(tmp_path, capsys)
    assert run("set", "checkout", '{"percentage": 10}') == EXIT.OK
    run.record()
    return run


def was_in(keys: list[str] = KEYS) -> int:
    ten = parse_flag("checkout", {"percentage": 10})
    return sum(evaluate(ten, Context(user_id=key)).enabled for key in keys)


def test_text(blast: Blast) -> None:
    n = was_in()
    assert blast("blast", "checkout", "off") == EXIT.OK, blast.err
    assert blast.out == f"{n:,} of 1,000 units seen in the last 7 days would change: {n:,} on -> off\n"
    assert blast("blast", "checkout", '{"percentage": 10}') == EXIT.OK
    assert blast.out == "0 of 1,000 units seen in the last 7 days would change\n"
    assert blast("blast", "checkout", "on", "--days", "60") == EXIT.OK
    off = 1020 - was_in(KEYS + [f"old-{i}" for i in range(20)])
    assert blast.out == f"{off:,} of 1,020 units seen in the last 60 days would change: {off:,} off -> on\n"


def test_json_file_and_explicit_events(blast: Blast, tmp_path: Path) -> None:
    doc = tmp_path / "new.json"
    doc.write_text(json.dumps({"percentage": 0}))
    moved = blast.events.rename(tmp_path / "elsewhere.db")
    code = blast("--json", "blast", "checkout", "-f", str(doc), "--events", str(moved), "--days", "1")
    assert code == EXIT.OK, blast.err
    data = json.loads(blast.out)
    n = was_in()
    assert data["units"] == 1000 and data["changed"] == data["on_to_off"] == n
    assert data["days"] == 1 and data["capped"] is False
    assert data["transitions"] == [{"from": "on", "to": "off", "units": n}]


def test_the_flag_is_not_written(blast: Blast) -> None:
    assert blast("blast", "checkout", "off") == EXIT.OK
    assert blast("--json", "get", "checkout") == EXIT.OK
    assert json.loads(blast.out)["document"] == {"percentage": 10}


def test_errors(blast: Blast, tmp_path: Path) -> None:
    assert blast("blast", "nope", "off") == EXIT.NOT_FOUND
    assert blast("blast", "checkout", '{"percentage": 200}') == EXIT.NO
    assert "percentage" in blast.err
    assert blast("blast", "checkout", "off", "--events", str(tmp_path / "none.db")) == EXIT.USAGE
    assert "no event store" in blast.err
    assert not (tmp_path / "none.db").exists()
    assert blast("blast", "checkout", "off", "--days", "0") == EXIT.USAGE
    assert blast("blast", "checkout", "off", "-f", "x.json") == EXIT.USAGE  # both given


def test_a_store_without_a_default_event_store(capsys: pytest.CaptureFixture[str]) -> None:
    url = "memory://blast-cli"
    assert main(["--store", url, "set", "checkout", "on"]) == EXIT.OK
    assert main(["--store", url, "blast", "checkout", "off"]) == EXIT.USAGE
    assert "--events" in capsys.readouterr().err
