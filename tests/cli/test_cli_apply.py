"""``flagstaff apply`` (declarative files, one atomic write), ``rollback`` and ``diff NAME V1 [V2]``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.exposures import Event, EventKind, SQLiteSink
from flagstaff.stores.sqlite import SQLiteStore


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.db = tmp_path / "flags.db"
        self.url = f"sqlite:///{self.db}"
        self.out = self.err = ""

    def __call__(self, *argv: str) -> int:
        code = main(["--store", self.url, "--author", "tester@host", *argv])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def documents(self) -> dict[str, object]:
        store = SQLiteStore(str(self.db))
        try:
            return {n: json.loads(r.raw) for n, r in store.load().records.items()}
        finally:
            store.close()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(tmp_path, capsys)


DECLARED = {
    "checkout": {"enabled": True, "percentage": 10},
    "segment:beta": {"users": ["u1"]},
    "banner": {"enabled": True, "targeting": [{"segments": ["beta"], "serve": "on"}]},
}


def test_check_then_apply_then_match(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DECLARED))
    assert cli("set", "old", '{"enabled": false}') == EXIT.OK
    assert cli("apply", str(path), "--check") == EXIT.NO
    assert "+ checkout:" in cli.out and "+ segment:beta:" in cli.out
    assert "1 in the store but not in" in cli.err
    assert set(cli.documents()) == {"old"}  # --check writes nothing
    # No terminal to confirm on and no --yes: refused, nothing written.
    assert cli("apply", str(path), "--prune") == EXIT.USAGE
    assert "--yes" in cli.err
    assert set(cli.documents()) == {"old"}
    assert cli("apply", str(path), "--prune", "--yes") == EXIT.OK, cli.err
    assert "- old:" in cli.out and "applied 4 changes (3 created, 0 updated, 1 deleted)" in cli.out
    assert cli.documents() == DECLARED
    assert cli("apply", str(path), "--check", "--prune") == EXIT.OK
    assert "matches" in cli.err
    # One atomic write: the four changes share the author and come one after the other.
    store = SQLiteStore(str(cli.db))
    entries = store.history(limit=4)
    store.close()
    assert {e.author for e in entries} == {"tester@host"}
    assert [e.revision for e in entries] == list(range(entries[0].revision, entries[0].revision - 4, -1))


def test_an_invalid_document_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"checkout": {"percentage": 500}, "fine": {"enabled": True}}))
    assert cli("apply", str(path), "--yes") == EXIT.NO
    assert "percentage" in cli.err
    assert cli.documents() == {}


def test_a_directory_with_segments_and_one_document_files(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "flags"
    (root / "segments").mkdir(parents=True)
    (root / "web.json").write_text(json.dumps({"checkout": DECLARED["checkout"]}))
    (root / "banner.json").write_text(json.dumps(DECLARED["banner"]))  # one document: named by its stem
    (root / "segments" / "beta.json").write_text(json.dumps(DECLARED["segment:beta"]))
    (root / "dark.yaml").write_text("on\n")  # a bare value (YAML's true): the flag "dark"
    assert cli("apply", str(root), "--yes", "--json") == EXIT.OK, cli.err
    answer = json.loads(cli.out)  # one JSON document
    assert answer["applied"] is True
    assert [(c["key"], c["change"]) for c in answer["changes"]] == [
        ("banner", "created"),
        ("checkout", "created"),
        ("dark", "created"),
        ("segment:beta", "created"),
    ]
    assert cli.documents() == {**DECLARED, "dark": True}
    (root / "again.json").write_text(json.dumps({"checkout": {"enabled": False}}))
    assert cli("apply", str(root), "--check") == EXIT.USAGE
    assert "declared twice" in cli.err


def test_a_change_since_the_diff_is_a_conflict(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flagstaff.cli import apply

    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"checkout": {"enabled": True, "percentage": 30}, "new": {"enabled": True}}))
    assert cli("set", "checkout", '{"enabled": true, "percentage": 10}') == EXIT.OK
    real = apply._show

    def meanwhile(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)  # type: ignore[arg-type]
        store = SQLiteStore(str(cli.db))
        store.put("checkout", '{"enabled":false}')  # someone else writes between diff and apply
        store.close()

    monkeypatch.setattr(apply, "_show", meanwhile)
    assert cli("apply", str(path), "--yes") == EXIT.CONFLICT
    assert "checkout" in cli.err
    assert cli.documents() == {"checkout": {"enabled": False}}  # "new" was not written either


def test_blast_radius_per_changed_flag(cli: Cli, tmp_path: Path) -> None:
    events = tmp_path / "events.db"
    sink = SQLiteSink(events)
    sink.write([Event(EventKind.EXPOSURE, time.time() - 60, f"user-{i}", "checkout") for i in range(200)])
    sink.close()
    assert cli("set", "checkout", '{"enabled": true, "percentage": 100}') == EXIT.OK
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"checkout": "off"}))
    assert cli("apply", str(path), "--check", "--events", str(events)) == EXIT.NO
    assert "200 of 200 units seen in the last 7 days would change: 200 on -> off" in cli.out


def test_rollback_and_version_diff(cli: Cli, tmp_path: Path) -> None:
    assert cli("set", "checkout", '{"enabled": true, "percentage": 10}') == EXIT.OK
    assert cli("set", "checkout", '{"enabled": true, "percentage": 50}') == EXIT.OK
    assert cli("diff", "checkout", "1") == EXIT.NO
    assert '-  "percentage": 10' in cli.out and '+  "percentage": 50' in cli.out
    assert "checkout v2 (current)" in cli.out
    assert cli("rollback", "checkout", "1") == EXIT.OK, cli.err
    assert "written back as version 3" in cli.out
    assert cli.documents() == {"checkout": {"enabled": True, "percentage": 10}}
    assert cli("diff", "checkout", "1", "3") == EXIT.OK
    assert cli("--json", "diff", "checkout", "1", "2") == EXIT.NO
    assert json.loads(cli.out)["right"]["document"] == {"enabled": True, "percentage": 50}
    assert cli("rollback", "checkout", "9") == EXIT.NOT_FOUND
    assert "no version 9" in cli.err
    assert cli("rollback", "checkout", "1") == EXIT.OK
    assert "nothing written" in cli.err
    # The store-against-file form of diff is unchanged.
    exported = tmp_path / "export.json"
    assert cli("export", str(exported)) == EXIT.OK
    assert cli("diff", str(exported)) == EXIT.OK
