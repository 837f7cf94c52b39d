"""The CLI as a real subprocess over the persistent stores (SQLite and a JSON file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flagstaff.cli import EXIT

ENV = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}


def flagstaff(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagstaff", "--author", "ops@box", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=ENV,
        check=False,
    )


def ok(*argv: str) -> Any:
    proc = flagstaff("--json", *argv)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.fixture(params=["sqlite", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flags.db'}"
    return f"file://{tmp_path / 'flags.json'}"


def test_writes_persist_across_processes(url: str) -> None:
    ok("--store", url, "set", "f", '{"users": ["alice"]}')
    ok("--store", url, "rollout", "f", "20")
    ok("--store", url, "disable", "f")
    assert ok("--store", url, "get", "f")["document"] == {
        "users": ["alice"],
        "percentage": 20,
        "enabled": False,
    }
    proc = flagstaff("--store", url, "check", "f", "--user", "alice")
    assert proc.returncode == EXIT.NO and " off " in proc.stdout
    ok("--store", url, "enable", "f")
    assert flagstaff("--store", url, "check", "f", "--user", "alice").returncode == EXIT.OK
    history = ok("--store", url, "history", "f")
    assert [h["action"] for h in history] == ["updated"] * 3 + ["created"]
    assert {h["author"] for h in history} == {"ops@box"}
    proc = flagstaff("--store", url, "set", "f", '{"percentage": 101}')
    assert proc.returncode == EXIT.NO
    assert proc.stderr == (
        "flagstaff: error: invalid flag 'f': percentage: must be a number between 0 and 100, not 101\n"
    )
    assert flagstaff("--store", url, "get", "nope").returncode == EXIT.NOT_FOUND


def test_export_import_diff_between_stores(tmp_path: Path) -> None:
    sqlite = f"sqlite:///{tmp_path / 'a.db'}"
    file = f"file://{tmp_path / 'b.json'}"
    flags = {"on_flag": "on", "pct": 12.5, "obj": {"groups": ["beta"], "description": "ü"}}
    source = tmp_path / "flags.json"
    source.write_text(json.dumps(flags))
    assert ok("--store", sqlite, "import", str(source))["created"] == sorted(flags)
    assert ok("export", "--from", sqlite, "--to", file)["created"] == sorted(flags)
    assert json.loads((tmp_path / "b.json").read_text()) == flags  # the file store's own format
    assert ok("diff", sqlite, file)["differences"] == []
    ok("--store", file, "rollout", "pct", "30")
    proc = flagstaff("diff", sqlite, file)
    assert proc.returncode == EXIT.NO
    assert "- pct: 12.5\n+ pct: 30\n" in proc.stdout
    dump = tmp_path / "dump.json"
    ok("--store", file, "export", str(dump))
    assert flagstaff("--store", file, "diff", str(dump)).returncode == EXIT.OK


def test_default_store_is_sqlite_in_the_working_directory(tmp_path: Path) -> None:
    proc = flagstaff("set", "f", "on", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "flagstaff.db").exists()
    assert flagstaff("get", "f", cwd=tmp_path).stdout.strip() == '"on"'


def test_unreachable_store_exit_code(tmp_path: Path) -> None:
    proc = flagstaff("--store", f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}", "list")
    assert proc.returncode == EXIT.UNAVAILABLE, proc.stderr
    assert proc.stderr.startswith("flagstaff: error: ") and proc.stderr.count("\n") == 1


def test_watch_prints_changes_from_other_processes(url: str) -> None:
    ok("--store", url, "set", "f", "on")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "flagstaff", "--store", url, "watch", "--count", "2", "--timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert watcher.stderr is not None and watcher.stdout is not None
        assert watcher.stderr.readline().startswith("watching ")
        started = time.monotonic()
        ok("--store", url, "rollout", "f", "40")
        ok("--store", url, "delete", "f")
        out, _ = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(5)
    assert watcher.returncode == 0
    lines = out.splitlines()
    assert len(lines) == 2 and time.monotonic() - started < 30
    assert lines[0].split()[3:] == ["f", "v2", "40"]
    assert lines[1].split()[3:] == ["f", "deleted"]
