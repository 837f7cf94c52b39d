"""The CLI over a store holding a bad row (issue 12, section 1).

``UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'`` made ``flagstaff list`` and ``get``
exit 70 with a traceback. Wanted: ``list`` shows the flag as INVALID with its reason, ``get``
shows what is stored (escaped) and exits 1 with a clear message, ``check`` reports it. Run as a
subprocess, so the output really goes through a UTF-8 stdout.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flagstaff.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "f.db"
    store = SQLiteStore(str(path))
    store.put("a", '"on"')
    store.put("b", '"off"')
    store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
        conn.execute(
            "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('default', 'c', ?)", ("\x1b[2J",)
        )
    conn.close()
    return path


def flagstaff(db: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flagstaff", "--store", f"sqlite:///{db}", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


def test_list_shows_the_bad_flag_as_invalid_with_its_reason(db: Path) -> None:
    done = flagstaff(db, "list")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert rows["a"].split()[2] == "INVALID" and "not UTF-8 text: byte 0xff at offset 0" in rows["a"]
    assert rows["b"].split()[2] == "off"
    assert rows["c"].split()[2] == "INVALID"
    assert "\x1b" not in done.stdout  # a terminal escape in a document is never printed raw

    listed = flagstaff(db, "--json", "list")
    assert listed.returncode == 0, listed.stderr
    flags = {f["flag"]: f for f in json.loads(listed.stdout)["flags"]}
    assert flags["a"]["status"] == "INVALID"
    assert flags["a"]["document"] == "\\xff\\xfe\\x00"


def test_get_of_a_bad_flag_exits_1_with_a_clear_message(db: Path) -> None:
    done = flagstaff(db, "get", "a")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "flag 'a' (version 2) holds a bad document" in done.stderr
    assert "not UTF-8 text: byte 0xff at offset 0" in done.stderr
    assert json.loads(done.stdout) == "\\xff\\xfe\\x00"

    as_json = flagstaff(db, "--json", "get", "a")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert body["document"] == "\\xff\\xfe\\x00" and "byte 0xff" in body["problems"][0]["message"]

    good = flagstaff(db, "get", "b")
    assert good.returncode == 0 and json.loads(good.stdout) == "off"


def test_check_reports_the_bad_document(db: Path) -> None:
    done = flagstaff(db, "--json", "check", "a", "b", "--user", "u1")
    assert done.returncode == 1, done.stderr
    decisions = {d["flag"]: d for d in json.loads(done.stdout)}
    assert decisions["a"]["reason"] == "error"
    assert "bad document: " in decisions["a"]["error"] and "byte 0xff" in decisions["a"]["error"]
    assert decisions["b"]["reason"] != "error"


def test_set_repairs_a_bad_flag_and_a_bad_document_is_never_printed_raw(db: Path) -> None:
    killed = flagstaff(db, "disable", "a")  # an edit of a document that cannot be read: a clear "no"
    assert killed.returncode == 1 and "not UTF-8 text" in killed.stderr and "Traceback" not in killed.stderr
    done = flagstaff(db, "--json", "set", "a", "off")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["before"] == "\\xff\\xfe\\x00"
    listed = flagstaff(db, "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("a "))
    assert row.split()[2] == "off"
