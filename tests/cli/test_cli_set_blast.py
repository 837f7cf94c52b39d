"""``flagstaff set NAME DOCUMENT --blast[=DAYS]``: the blast radius before the write, and the confirmation."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.context import Context
from flagstaff.evaluate import evaluate
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.model import parse_flag
from flagstaff.stores import open_store

KEYS = [f"user-{i}" for i in range(1000)]


class Terminal(io.StringIO):
    """Standard input that is a terminal, with the operator's answer typed in."""

    def isatty(self) -> bool:
        return True


class Run:
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

    def document(self, name: str = "checkout") -> object:
        store = open_store(self.url)
        try:
            record = store.get(name)
            return None if record is None else json.loads(record.raw)
        finally:
            store.close()


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    r = Run(tmp_path, capsys)
    assert r("set", "checkout", '{"percentage": 10}') == EXIT.OK
    now = time.time()
    sink = SQLiteSink(r.events)
    sink.write([Event(EventKind.EXPOSURE, now - 3600, key, "checkout") for key in KEYS])
    sink.write([Event(EventKind.EXPOSURE, now - 20 * 86_400, f"old-{i}", "checkout") for i in range(20)])
    sink.close()
    return r


def was_in(keys: list[str]) -> int:
    ten = parse_flag("checkout", {"percentage": 10})
    return sum(evaluate(ten, Context(user_id=key)).enabled for key in keys)


def test_yes_shows_the_radius_and_writes(run: Run) -> None:
    n = was_in(KEYS)
    assert run("set", "checkout", '{"percentage": 0}', "--blast", "--yes") == EXIT.OK, run.err
    assert f"{n:,} of 1,000 units seen in the last 7 days would change: {n:,} on -> off" in run.err
    assert "checkout: set (version 2)" in run.out
    assert run.document() == {"percentage": 0}


def test_without_a_terminal_and_without_yes_nothing_is_written(run: Run) -> None:
    code = run("set", "checkout", "off", "--blast")
    assert code == EXIT.USAGE
    assert "pass --yes" in run.err and "would change" in run.err  # the radius is still shown
    assert run.document() == {"percentage": 10}


def test_the_terminal_answer_decides(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert run("set", "checkout", "off", "--blast") == EXIT.NO
    assert "Write checkout? [y/N]" in run.err and "checkout: not written" in run.err
    assert run.document() == {"percentage": 10}
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert run("set", "checkout", "off", "--blast=30") == EXIT.OK, run.err
    n = was_in(KEYS + [f"old-{i}" for i in range(20)])
    assert f"{n:,} of 1,020 units seen in the last 30 days would change" in run.err
    assert run.document() == "off"


def test_a_new_flag_moves_everyone_it_turns_on(run: Run) -> None:
    assert run("set", "fresh", "on", "--blast", "--yes", "--events", str(run.events)) == EXIT.OK, run.err
    assert "1,000 of 1,000 units seen in the last 7 days would change: 1,000 off -> on" in run.err
    assert run.document("fresh") == "on"


def test_mistakes_are_usage_errors_and_write_nothing(run: Run, tmp_path: Path) -> None:
    assert run("set", "checkout", "off", "--yes") == EXIT.USAGE
    assert "--yes and --events go with --blast" in run.err
    assert run("set", "checkout", '{"percentage": 200}', "--blast", "--yes") != EXIT.OK
    assert run.document() == {"percentage": 10}
    missing = tmp_path / "nowhere.db"
    assert run("set", "checkout", "off", "--blast", "--yes", "--events", str(missing)) == EXIT.OK
    assert "no event store" in run.err  # nothing recorded yet: nobody to move
