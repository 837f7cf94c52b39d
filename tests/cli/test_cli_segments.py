"""Segments and references on the command line, against a real SQLite store in a tmp dir:
``flagstaff segment list|get|set|delete``, ``list --segments``, ``get segment:NAME``,
``check`` linked against the store (segments, prerequisites, any attribute, the value),
refusals with their exit codes, and export/import carrying segments."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.model import decode_document
from flagstaff.stores.sqlite import SQLiteStore

STAFF = {"description": "Internal staff", "users": ["alice"], "groups": ["employee"]}


class Run:
    """Runs the CLI in-process against one SQLite store in a tmp dir."""

    def __init__(self, capsys: pytest.CaptureFixture[str], path: Path) -> None:
        self.capsys = capsys
        self.url = f"sqlite:///{path}"
        self.out = ""
        self.err = ""

    def __call__(self, *argv: str) -> int:
        code = main(["--store", self.url, "--author", "tester@host", *argv])
        captured = self.capsys.readouterr()
        self.out, self.err = captured.out, captured.err
        return code

    def json(self, *argv: str) -> Any:
        code = self("--json", *argv)
        assert code == EXIT.OK, self.err
        return json.loads(self.out)

    def doc(self, key: str) -> Any:
        store = SQLiteStore.from_url(self.url)
        try:
            rec = store.get(key)
        finally:
            store.close()
        return None if rec is None else decode_document(rec.raw)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    return Run(capsys, tmp_path / "flagstaff.db")


def rule_on(*segments: str) -> str:
    return json.dumps({"targeting": [{"segments": list(segments), "serve": "on"}]})


# --------------------------------------------------------------------------- segment set, get, list, delete


def test_segment_set_from_an_argument_a_file_and_stdin(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("segment", "set", "staff", json.dumps(STAFF)) == EXIT.OK
    assert cli.out.splitlines()[0] == "segment staff: set (version 1)"
    assert cli.doc("segment:staff") == STAFF

    path = tmp_path / "eu.json"
    path.write_text(json.dumps({"rules": [{"attribute": "country", "op": "in", "value": ["FR", "DE"]}]}))
    assert cli("segment", "set", "eu", "-f", str(path)) == EXIT.OK
    assert cli.doc("segment:eu")["rules"][0]["value"] == ["FR", "DE"]
    assert cli("segment", "set", "eu2", f"@{path}") == EXIT.OK
    assert cli.doc("segment:eu2") == cli.doc("segment:eu")

    monkeypatch.setattr("sys.stdin", io.StringIO('{"users": ["bob"]}'))
    assert cli("segment", "set", "piped") == EXIT.OK
    assert cli.doc("segment:piped") == {"users": ["bob"]}

    # The same document again: unchanged, no new version.
    out = cli.json("segment", "set", "staff", json.dumps(STAFF))
    assert out["segment"] == "staff" and out["changed"] is False and out["version"] == 1
    assert cli("segment", "set", "staff", '{"users": []}', "--expect", "7") == EXIT.CONFLICT
    assert cli("segment", "set", "staff", "x", "-f", str(path)) == EXIT.USAGE


def test_segment_set_refuses_an_invalid_segment(cli: Run) -> None:
    assert cli("segment", "set", "staff", '{"userz": ["a"]}') == EXIT.NO
    assert "userz" in cli.err and "did you mean 'users'" in cli.err and "Traceback" not in cli.err
    assert cli("segment", "set", "bad name", "{}") == EXIT.NO
    assert "not a valid segment name" in cli.err
    assert cli.doc("segment:staff") is None


def test_segment_get_and_list(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("segment", "set", "holdout", '{"percentage": 5, "holdout": true}')
    cli("set", "beta", rule_on("staff"))
    assert cli("segment", "get", "staff") == EXIT.OK
    assert json.loads(cli.out) == STAFF
    got = cli.json("segment", "get", "staff")
    assert got == {"segment": "staff", "version": 1, "document": STAFF, "used_by": ["beta"]}

    assert cli("segment", "list") == EXIT.OK
    lines = cli.out.splitlines()
    assert lines[0].split() == ["SEGMENT", "VERSION", "MEMBERS", "USED", "BY", "DESCRIPTION"]
    assert lines[1].split()[:3] == ["holdout", "1", "percentage=5%,"]
    assert "holdout" in lines[1].split()[3]
    assert lines[2].split()[:5] == ["staff", "1", "users=1,", "groups=1", "beta"]
    listed = cli.json("segment", "list")["segments"]
    assert [s["segment"] for s in listed] == ["holdout", "staff"]
    assert listed[1]["used_by"] == ["beta"] and listed[1]["description"] == "Internal staff"

    assert cli("segment", "get", "nobody") == EXIT.NOT_FOUND
    assert cli.err.strip() == "flagstaff: error: no segment named 'nobody'"
    assert cli("segment", "get") == EXIT.USAGE
    assert cli("segment", "frobnicate", "x") == EXIT.USAGE


def test_list_shows_flags_only_unless_asked_for_segments(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("set", "beta", rule_on("staff"))
    cli("set", "pct", "25")
    assert cli("list") == EXIT.OK
    assert [line.split()[0] for line in cli.out.splitlines()[1:]] == ["beta", "pct"]
    assert [f["flag"] for f in cli.json("list")["flags"]] == ["beta", "pct"]
    assert "segments" not in cli.json("list")

    assert cli("list", "--segments") == EXIT.OK
    sections = cli.out.split("\n\n")
    assert sections[0].splitlines()[0].startswith("FLAG")
    assert sections[1].splitlines()[0].startswith("SEGMENT")
    assert sections[1].splitlines()[1].split()[0] == "staff"
    both = cli.json("list", "--segments")
    assert [s["segment"] for s in both["segments"]] == ["staff"]

    # `get` reads a segment by its key too.
    assert cli.json("get", "segment:staff") == {"segment": "staff", "version": 1, "document": STAFF}


def test_segment_delete_is_refused_while_flags_use_it(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("set", "beta", rule_on("staff"))
    cli("set", "alpha", json.dumps({"deny": {"segments": ["staff"]}, "everyone": True}))
    assert cli("segment", "delete", "staff") == EXIT.NO
    assert cli.err.strip() == (
        "flagstaff: error: segment 'staff' is used by 2 flags: 'alpha', 'beta'; remove it from them first"
    )
    assert cli.doc("segment:staff") == STAFF
    cli("set", "alpha", "on")
    cli("set", "beta", "on")
    assert cli("segment", "delete", "staff") == EXIT.OK
    assert cli.out.strip() == "segment staff: deleted"
    assert cli.doc("segment:staff") is None
    assert cli("segment", "delete", "staff") == EXIT.NOT_FOUND


def test_segment_delete_force(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("set", "beta", rule_on("staff"))
    assert cli("segment", "delete", "staff", "--force") == EXIT.OK
    assert cli.doc("segment:staff") is None
    # The flag dangles: it still reads, and the missing segment has no member.
    assert cli("--json", "check", "beta", "--user", "alice") == EXIT.NO
    assert json.loads(cli.out)["enabled"] is False and json.loads(cli.out)["reason"] != "error"


# --------------------------------------------------------------------------- references refused


def test_set_refuses_a_missing_segment_or_prerequisite_with_the_path(cli: Run) -> None:
    assert cli("set", "beta", rule_on("staff")) == EXIT.NO
    assert cli.err.strip() == (
        "flagstaff: error: invalid flag 'beta': targeting[0].segments[0]: no segment named 'staff'"
    )
    assert cli("--json", "set", "v2", '{"prerequisites": ["v1"], "everyone": true}') == EXIT.NO
    assert json.loads(cli.err)["problems"] == [{"path": "prerequisites[0]", "message": "no flag named 'v1'"}]
    assert cli.doc("beta") is None and cli.doc("v2") is None


def test_set_refuses_a_cycle_and_delete_a_required_flag(cli: Run) -> None:
    cli("set", "new_checkout", "on")
    assert cli("set", "new_checkout_v2", '{"prerequisites": ["new_checkout"], "everyone": true}') == EXIT.OK
    assert cli("set", "new_checkout", '{"prerequisites": ["new_checkout_v2"], "everyone": true}') == EXIT.NO
    assert "prerequisites[0]: cycle new_checkout -> new_checkout_v2 -> new_checkout" in cli.err
    assert cli("delete", "new_checkout") == EXIT.NO
    assert "flag 'new_checkout' is required" in cli.err and "'new_checkout_v2'" in cli.err
    assert cli.doc("new_checkout") == "on"
    assert cli("delete", "new_checkout", "--force") == EXIT.OK


def test_set_refuses_an_overlapping_layer(cli: Run) -> None:
    def layered(start: int, end: int) -> str:
        layer = {"name": "checkout", "range": [start, end]}
        return json.dumps({"experiment": {"variants": {"a": 10}, "everyone": True, "layer": layer}})

    assert cli("set", "copy_test", layered(0, 50)) == EXIT.OK
    assert cli("set", "color_test", layered(25, 75)) == EXIT.NO
    assert "experiment.layer.range" in cli.err and "overlaps flag 'copy_test'" in cli.err
    assert cli("set", "color_test", layered(50, 100)) == EXIT.OK


# --------------------------------------------------------------------------- check, linked


def test_check_links_segments_and_prints_the_value(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    doc = {
        "targeting": [{"segments": ["staff"], "serve": {"variant": "big"}}],
        "default": "off",
        "values": {"big": {"max_items": 50}, "off": {"max_items": 10}},
    }
    cli("set", "limits", json.dumps(doc))
    staff = cli.json("check", "limits", "--user", "alice")
    assert staff["enabled"] is True and staff["variant"] == "big"
    assert staff["reason"] == "rule" and staff["rule"] == "targeting[0]"
    assert staff["value"] == {"max_items": 50}
    other = cli("--json", "check", "limits", "--user", "bob")
    assert other == EXIT.NO and json.loads(cli.out)["value"] == {"max_items": 10}

    assert cli("check", "limits", "--user", "alice") == EXIT.OK
    lines = cli.out.splitlines()
    assert lines[0].split() == ["FLAG", "ENABLED", "VARIANT", "REASON", "RULE", "VALUE"]
    assert lines[1].split() == ["limits", "yes", "big", "rule", "targeting[0]", '{"max_items":50}']

    # A segment edit reaches the flag: check reads the store's current segments.
    cli("segment", "set", "staff", '{"users": ["bob"]}')
    assert cli.json("check", "limits", "--user", "bob")["value"] == {"max_items": 50}


def test_check_links_prerequisites(cli: Run) -> None:
    cli("set", "new_checkout", '{"users": ["alice"]}')
    cli("set", "new_checkout_v2", '{"prerequisites": ["new_checkout"], "everyone": true}')
    assert cli.json("check", "new_checkout_v2", "--user", "alice")["enabled"] is True
    assert cli("--json", "check", "new_checkout_v2", "--user", "bob") == EXIT.NO
    decision = json.loads(cli.out)
    assert decision["reason"] == "prerequisite" and decision["rule"] == "new_checkout"


def test_check_accepts_any_attribute_for_rules_and_bucketing(cli: Run) -> None:
    cli("set", "by_account", json.dumps({"bucket_by": "account", "percentage": 100}))
    cli(
        "set",
        "pro_only",
        json.dumps(
            {"targeting": [{"when": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": "on"}]}
        ),
    )
    assert cli.json("check", "by_account", "--attr", "account=acme")["enabled"] is True
    # No bucketing key: not bucketed, never an error.
    assert cli("--json", "check", "by_account", "--user", "u1") == EXIT.NO
    assert json.loads(cli.out)["reason"] != "error"
    assert cli.json("check", "pro_only", "--attr", "plan=pro")["reason"] == "rule"
    assert cli("check", "pro_only", "--attr", "plan=free") == EXIT.NO
    # VALUE is JSON when it parses: a number stays a number for numeric operators.
    cli("set", "big_orgs", json.dumps({"rules": [{"attribute": "seats", "op": "gte", "value": 100}]}))
    assert cli.json("check", "big_orgs", "--attr", "seats=250")["enabled"] is True
    assert cli("check", "big_orgs", "--attr", "seats") == EXIT.USAGE


def test_check_a_segment_says_whether_the_context_is_a_member(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    member = cli.json("check", "segment:staff", "--group", "employee")
    assert member["segment"] == "staff" and member["member"] is True and member["reason"] == "member"
    assert cli("check", "segment:staff", "--user", "bob") == EXIT.NO
    assert cli("check", "segment:nobody") == EXIT.NOT_FOUND


# --------------------------------------------------------------------------- moving documents


def test_export_and_import_carry_segments(
    cli: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("set", "beta", rule_on("staff"))
    path = tmp_path / "export.json"
    assert cli("export", str(path)) == EXIT.OK
    exported = json.loads(path.read_text())
    assert exported == {"beta": json.loads(rule_on("staff")), "segment:staff": STAFF}

    other = Run(capsys, tmp_path / "other.db")
    assert other("import", str(path)) == EXIT.OK
    assert other.doc("segment:staff") == STAFF and other.doc("beta") == exported["beta"]
    assert other.json("check", "beta", "--user", "alice")["enabled"] is True

    # A file with a flag naming a segment it does not bring is refused as a whole.
    path.write_text(json.dumps({"gamma": json.loads(rule_on("ghosts")), "delta": "on"}))
    fresh = Run(capsys, tmp_path / "fresh.db")
    assert fresh("import", str(path)) == EXIT.NO
    assert "gamma: targeting[0].segments[0]: no segment named 'ghosts'" in fresh.err
    assert fresh.doc("delta") is None

    # `validate` reads segment keys as segments.
    path.write_text(json.dumps({"segment:staff": STAFF, "segment:bad": {"userz": []}, "beta": "on"}))
    assert cli("validate", str(path)) == EXIT.NO
    assert [line.split(":")[0:2] for line in cli.out.splitlines()] == [["segment", "bad"]]


def test_list_summarises_the_new_keys(cli: Run) -> None:
    cli("segment", "set", "staff", json.dumps(STAFF))
    cli("set", "base", "on")
    doc = {
        "deny": {"users": ["mallory"]},
        "prerequisites": ["base"],
        "targeting": [
            {"segments": ["staff"], "serve": "on"},
            {"groups": ["beta"], "serve": {"percentage": 10}},
        ],
        "default": "off",
    }
    cli("set", "rich", json.dumps(doc))
    cli("set", "gated", json.dumps({"prerequisites": ["base"]}))
    rows = {r["flag"]: r["status"] for r in cli.json("list")["flags"]}
    assert rows["rich"] == "deny, requires base, targeting (2 rules), default off"
    assert rows["gated"] == "requires base, off (no targeting)"
    cli("disable", "rich")
    assert {r["flag"]: r["status"] for r in cli.json("list")["flags"]}["rich"] == "off (killed)"


def test_check_a_cycle_that_arrived_by_another_route_fails_its_prerequisite(cli: Run) -> None:
    store = SQLiteStore.from_url(cli.url)
    try:  # written past the admin, which refuses cycles
        store.put("cy_a", json.dumps({"prerequisites": ["cy_b"], "everyone": True}))
        store.put("cy_b", json.dumps({"prerequisites": ["cy_a"], "everyone": True}))
    finally:
        store.close()
    assert cli("--json", "check", "cy_a", "cy_b", "--user", "u1") == EXIT.NO
    decisions = {d["flag"]: d for d in json.loads(cli.out)}
    assert decisions["cy_a"]["reason"] == "prerequisite" and decisions["cy_a"]["rule"] == "cy_b"
    assert decisions["cy_b"]["reason"] == "prerequisite" and decisions["cy_b"]["rule"] == "cy_a"
    # Still editable through the admin: an edit that adds nothing new is not refused.
    assert cli("rollout", "cy_a", "50") == EXIT.OK
