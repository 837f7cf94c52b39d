"""The CLI's first ten minutes: no traceback for a mistyped path, port or store, and the basics
(`--version`, bare `flagstaff`, ISO 8601 times) a newcomer reaches for."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagstaff.cli import EXIT, main
from flagstaff.stores.file import FileStore

REPO = Path(__file__).resolve().parents[2]


def run(
    *argv: str, cwd: Path | None = None, python: str = sys.executable, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "flagstaff", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
        **kwargs,
    )


def one_clean_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == EXIT.OK
    from importlib.metadata import version

    assert capsys.readouterr().out.strip() == f"flagstaff {version('flagstaff')}"


def test_bare_flagstaff_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT.USAGE
    out = capsys.readouterr().out
    for command in ("list", "set", "rollout", "check", "serve", "demo"):
        assert f"    {command} " in out, command


@pytest.mark.parametrize(
    "when",
    ["2026-01-31T18:00:00Z", "2026-01-31T18:00:00+00:00", "2026-01-31T19:00:00+01:00", "1769882400"],
)
def test_check_time_accepts_iso_8601_and_epoch(when: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"memory://first-run-{os.getpid()}-{abs(hash(when))}"
    doc = '{"schedule": {"start": 1769882400}, "enabled": "on"}'
    assert main(["--store", url, "set", "launch", doc]) == EXIT.OK
    assert main(["--store", url, "check", "launch", "--time", when]) == EXIT.OK
    assert main(["--store", url, "check", "launch", "--time", "2026-01-31T17:59:59Z"]) == EXIT.NO
    assert main(["--store", url, "check", "launch", "--time", "yesterday"]) == EXIT.USAGE
    assert "ISO 8601" in capsys.readouterr().err


def test_serve_with_an_impossible_port_is_a_usage_error() -> None:
    proc = run("--store", "memory://", "serve", "--port", "99999")
    assert proc.returncode == EXIT.USAGE
    assert "Traceback" not in proc.stderr and "99999 is not a port" in proc.stderr


def test_an_unusable_token_database_is_one_line_and_exit_5(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "tokens.db"
    proc = run("token", "create", "ci", "--scope", "read", "--token-db", str(missing))
    assert proc.returncode == EXIT.UNAVAILABLE
    assert "the token database" in one_clean_line(proc) and str(missing) in one_clean_line(proc)
    proc = run("token", "list", "--token-db", str(tmp_path))  # a directory, not a database
    assert proc.returncode == EXIT.UNAVAILABLE
    one_clean_line(proc)


def test_export_to_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    proc = run("--store", "memory://", "export", str(tmp_path / "missing" / "flags.json"))
    assert proc.returncode == EXIT.USAGE
    assert "cannot write" in one_clean_line(proc)
    assert list(tmp_path.iterdir()) == []


def test_file_store_in_a_missing_directory_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/missing/dir/x.json"
    proc = run("--store", url, "list")
    assert proc.returncode == EXIT.UNAVAILABLE
    line = one_clean_line(proc)
    assert "directory" in line and "does not exist" in line and "lock" not in line
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_flags_file_leaves_no_lock_file(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "typo.json"))
    try:
        assert dict(store.load().records) == {}
        assert store.get("x") is None
    finally:
        store.close()
    assert list(tmp_path.iterdir()) == []
    store = FileStore(str(tmp_path / "flags.json"))
    try:
        store.put("x", '"on"')  # writing still creates the file and its lock as before
    finally:
        store.close()
    assert (tmp_path / "flags.json").exists()


@pytest.fixture
def read_only_db() -> Iterator[Path]:
    """A flags database in a directory this test's reader may not write."""
    # Not pytest's tmp_path: its parents are private to the user running the tests, and the
    # reader below may be another user.
    directory = Path(tempfile.mkdtemp(prefix="flagstaff-ro-"))
    db = directory / "flags.db"
    try:
        assert main(["--store", f"sqlite:///{db}", "set", "a", "on"]) == EXIT.OK
        db.chmod(0o444)
        directory.chmod(0o555)
        yield db
    finally:
        directory.chmod(0o755)
        shutil.rmtree(directory)


def as_reader() -> dict[str, Any]:
    """subprocess options that run a command as a user who cannot write the database.

    root may write anything, so as root the reader is `nobody`; as anyone else the file
    modes are enough."""
    if os.geteuid() != 0:
        return {}
    # The reader needs an interpreter it may run (root's may live under /root) of this version.
    python = next(
        (
            p
            for p in (os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3")
            if p and _runs_as_nobody(p)
        ),
        None,
    )
    if python is None:
        pytest.skip("no Python interpreter of this version that the user nobody may run")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), site])}

    def drop() -> None:
        os.setgid(65534)
        os.setuid(65534)

    return {"env": env, "preexec_fn": drop, "python": python}


def _runs_as_nobody(python: str) -> bool:
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"

    def drop() -> None:
        os.setgid(65534)
        os.setuid(65534)

    try:
        proc = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=drop,
            check=False,
        )
    except OSError:
        return False
    return proc.stdout.strip() == version


def test_a_read_only_sqlite_database_can_be_read(read_only_db: Path) -> None:
    # The database's WAL files are gone (no writer has it open), and the reader cannot create
    # them: opened read-write, SQLite refused even to read ("attempt to write a readonly database").
    assert not Path(f"{read_only_db}-shm").exists()
    url = f"sqlite:///{read_only_db}"
    proc = run("--store", url, "--json", "get", "a", cwd=Path("/"), **as_reader())
    assert proc.returncode == EXIT.OK, proc.stderr
    assert '"document": "on"' in proc.stdout
    proc = run("--store", url, "set", "b", "on", cwd=Path("/"), **as_reader())
    assert proc.returncode == EXIT.UNAVAILABLE  # writing is refused, in one line
    assert "readonly" in proc.stderr and "Traceback" not in proc.stderr
    with sqlite3.connect(f"file:{read_only_db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM flagstaff_flags").fetchall() == [(1,)]
