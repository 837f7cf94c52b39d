"""The SQLite store: conformance suite, URL forms, schema, locking, multi-process."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flagstaff.errors import StoreError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.stores import open_store
from flagstaff.stores.base import Store, Write
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.testing import EventRecorder
from flagstaff.testing.conformance import StoreConformance, document


class TestSQLiteStore(StoreConformance):
    contact_bound = 2.0  # a watch polls every 25 ms; the first failed poll tells

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        # In a directory of its own, so cut_off() can take the database (and its -wal, -shm)
        # away at once and give it back unchanged.
        (tmp_path / "db").mkdir()
        self.db = tmp_path / "db" / "flags.db"

    def make_store(self, namespace: str) -> Store:
        store = SQLiteStore.from_url(f"sqlite:///{self.db}?namespace={namespace}")
        # Under tests/_support/gevent_run.py the stores must be running on greenlets.
        assert store._runtime.name == os.environ.get("FLAGSTAFF_EXPECT_RUNTIME", "threads")
        return store

    def force_reset(self, store: Store) -> None:
        assert isinstance(store, SQLiteStore)
        store.reset_watches("forced by the conformance suite")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # What `sqlite3 flags.db "UPDATE ... SET raw=X'...'"` does: the value lands as a blob.
        assert isinstance(store, SQLiteStore)
        conn = sqlite3.connect(store.path)
        with conn:
            conn.execute(
                "UPDATE flagstaff_flags SET raw = ? WHERE namespace = ? AND name = ?",
                (data, store.namespace, name),
            )
        conn.close()

    def cut_off(self, store: Store) -> Callable[[], None]:
        # The volume goes away (an unmounted or failed disk): opening the database fails.
        away = self.db.parent.with_name("db-away")
        self.db.parent.rename(away)
        return lambda: away.rename(self.db.parent)


# ------------------------------------------------------------------ URLs and schema


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteStore.from_url("sqlite:///rel.db")
    assert relative.path == str(tmp_path / "rel.db")
    assert relative.namespace == "default"
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db?namespace=web&timeout=1&poll=0.01&max_pages=1000")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == str(tmp_path / "abs.db")
    assert absolute.namespace == "web"
    assert absolute.url == f"sqlite:///{tmp_path}/abs.db?namespace=web"
    for bad in [
        "sqlite://host/x.db",
        "sqlite:///:memory:",
        "sqlite:///x.db?namespace=",
        "sqlite:///x.db?timeout=soon",
        "sqlite:///x.db?colour=red",
        "sqlite:///",
    ]:
        with pytest.raises(UnsupportedStoreURL):
            SQLiteStore.from_url(bad)
    relative.close()
    absolute.close()


def test_unreachable_path_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "no" / "such" / "dir" / "flags.db"))
    with pytest.raises(StoreUnavailable, match=r"flags\.db"):
        store.load()
    store.close()


def test_schema_wal_and_history_table(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore(str(db), namespace="web")
    store.put("alpha", document(1), author="alice")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"flagstaff_flags", "flagstaff_changes", "flagstaff_meta"} <= tables
    rows = conn.execute("SELECT namespace, name, kind, version, author, before, after FROM flagstaff_changes")
    assert rows.fetchall() == [("web", "alpha", "put", 1, "alice", None, document(1))]
    assert conn.execute("SELECT value FROM flagstaff_meta WHERE namespace = 'web'").fetchall() == [("1",)]
    conn.close()
    store.close()


def test_hand_edits_in_sql_are_versioned_watched_and_kept(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore(str(db), poll=0.01)
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('default', 'beta', '\"on\"')")
    conn.execute("UPDATE flagstaff_flags SET raw = '\"off\"' WHERE name = 'beta'")
    conn.execute("UPDATE flagstaff_flags SET name = 'alpha2' WHERE name = 'alpha'")
    conn.execute("DELETE FROM flagstaff_flags WHERE name = 'beta'")
    conn.close()
    changes = recorder.wait_for_changes(5)
    assert [
        (c.name, c.record.raw if c.record else None, c.record.version if c.record else None) for c in changes
    ] == [
        ("beta", '"on"', 1),
        ("beta", '"off"', 2),
        ("alpha", None, None),
        ("alpha2", document(1), 1),
        ("beta", None, None),
    ]
    assert {n: r.version for n, r in store.load().records.items()} == {"alpha2": 1}
    assert store.load().revision == changes[-1].revision
    assert [(e.name, e.before, e.after) for e in store.history("beta")] == [
        ("beta", '"off"', None),
        ("beta", '"on"', '"off"'),
        ("beta", None, '"on"'),
    ]
    store.close()


def test_reset_watches_reaches_other_processes_stores(tmp_path: Path) -> None:
    db = str(tmp_path / "flags.db")
    one, two = SQLiteStore(db, poll=0.01), SQLiteStore(db, poll=0.01)
    one.put("alpha", document(1))
    recorder = EventRecorder()
    two.watch(recorder, since=two.load().revision)
    one.reset_watches("restored from backup")
    assert recorder.wait_for_reset().reason == "restored from backup"
    assert one.history() == two.history()
    assert len(one.history()) == 1, "a reset is not a change to any flag"
    one.close()
    two.close()


def test_watch_from_a_future_revision_resets(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "flags.db"))
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision + 100)
    assert "newer" in recorder.wait_for_reset().reason
    later = store.put("beta", document(2))
    assert recorder.wait_for_change(lambda c: c.name == "beta").record == later
    store.close()


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "flags.db"))
    store.put("alpha", document(1))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get("alpha")
    with pytest.raises(StoreError, match="closed"):
        store.watch(EventRecorder(), since=0)


def test_watch_survives_a_batch_larger_than_one_read(tmp_path: Path) -> None:
    db = tmp_path / "flags.db"
    store = SQLiteStore(str(db))
    store.put("flag-0", document(0))
    conn = sqlite3.connect(db)
    with conn:  # 1199 more changes in one transaction (the triggers log each one)
        conn.executemany(
            "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('default', ?, ?)",
            ((f"flag-{i}", document(i)) for i in range(1, 1200)),
        )
    conn.close()
    recorder = EventRecorder()
    store.watch(recorder, since=0)
    changes = recorder.wait_for_changes(1200)
    assert [c.revision for c in changes] == list(range(1, 1201))
    store.close()


# ------------------------------------------------------------------ many processes

_FOLLOWER = """
import json, sys, time
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.stores.base import Change, Reset
store = SQLiteStore(sys.argv[1])
done = []
def on_event(event):
    if isinstance(event, Reset):
        print(json.dumps({"reset": event.reason}), flush=True)
        return
    print(json.dumps({"name": event.name, "revision": event.revision, "at": time.time(),
                      "raw": event.record.raw if event.record else None}), flush=True)
    if event.name == "stop":
        done.append(True)
store.watch(on_event, since=store.load().revision)
print(json.dumps({"ready": True}), flush=True)
deadline = time.monotonic() + 30
while not done and time.monotonic() < deadline:
    time.sleep(0.01)
store.close()
"""


@pytest.mark.slow
def test_followers_in_other_processes_see_every_change_in_order(tmp_path: Path) -> None:
    db = str(tmp_path / "flags.db")
    writer = SQLiteStore(db)
    writer.put("seed", document(0))
    followers = [
        subprocess.Popen([sys.executable, "-c", _FOLLOWER, db], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for proc in followers:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline()) == {"ready": True}
        sent: list[tuple[str, str | None, float]] = []
        for i in range(40):
            name = f"flag-{i % 4}"
            if i % 5 == 4:
                sent.append((name, None, time.time()))
                writer.delete(name)
            else:
                sent.append((name, document(i), time.time()))
                writer.put(name, document(i))
            time.sleep(0.005)
        writer.put("stop", document(0))
        revisions = [e.revision for e in reversed(writer.history(limit=41))]
        for proc in followers:
            out, _ = proc.communicate(timeout=30)
            lines = [json.loads(line) for line in out.splitlines()]
            assert not [x for x in lines if "reset" in x]
            got = [x for x in lines if x["name"] != "stop"]
            assert [(x["name"], x["raw"]) for x in got] == [(n, r) for n, r, _ in sent]
            assert [x["revision"] for x in got] + [lines[-1]["revision"]] == revisions
            delays = sorted(x["at"] - t for x, (_, _, t) in zip(got, sent, strict=True))
            assert delays[len(delays) // 2] < 2.0, "propagation is far slower than it should be"
    finally:
        for proc in followers:
            proc.kill()
            proc.wait(10)
    writer.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_local_stores_pass_the_conformance_suite_under_gevent() -> None:
    root = Path(__file__).resolve().parents[2]
    suites = [
        "tests/stores/test_store_memory.py::TestMemoryStore",
        "tests/stores/test_store_file.py::TestFileStore",
        "tests/stores/test_store_sqlite.py::TestSQLiteStore",
    ]
    proc = subprocess.run(
        [sys.executable, "tests/_support/gevent_run.py", *suites],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=280,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert re.search(r"\b\d{2,} passed", proc.stdout), tail
    assert "failed" not in proc.stdout, tail


def test_fork_while_other_threads_are_in_sqlite_never_hangs_the_child(tmp_path: Path) -> None:
    # A watch polls every millisecond in its own thread; forking at a random moment used to
    # leave SQLite's VFS mutex locked in the child now and then (its first connect hung).
    path = tmp_path / "flags.db"
    store = SQLiteStore(str(path), poll=0.001)
    store.put("f", "on")
    watch = store.watch(EventRecorder(), since=0)
    try:
        for _ in range(40):
            pid = os.fork()
            if pid == 0:  # the child: a fresh store must open and read, within a bound
                code = 1
                try:
                    signal.alarm(10)  # a hang ends the child (default action), not the test run
                    child = SQLiteStore(str(path))
                    code = 0 if child.get("f") is not None else 1
                finally:
                    os._exit(code)
            deadline = time.monotonic() + 20
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    raise AssertionError("a forked child hung")
                time.sleep(0.005)
            assert os.waitstatus_to_exitcode(status) == 0
            time.sleep(0.003)
    finally:
        watch.stop()
        store.close()


def test_a_version_1_database_is_migrated_for_put_many(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = SQLiteStore(str(path))
    store.put("alpha", document(1), author="before")
    store.close()
    # Make it what flagstaff wrote before put_many: no `more` column, user_version 1.
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE flagstaff_changes DROP COLUMN more")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    store = SQLiteStore(str(path))
    try:
        recorder = EventRecorder()
        store.watch(recorder, since=0)
        store.put_many([Write("alpha", document(2)), Write("beta", document(3))], author="after")
        changes = recorder.wait_for_changes(3, 5)
        assert [(c.name, c.more) for c in changes] == [("alpha", 0), ("alpha", 1), ("beta", 0)]
        assert [e.author for e in store.history()] == ["after", "after", "before"]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
