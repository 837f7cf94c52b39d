"""The CLI through ``main(argv)``, and a few runs as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.cli._output import format_table
from flagstaff.model import decode_document
from flagstaff.stores.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]


class Run:
    """Runs the CLI in-process against one private memory store."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.url = f"memory://cli-{uuid.uuid4().hex}"
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

    def doc(self, name: str) -> Any:
        rec = MemoryStore.from_url(self.url).get(name)
        return None if rec is None else decode_document(rec.raw)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_set_get_list(cli: Run) -> None:
    assert cli("set", "beta", '{"users": ["alice"], "description": "the beta"}') == EXIT.OK
    assert "beta: set (version 1)" in cli.out
    assert cli("get", "beta") == EXIT.OK
    assert json.loads(cli.out) == {"users": ["alice"], "description": "the beta"}
    assert cli("set", "pct", "25") == EXIT.OK
    assert cli("list") == EXIT.OK
    lines = cli.out.splitlines()
    assert lines[0].split() == ["FLAG", "VERSION", "STATUS", "DESCRIPTION"]
    assert lines[1].split()[:3] == ["beta", "1", "users"]
    assert lines[2].split()[:3] == ["pct", "1", "percentage=25%"]
    listed = cli.json("list")
    assert [f["flag"] for f in listed["flags"]] == ["beta", "pct"]
    assert listed["flags"][1]["document"] == 25 and listed["flags"][0]["description"] == "the beta"
    assert cli.json("get", "pct") == {"flag": "pct", "version": 1, "document": 25}


def test_list_marks_invalid_stored_documents(cli: Run) -> None:
    MemoryStore.from_url(cli.url).put("broken", '{"percentage": "lots"}')  # bypassing validation
    assert cli("list") == EXIT.OK
    assert cli.out.splitlines()[1].split()[:3] == ["broken", "1", "INVALID"]
    assert cli("check", "broken", "--user", "u") == EXIT.NO
    assert "error" in cli.out


def test_set_from_file(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"groups": ["beta"]}')
    assert cli("set", "f", f"@{path}") == EXIT.OK
    assert cli.doc("f") == {"groups": ["beta"]}


def test_set_refuses_invalid_documents_with_the_validation_message(cli: Run) -> None:
    assert cli("set", "f", '{"percent_loggedin": 250}') == EXIT.NO
    assert cli.err.strip() == (
        "flagstaff: error: invalid flag 'f': percent_loggedin: must be a number between 0 and 100, not 250"
    )
    assert "Traceback" not in cli.err
    assert cli.doc("f") is None
    assert cli("set", "f", "{not json") == EXIT.NO
    assert "not JSON" in cli.err
    assert cli("--json", "set", "f", '{"admn": true}') == EXIT.NO
    err = json.loads(cli.err)
    assert err["exit"] == EXIT.NO
    assert err["problems"] == [{"path": "admn", "message": "unknown key; did you mean 'admin'?"}]


def test_kill_switch_and_enable(cli: Run) -> None:
    cli("set", "f", '{"users": ["a"], "percentage": 10}')
    assert cli("disable", "f") == EXIT.OK
    assert cli.doc("f") == {"users": ["a"], "percentage": 10, "enabled": False}
    assert cli("check", "f", "--user", "a") == EXIT.NO
    assert "off" in cli.out.splitlines()[1].split()
    assert cli("enable", "f") == EXIT.OK
    assert cli.doc("f") == {"users": ["a"], "percentage": 10}
    assert cli("check", "f", "--user", "a") == EXIT.OK

    cli("set", "g", "off")
    assert cli("enable", "g") == EXIT.NO
    assert "enable --all" in cli.err
    assert cli("enable", "g", "--all") == EXIT.OK
    assert cli.doc("g") == "on"


def test_set_twice_is_unchanged_and_keeps_the_version(cli: Run) -> None:
    assert cli.json("set", "g", "on")["version"] == 1
    assert cli("set", "g", "on") == EXIT.OK
    assert cli.out.strip() == "g: unchanged"
    assert cli.json("get", "g")["version"] == 1


def test_rollout_and_add_user_on_a_missing_flag_suggest_instead_of_creating(cli: Run) -> None:
    cli("set", "new_checkout", "10")
    for argv in (["rollout", "new_chekout", "20"], ["add-user", "new_chekout", "alice"]):
        assert cli(*argv) == EXIT.NOT_FOUND, argv
        assert "did you mean 'new_checkout'?" in cli.err
        assert "--create" in cli.err
        assert cli.doc("new_chekout") is None
    assert cli.doc("new_checkout") == 10
    assert cli("rollout", "zzz", "20") == EXIT.NOT_FOUND
    assert "did you mean" not in cli.err
    assert cli("rollout", "brand_new", "20", "--create") == EXIT.OK
    assert cli.doc("brand_new") == 20
    assert cli("add-user", "other_new", "bob", "--create") == EXIT.OK
    assert cli.doc("other_new") == {"users": ["bob"]}


def test_rollout_and_users(cli: Run) -> None:
    assert cli("rollout", "f", "5", "--create") == EXIT.OK
    assert cli.doc("f") == 5
    assert cli("rollout", "f", "12.5%") == EXIT.OK
    assert cli.doc("f") == 12.5
    assert cli("add-user", "f", "alice") == EXIT.OK
    assert cli.doc("f") == {"percentage": 12.5, "users": ["alice"]}
    out = cli.json("add-user", "f", "alice")
    assert out["changed"] is False
    assert cli("remove-user", "f", "alice") == EXIT.OK
    assert cli.doc("f") == {"percentage": 12.5}
    assert cli("rollout", "f", "101") == EXIT.USAGE
    assert cli("rollout", "f", "lots") == EXIT.USAGE


def test_not_found_exit_codes(cli: Run) -> None:
    for argv in (["get", "nope"], ["delete", "nope"], ["disable", "nope"], ["remove-user", "nope", "x"]):
        assert cli(*argv) == EXIT.NOT_FOUND, argv
        assert cli.err.strip() == "flagstaff: error: no flag named 'nope'"
    assert cli("check", "nope") == EXIT.NOT_FOUND
    assert "unknown_flag" in cli.out


def test_conflict_exit_code(cli: Run) -> None:
    cli("set", "f", "on")
    assert cli("set", "f", "off", "--expect", "0") == EXIT.CONFLICT
    assert "changed meanwhile" in cli.err
    assert cli("delete", "f", "--expect", "7") == EXIT.CONFLICT
    assert cli("delete", "f", "--expect", "1") == EXIT.OK
    assert cli.doc("f") is None


def test_usage_and_store_errors(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", "nosuch://x", "list"]) == EXIT.USAGE
    err = capsys.readouterr().err
    assert err.startswith("flagstaff: error: unknown store URL") and err.count("\n") == 1
    assert main(["frobnicate"]) == EXIT.USAGE
    assert main(["--help"]) == EXIT.OK
    assert "Exit codes" in capsys.readouterr().out
    assert cli("set", "f", "@/nonexistent/file.json") == EXIT.USAGE
    assert "cannot read /nonexistent/file.json" in cli.err


def test_global_options_after_the_command(cli: Run) -> None:
    cli("set", "f", "on")
    assert main(["list", "--store", cli.url, "--json"]) == EXIT.OK
    assert json.loads(cli.capsys.readouterr().out)["flags"][0]["flag"] == "f"


def test_store_from_environment(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("set", "envflag", "on")
    monkeypatch.setenv("FLAGSTAFF_STORE", cli.url)
    assert main(["--json", "get", "envflag"]) == EXIT.OK
    assert json.loads(cli.capsys.readouterr().out)["document"] == "on"


def test_check_prints_decision_and_reason(cli: Run) -> None:
    cli(
        "set",
        "f",
        json.dumps(
            {
                "groups": ["beta"],
                "rules": [{"attribute": "plan", "op": "eq", "value": "pro"}],
                "subdomains": ["beta"],
                "oauth_clients": ["c1"],
                "url": {"new_ui": "treatment"},
                "locations": ["pics"],
            }
        ),
    )
    cases = [
        (["--group", "beta"], "target", "groups"),
        (["--attr", "plan=pro"], "target", "rules[0]"),
        (["--subdomain", "beta"], "target", "subdomains"),
        (["--oauth-client", "c1"], "target", "oauth_clients"),
        (["--location", "pics"], "target", "locations"),
        (["--feature", "new_ui"], "forced", "url"),
        (["--attr", "plan=free"], "default", None),
    ]
    for extra, reason, rule in cases:
        code = cli("--json", "check", "f", "--user", "u1", *extra)
        decision = json.loads(cli.out)
        assert code == (EXIT.OK if decision["enabled"] else EXIT.NO)
        assert decision["reason"] == reason, extra
        assert decision.get("rule") == rule
    forced = cli.json("check", "f", "--feature", "new_ui", "--cookie", "abc")
    assert forced["variant"] == "treatment"


def test_check_user_name_and_several_flags(cli: Run) -> None:
    cli("set", "a", '{"users": ["Spez"]}')
    cli("set", "b", "on")
    assert cli("check", "a", "b", "--user", "t2_1", "--user-name", "spez") == EXIT.OK
    lines = cli.out.splitlines()
    assert lines[0].split() == ["FLAG", "ENABLED", "VARIANT", "REASON", "RULE", "VALUE"]
    rows = [line.split() for line in lines[1:]]
    # Without `values`, the value a flag serves is its decision: enabled or not.
    assert rows == [["a", "yes", "-", "target", "users", "yes"], ["b", "yes", "-", "on", "enabled", "yes"]]


def test_check_schedule_uses_time(cli: Run) -> None:
    cli("set", "s", '{"everyone": true, "schedule": {"start": "2030-01-01T00:00:00Z"}}')
    assert cli("check", "s", "--time", "1893456000") == EXIT.OK  # 2030-01-01
    assert cli("check", "s", "--time", "1893455999") == EXIT.NO
    assert "schedule" in cli.out


def test_history(cli: Run) -> None:
    cli("set", "f", "on")
    cli("disable", "f")
    cli("delete", "f")
    assert cli("history", "f") == EXIT.OK
    lines = cli.out.splitlines()
    assert lines[0].split() == ["REVISION", "AT", "FLAG", "VERSION", "AUTHOR", "ACTION", "DOCUMENT"]
    assert [line.split()[5] for line in lines[1:]] == ["deleted", "updated", "created"]
    assert all("tester@host" in line for line in lines[1:])
    entries = cli.json("history", "f", "--limit", "2")
    assert [e["action"] for e in entries] == ["deleted", "updated"]
    assert entries[1]["before"] == "on" and entries[1]["after"] == {"enabled": False, "everyone": True}


def test_export_import_round_trip(cli: Run, tmp_path: Path) -> None:
    docs = {"a": "on", "b": 33.3, "c": {"users": ["x"], "tags": ["t"]}}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(docs))
    assert cli("import", str(src)) == EXIT.OK
    assert "3 created, 0 updated, 0 unchanged, 0 deleted" in cli.out
    dump = tmp_path / "out.json"
    assert cli("export", str(dump)) == EXIT.OK
    assert json.loads(dump.read_text()) == docs
    assert cli("export") == EXIT.OK
    assert json.loads(cli.out) == docs
    assert cli.json("import", str(dump)) == {
        "created": [],
        "updated": [],
        "unchanged": ["a", "b", "c"],
        "deleted": [],
    }


def test_import_refuses_a_file_with_an_invalid_document(cli: Run, tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps({"a": "on", "b": {"percentage": -1}}))
    assert cli("import", str(src)) == EXIT.NO
    assert "b: percentage: must be a number between 0 and 100, not -1" in cli.err
    assert cli.doc("a") is None


def test_copy_between_stores_with_progress(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    docs = {f"flag{i:03}": i % 101 for i in range(150)}
    src = MemoryStore.from_url(cli.url)
    for name, value in docs.items():
        src.put(name, json.dumps(value))
    target = f"memory://copy-{uuid.uuid4().hex}"
    assert main(["export", "--from", cli.url, "--to", target, "--progress"]) == EXIT.OK
    captured = capsys.readouterr()
    assert "150 created" in captured.out
    assert "importing [" in captured.err and "150/150 100%" in captured.err
    copied = {n: decode_document(r.raw) for n, r in MemoryStore.from_url(target).load().records.items()}
    assert copied == docs
    # import --from is the same copy, seen from the destination
    assert main(["--store", target, "import", "--from", cli.url, "--no-progress"]) == EXIT.OK
    captured = capsys.readouterr()
    assert "150 unchanged" in captured.out and captured.err == ""
    assert main(["export", "--from", target, "--to", target]) == EXIT.USAGE


def test_diff_store_against_file_and_store(cli: Run, tmp_path: Path) -> None:
    cli("set", "a", "on")
    cli("set", "b", "10")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": "on", "b": 20, "c": "off"}))
    assert cli("diff", str(other)) == EXIT.NO
    assert cli.out.splitlines() == [
        f"--- {cli.url}",
        f"+++ {other}",
        "- b: 10",
        "+ b: 20",
        '+ c: "off"',
    ]
    data = cli.json("diff", str(other), str(other))
    assert data["differences"] == []
    assert cli("diff", cli.url) == EXIT.OK
    assert "no differences" in cli.err


def test_validate(cli: Run, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"a": "on", "b": {"users": ["x"]}}))
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"ok": 5, "broken": {"percentage": 300, "admn": True}, "exp": {"experiment": 1}})
    )
    assert cli("validate", str(good)) == EXIT.OK
    assert "2 flags checked in 1 file(s): all valid" in cli.err
    assert cli("validate", str(bad)) == EXIT.NO
    assert cli.out.splitlines() == [
        "broken: admn: unknown key; did you mean 'admin'?",
        "broken: percentage: must be a number between 0 and 100, not 300",
        "exp: experiment: must be an object with 'variants' and eligibility selectors",
    ]
    assert cli("validate", str(good), str(bad)) == EXIT.NO
    assert cli.out.splitlines()[0] == f"{bad}: broken: admn: unknown key; did you mean 'admin'?"
    report = json.loads(cli.out) if cli("--json", "validate", str(bad)) == EXIT.NO else None
    assert report is not None and report["ok"] is False and len(report["errors"][str(bad)]) == 3


def test_validate_single_document_and_broken_file(cli: Run, tmp_path: Path) -> None:
    single = tmp_path / "my_flag.json"
    single.write_text(json.dumps({"users": ["a"], "percentage": 120}))
    assert cli("validate", str(single)) == EXIT.NO
    assert cli.out.strip() == "my_flag: percentage: must be a number between 0 and 100, not 120"
    assert cli("validate", "--name", "x", str(single)) == EXIT.NO
    assert cli.out.startswith("x: percentage")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": "on",')
    assert cli("validate", str(broken)) == EXIT.NO
    assert cli.out.startswith(f"{broken}: not JSON")
    yaml_file = tmp_path / "flags.yaml"
    yaml_file.write_text("a: on\nb:\n  users: [x]\n  percentage: 5\n")
    # YAML 1.1 reads a bare `on` as true, which is also a valid flag.
    assert cli("validate", str(yaml_file)) == EXIT.OK


def test_validate_example_flags(cli: Run) -> None:
    assert cli("validate", str(REPO / "examples" / "flags.json")) == EXIT.OK


def test_watch_prints_changes_until_count(cli: Run, capsys: pytest.CaptureFixture[str]) -> None:
    store = MemoryStore.from_url(cli.url)
    store.put("before", '"on"')

    def writer() -> None:
        # memory:// watches deliver in-process, so write from a thread while watch runs
        time.sleep(0.2)
        store.put("f", '"on"')
        store.put("f", "25")
        store.delete("f")

    t = threading.Thread(target=writer)
    t.start()
    # --since 1: changes after the first write are replayed even if the writer wins the race
    code = main(["--store", cli.url, "--json", "watch", "--since", "1", "--count", "3", "--timeout", "10"])
    t.join(5)
    assert code == EXIT.OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x["flag"], x["deleted"], x.get("document")) for x in lines] == [
        ("f", False, "on"),
        ("f", False, 25),
        ("f", True, None),
    ]
    assert [x["revision"] for x in lines] == [2, 3, 4]


def test_watch_timeout_with_no_changes(cli: Run) -> None:
    assert cli("watch", "--timeout", "0.3") == EXIT.OK
    assert cli.out == ""
    assert "watching" in cli.err


def test_format_table_aligns_and_truncates() -> None:
    text = format_table(["a", "long header"], [["x" * 80, None], [True, {"k": 1}]], max_width=10)
    lines = text.splitlines()
    assert lines[0] == "A           LONG HEADER"
    assert lines[1] == "xxxxxxxxx…  -"
    assert lines[2] == 'yes         {"k":1}'


# --------------------------------------------------------------------------- subprocess


def run_cli(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "flagstaff", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_subprocess_validate_and_errors(tmp_path: Path) -> None:
    bad = tmp_path / "flags.json"
    bad.write_text(json.dumps({"f": {"users": "alice"}}))
    proc = run_cli("validate", str(bad))
    assert proc.returncode == EXIT.NO
    assert proc.stdout.strip() == "f: users: must be a list of strings"
    proc = run_cli("--store", "nosuch://", "list")
    assert proc.returncode == EXIT.USAGE
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    proc = run_cli("--debug", "--store", "nosuch://", "list")
    assert "Traceback" in proc.stderr


def test_subprocess_console_script_help() -> None:
    script = Path(sys.executable).parent / "flagstaff"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    for command in ("list", "rollout", "add-user", "watch", "validate", "demo"):
        assert command in proc.stdout


def test_subprocess_reader_going_away_is_not_an_error(tmp_path: Path) -> None:
    big = tmp_path / "big.json"  # enough problems to overflow a pipe's buffer
    big.write_text(json.dumps({f"flag{i}": {"percentage": 101} for i in range(5000)}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagstaff", "validate", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"flag0: percentage")
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_store_unavailable_and_unexpected_errors(
    cli: Run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import flagstaff.cli._files as cli_files
    from flagstaff.errors import StoreUnavailable

    def unavailable(url: str) -> None:
        raise StoreUnavailable("database is locked (waited 5s)")

    monkeypatch.setattr(cli_files, "open_store", unavailable)
    assert main(["--store", "sqlite:///x.db", "list"]) == EXIT.UNAVAILABLE
    assert capsys.readouterr().err == "flagstaff: error: database is locked (waited 5s)\n"

    def bug(url: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_files, "open_store", bug)
    assert main(["--store", "sqlite:///x.db", "list"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("flagstaff: error: RuntimeError: boom\n")


def test_watch_reload_after_reset_reports_the_differences(cli: Run) -> None:
    from flagstaff.cli.transfer import _reload
    from flagstaff.stores import Reset

    store = MemoryStore.from_url(cli.url)
    store.put("same", '"on"')
    store.put("changed", "20")
    store.put("new", '"off"')
    known = {"same": '"on"', "changed": "10", "gone": '"on"'}
    changes = _reload(store, known, Reset("test"))
    assert [(c.name, c.record.raw if c.record else None) for c in changes] == [
        ("gone", None),
        ("changed", "20"),
        ("new", '"off"'),
    ]
