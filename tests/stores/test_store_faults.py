"""Store-level faults: corrupt documents, broken edits, crashes mid-write, a full
disk, a locked database, and many processes racing compare-and-set."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flagstaff.errors import ConflictError, StoreUnavailable
from flagstaff.stores.base import Disconnected
from flagstaff.stores.file import FileStore
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.testing import EventRecorder
from flagstaff.testing.conformance import document

SETTLE = 0.3


def _save(path: Path, text: str) -> None:
    """Save as most editors do: write a new file, rename it over the old one."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _meta(path: Path) -> Path:
    return path.parent / f".{path.name}.flagstaff-meta.json"


# ------------------------------------------------------------------ corrupt documents


def test_sqlite_corrupt_row_is_returned_raw_and_watch_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore(str(db))
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)

    # Someone writes garbage straight into the table, bypassing flagstaff.
    raw_conn = sqlite3.connect(db)
    with raw_conn:
        raw_conn.execute("UPDATE flagstaff_flags SET raw = '{\"broken' WHERE name = 'alpha'")
    raw_conn.close()

    change = recorder.wait_for_change(lambda c: c.name == "alpha")
    assert change.record is not None
    assert change.record.raw == '{"broken'
    assert change.record.version == 2, "a hand edit must still raise the version"
    assert store.get("alpha") == change.record
    assert store.load().records["alpha"].raw == '{"broken'
    assert store.history("alpha")[0].before == document(1)

    # The store keeps working and watching.
    good = store.put("alpha", document(2), expect=2)
    assert recorder.wait_for_change(lambda c: c.record == good).revision == store.load().revision
    store.close()


def test_file_invalid_flag_document_is_returned_raw(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    store = FileStore(str(path), poll=0.02)
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)

    # Valid JSON, nonsense as a flag: the store hands it over; the client judges it.
    path.write_text(json.dumps({"alpha": {"percentage": "lots", "enabled": [1, 2]}}))
    change = recorder.wait_for_change(lambda c: c.name == "alpha")
    assert change.record is not None
    assert change.record.raw == '{"enabled":[1,2],"percentage":"lots"}'
    assert change.record.version == 2

    good = store.put("alpha", document(3), expect=2)
    assert recorder.wait_for_change(lambda c: c.record == good).record == good
    store.close()


def test_file_broken_edit_keeps_last_good_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flags.json"
    store = FileStore(str(path), poll=0.02)
    first = store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    before = store.load()

    with caplog.at_level(logging.ERROR, logger="flagstaff.stores.file"):
        _save(path, '{"alpha": {"enabled": tru')  # an editor saved half a thought
        time.sleep(SETTLE)
        # No change and no reset: only the loss of contact is told (the edits are not followed).
        lost = [e for e in recorder.events if isinstance(e, Disconnected)]
        assert [e for e in recorder.events if e not in lost] == [], "a broken edit produced changes"
        assert len(lost) == 1 and "not valid JSON" in lost[0].reason
        assert store.get("alpha") == first
        assert store.load().revision == before.revision
        assert store.load().initialized is True
        with pytest.raises(StoreUnavailable, match="fix it by hand"):
            store.put("beta", document(2))
    assert any("keeping the last good content" in r.getMessage() for r in caplog.records)
    # Logged once for this edit, not once per poll.
    assert sum("keeping the last good" in r.getMessage() for r in caplog.records) == 1

    path.write_text(json.dumps({"alpha": {"enabled": False}, "beta": "on"}))
    changes = recorder.wait_for_changes(2)
    assert {c.name: c.record.raw for c in changes if c.record} == {
        "alpha": '{"enabled":false}',
        "beta": '"on"',
    }
    assert store.get("alpha") is not None
    assert store.put("gamma", document(3), expect=0).version == 1
    store.close()


def test_file_broken_from_the_start_is_unavailable_until_fixed(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text("[1, 2, 3]")
    store = FileStore(str(path), poll=0.02)
    with pytest.raises(StoreUnavailable, match="must map flag names"):
        store.load()
    recorder = EventRecorder()
    store.watch(recorder, since=0)
    path.write_text('{"alpha": "on"}')
    change = recorder.wait_for_change(lambda c: c.name == "alpha")
    assert change.record is not None
    assert change.record.raw == '"on"'
    assert store.load().records["alpha"].version == 1
    store.close()


# ------------------------------------------------------------------ crash mid-write

_FILE_WRITER = """
import sys
import threading
from flagstaff.stores.file import FileStore
from flagstaff.model import encode_document
store = FileStore(sys.argv[1])
print("ready", flush=True)
for i in range(1, 100000):
    store.put("counter", encode_document({"count": i, "pad": "x" * 50000}))
    store.put(f"flag-{i % 7}", encode_document({"i": i}))
"""


def test_killing_a_file_writer_never_leaves_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    rng = random.Random(7)
    for _round in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _FILE_WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.25))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(10)
        # Whatever moment the kill hit, the file is a whole document (once
        # the first write has landed: a kill before it leaves no file at all).
        if path.exists():
            document_ = json.loads(path.read_text())
            assert isinstance(document_, dict)
            assert "counter" in document_
            assert json.loads(_meta(path).read_text())["format"] == 1

    store = FileStore(str(path))
    state = store.load()
    counter = state.records["counter"]
    assert json.loads(counter.raw)["count"] >= 1
    assert counter.version >= 1
    store.put("after", document(1))
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers == [], "temp files of dead writers were not cleaned up"
    store.close()


# ------------------------------------------------------------------ SQLite: full, locked


def test_sqlite_disk_full_is_clear_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore.from_url(f"sqlite:///{db}?max_pages=40")
    recorder = EventRecorder()
    store.watch(recorder, since=0)
    written = 0
    with pytest.raises(StoreUnavailable, match="full") as info:
        for i in range(200):
            store.put(f"big-{i}", document(i, blob="y" * 6000), author="filler")
            written += 1
    assert written > 0, "the cap was too small to test anything"
    assert "max_page_count" in str(info.value)
    failed = f"big-{written}"
    assert store.get(failed) is None, "a failed write left a partial flag"
    state = store.load()
    assert set(state.records) == {f"big-{i}" for i in range(written)}
    assert len(store.history()) == written, "a failed write left a history row"

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    recorder.wait_for_changes(written)
    assert [c.name for c in recorder.changes()] == [f"big-{i}" for i in range(written)]
    store.close()

    # Room again: the same database takes writes.
    roomy = SQLiteStore(str(db))
    assert roomy.put(failed, document(0)).version == 1
    roomy.close()


def test_sqlite_locked_database_is_clear_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore.from_url(f"sqlite:///{db}?timeout=0.2")
    store.put("alpha", document(1))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            store.put("alpha", document(2))
        assert time.monotonic() - started < 3
        with pytest.raises(StoreUnavailable, match="locked"):
            store.delete("alpha")
        # Readers are not blocked by a writer (WAL).
        assert store.get("alpha") == store.load().records["alpha"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    record = store.get("alpha")
    assert record is not None
    assert record.raw == document(1)
    assert record.version == 1
    assert store.put("alpha", document(2), expect=1).version == 2
    store.close()


# ------------------------------------------------------------------ many processes, one flag

_CAS_WORKER = """
import json, sys
from flagstaff.errors import ConflictError
from flagstaff.model import encode_document
from flagstaff.stores import open_store
store = open_store(sys.argv[1])
target, done, conflicts = int(sys.argv[2]), 0, 0
for _ in range(100000):
    if done == target:
        break
    record = store.get("counter")
    count = json.loads(record.raw)["count"]
    try:
        store.put("counter", encode_document({"count": count + 1}), expect=record.version, author=sys.argv[3])
        done += 1
    except ConflictError:
        conflicts += 1
store.close()
print(done, conflicts, flush=True)
sys.exit(0 if done == target else 3)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_eight_processes_compare_and_set_lose_no_update(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path / 'flags.db'}" if kind == "sqlite" else f"file://{tmp_path / 'flags.json'}"
    per_process, processes = 15, 8
    from flagstaff.stores import open_store

    seed = open_store(url)
    seed.put("counter", json.dumps({"count": 0}), expect=0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CAS_WORKER, url, str(per_process), f"worker-{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=90)
            outputs.append(out)
            assert proc.returncode == 0, out
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    total = per_process * processes
    record = seed.get("counter")
    assert record is not None
    assert json.loads(record.raw) == {"count": total}
    assert record.version == total + 1
    if kind == "sqlite":
        authors = [e.author for e in seed.history("counter", limit=1000)]
        assert len(authors) == total + 1
        assert {a for a in authors if a} == {f"worker-{i}" for i in range(processes)}
    seed.close()


def test_conflict_across_store_objects_changes_nothing(tmp_path: Path) -> None:
    one = SQLiteStore(str(tmp_path / "flags.db"))
    two = SQLiteStore(str(tmp_path / "flags.db"))
    one.put("alpha", document(1))
    two.put("alpha", document(2), expect=1)
    with pytest.raises(ConflictError) as info:
        one.put("alpha", document(3), expect=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert one.get("alpha") == two.get("alpha")
    one.close()
    two.close()


def test_child_process_after_fork_gets_its_own_connection(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "flags.db"))
    store.put("alpha", document(1))
    pid = os.fork()
    if pid == 0:  # the child: must not reuse the parent's connection
        code = 1
        try:
            record = store.put("alpha", document(2), expect=1)
            code = 0 if record.version == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("alpha") == store.load().records["alpha"]
    record = store.get("alpha")
    assert record is not None
    assert record.version == 2
    assert store.put("alpha", document(3), expect=2).version == 3
    conn = sqlite3.connect(tmp_path / "flags.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    store.close()


def test_fork_while_another_thread_holds_the_store(tmp_path: Path) -> None:
    """A thread in the middle of a write at fork() time must not leave the
    child's store locked, and the child must not close the parent's connection."""
    store = SQLiteStore(str(tmp_path / "flags.db"))
    store.put("alpha", document(1))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if store.put("alpha", document(2)).version == 2 else 2
            del store  # dropping it must not close the parent's connection
        finally:
            os._exit(code)
    release.set()
    holder.join(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.put("alpha", document(3), expect=2).version == 3
    store.close()
