"""``flagstaff archive`` / ``restore``, ``--comment`` recorded in history, the new kinds, and
``flagstaff scan``'s stale findings naming the archive command."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from flagstaff.admin import MAX_COMMENT, Admin, with_comment
from flagstaff.cli import EXIT, main
from flagstaff.context import Context
from flagstaff.decision import Reason
from flagstaff.errors import NotFoundError, ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.http.present import parse_author
from flagstaff.model import Kind, parse_flag
from flagstaff.stores import open_store

SCAN_PROJECT = Path(__file__).resolve().parents[1] / "data" / "scan_project" / "app"


def run(url: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--store", url, "--author", "tester@host", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(name="url")
def url_fixture(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flags.db'}"


def _doc(url: str, name: str) -> Any:
    store = open_store(url)
    try:
        record = store.get(name)
        return None if record is None else json.loads(record.raw)
    finally:
        store.close()


def _authors(url: str, name: str) -> list[str | None]:
    store = open_store(url)
    try:
        return [e.author for e in store.history(name, limit=10)]
    finally:
        store.close()


def test_archive_and_restore_keep_the_document(url: str) -> None:
    doc = {"percentage": 40, "kind": "release", "users": ["alice"]}
    assert run(url, "set", "checkout", json.dumps(doc))[0] == EXIT.OK
    code, out, _ = run(url, "archive", "checkout", "--comment", "shipped in 4.2")
    assert (code, out) == (EXIT.OK, "checkout: archived (version 2)\n")
    assert _doc(url, "checkout") == {**doc, "archived": True}
    code, out, _ = run(url, "check", "checkout", "--user", "alice", "--json")
    assert json.loads(out)["reason"] == "archived"
    assert run(url, "archive", "checkout")[1] == "checkout: unchanged (already archived)\n"
    listing = run(url, "list")[1].splitlines()
    assert "archived" in next(line for line in listing if line.startswith("checkout"))

    code, out, _ = run(url, "restore", "checkout")
    assert (code, out) == (EXIT.OK, "checkout: restored (version 3)\n")
    assert _doc(url, "checkout") == doc
    assert run(url, "restore", "checkout")[1] == "checkout: unchanged (already not archived)\n"
    assert _authors(url, "checkout")[1] == "tester@host # shipped in 4.2"
    code, _, err = run(url, "archive", "nope")
    assert code == EXIT.NOT_FOUND and "no flag named 'nope'" in err
    code, _, err = run(url, "archive", "checkout", "--expect", "1")
    assert code == EXIT.CONFLICT


def test_an_off_flag_archived_and_restored_is_off_again(url: str) -> None:
    run(url, "set", "legacy", "off")
    run(url, "archive", "legacy")
    assert _doc(url, "legacy") == {"enabled": "off", "archived": True}
    run(url, "restore", "legacy")
    assert parse_flag("legacy", _doc(url, "legacy")).constant is not None
    assert evaluate(parse_flag("legacy", _doc(url, "legacy")), Context(user_id="u")).enabled is False


def test_comment_is_one_line_and_bounded(url: str) -> None:
    assert with_comment("alice", "  why\nnot  ") == "alice # why not"
    assert with_comment("alice", "   ") == "alice"
    with pytest.raises(ValidationError, match=f"at most {MAX_COMMENT} characters"):
        with_comment("alice", "x" * (MAX_COMMENT + 1))
    code, _, err = run(url, "set", "f", "on", "--comment", "x" * (MAX_COMMENT + 1))
    assert code == EXIT.NO and "comment: must be at most" in err
    assert _doc(url, "f") is None
    # Read back: the comment apart from who (and from the API's token and request).
    assert parse_author("alice # why")["comment"] == "why"
    api = parse_author("bob [token t1, request r1] # rolled back: errors up")
    assert (api["actor"], api["token_id"], api["comment"]) == ("bob", "t1", "rolled back: errors up")
    assert parse_author("carol")["comment"] is None


def test_the_kinds_and_which_are_temporary() -> None:
    assert {k.value for k in Kind if k.temporary} == {"temporary", "release", "experiment"}
    for kind in ("release", "experiment", "ops", "permission"):
        assert parse_flag("f", {"kind": kind, "percentage": 5}).kind == Kind(kind)
    with pytest.raises(ValidationError, match="archived: must be true or false"):
        parse_flag("f", {"archived": "yes"})


def test_archived_beats_every_key_and_needs_no_segments() -> None:
    flag = parse_flag(
        "f",
        {"archived": True, "enabled": "on", "targeting": [{"segments": ["staff"], "serve": "on"}]},
    )
    decision = evaluate(flag, Context(user_id="u"))
    assert (decision.enabled, decision.reason, decision.rule) == (False, Reason.ARCHIVED, "archived")
    assert flag.constant == decision and not flag.needs_env


def test_admin_archive_of_a_missing_flag_is_not_found(url: str) -> None:
    store = open_store(url)
    try:
        with pytest.raises(NotFoundError):
            Admin(store).archive("ghost")
    finally:
        store.close()


def test_scan_stale_findings_name_the_archive_command(url: str) -> None:
    store = open_store(url)
    try:
        admin = Admin(store, author="test")
        admin.set("new_checkout", {"kind": "release", "created": "2020-01-15", "percentage": 5})
        admin.set("ranker", {"kind": "experiment", "created": "2020-02-01", "percentage": 5})
        admin.set("search_v2", {"kind": "release", "created": "2020-01-15", "archived": True})
        admin.set("inbox_v2", {"kind": "ops", "created": "2020-01-15"})
    finally:
        store.close()
    out, err = io.StringIO(), io.StringIO()
    main(["scan", str(SCAN_PROJECT), "--flags", url, "--ignore", "undefined"], stdout=out, stderr=err)
    lines = [line for line in out.getvalue().splitlines() if "days old" in line]
    assert len(lines) == 2, out.getvalue()  # archived and ops flags are not stale
    assert lines[0].startswith("  'new_checkout' is temporary and")
    assert lines[0].endswith("; retire it: flagstaff archive new_checkout")
    assert lines[1].endswith("; retire it: flagstaff archive ranker")
    out = io.StringIO()
    main(["scan", str(SCAN_PROJECT), "--flags", url, "--json"], stdout=out, stderr=err)
    stale = [f for f in json.loads(out.getvalue())["findings"] if f["category"] == "stale"]
    assert [f["archive"] for f in stale] == ["flagstaff archive new_checkout", "flagstaff archive ranker"]
