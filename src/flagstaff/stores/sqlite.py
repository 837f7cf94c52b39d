"""``sqlite:///path.db``: the embedded default. One file, many processes.

URL forms (SQLAlchemy's convention)::

    sqlite:///flagstaff.db                 relative to the working directory
    sqlite:////var/lib/app/flagstaff.db    absolute
    sqlite:///flagstaff.db?namespace=web&timeout=5&poll=0.025&max_pages=100000

``namespace`` (default ``default``) separates flag sets sharing a file;
``timeout`` is how long a write waits for another writer's lock (seconds,
default 5); ``poll`` is how often watches look for changes (seconds, default
0.025); ``max_pages`` caps the database size in pages (``PRAGMA
max_page_count``), a guard against a runaway writer and a way to test "disk full".

How it works (the schema is in ``docs/stores.md``):

* WAL journal, so readers never block the writer nor each other; every write
  is one ``BEGIN IMMEDIATE`` transaction that checks the expected version
  (compare-and-set), so concurrent writers from any process serialize.
* Triggers on the flags table append every change to ``flagstaff_changes``
  (whose autoincrement id is the revision) and bump the version, so even a
  row edited by hand with the ``sqlite3`` shell is versioned, kept in history
  and delivered to watches.
* A watch owns a connection and checks ``PRAGMA data_version`` every
  ``poll`` seconds, which costs a read of the shared-memory index and no I/O;
  only when it moves does it read the change rows after the last one it saw.
* Errors: a locked database (another writer held the lock for ``timeout``
  seconds) or a full one raise :class:`~flagstaff.errors.StoreUnavailable`;
  the transaction is rolled back whole, so no flag is ever half written.
* ``os.fork()``: connections are per process; a child opens its own (the
  parent's are left alone, never closed in the child). Watches are tasks of
  the process that made them and do not cross a fork.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from urllib.request import pathname2url

from flagstaff.document import printable_text
from flagstaff.errors import ConflictError, NotFoundError, StoreError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._polling import PollingWatch
from flagstaff.stores.base import (
    Change,
    Disconnected,
    HistoryEntry,
    Record,
    Reset,
    StoreState,
    Watch,
    WatchEvent,
    Write,
    check_writes,
    decode_raw,
    is_text,
)

__all__ = ["SQLiteStore"]

log = logging.getLogger("flagstaff.stores.sqlite")

# 2: flagstaff_changes.more (atomic multi-flag writes); a version-1 database is migrated on open.
SCHEMA_VERSION = 2

# Seconds since the epoch, with sub-second precision, in SQL (unixepoch('subsec')
# needs SQLite 3.42; this works everywhere).
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS flagstaff_flags (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    raw       TEXT NOT NULL,
    version   INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS flagstaff_changes (
    revision  INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('put', 'delete', 'reset')),
    version   INTEGER,
    at        REAL NOT NULL,
    author    TEXT,
    before    TEXT,
    after     TEXT,
    more      INTEGER NOT NULL DEFAULT 0  -- changes of the same put_many still to come
);
CREATE INDEX IF NOT EXISTS flagstaff_changes_by_namespace
    ON flagstaff_changes (namespace, revision);
CREATE INDEX IF NOT EXISTS flagstaff_changes_by_name
    ON flagstaff_changes (namespace, name, revision);

CREATE TABLE IF NOT EXISTS flagstaff_meta (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS flagstaff_flags_inserted AFTER INSERT ON flagstaff_flags
BEGIN
    INSERT INTO flagstaff_changes (namespace, name, kind, version, at, before, after)
    VALUES (new.namespace, new.name, 'put', new.version, {_NOW}, NULL, new.raw);
    INSERT OR IGNORE INTO flagstaff_meta (namespace, key, value) VALUES (new.namespace, 'initialized', '1');
END;

-- An UPDATE that does not raise the version (a hand edit) gets it raised here,
-- so "every write increases the version" holds for every writer. Renaming a
-- row is recorded as a delete of the old name and a put of the new one.
CREATE TRIGGER IF NOT EXISTS flagstaff_flags_updated AFTER UPDATE ON flagstaff_flags
BEGIN
    UPDATE flagstaff_flags SET version = old.version + 1
    WHERE namespace = new.namespace AND name = new.name
      AND new.version <= old.version AND new.namespace = old.namespace AND new.name = old.name;
    INSERT INTO flagstaff_changes (namespace, name, kind, version, at, before, after)
    SELECT old.namespace, old.name, 'delete', NULL, {_NOW}, old.raw, NULL
    WHERE new.namespace <> old.namespace OR new.name <> old.name;
    INSERT INTO flagstaff_changes (namespace, name, kind, version, at, before, after)
    SELECT new.namespace, new.name, 'put', version, {_NOW},
           CASE WHEN new.namespace = old.namespace AND new.name = old.name THEN old.raw END, new.raw
    FROM flagstaff_flags WHERE namespace = new.namespace AND name = new.name;
    INSERT OR IGNORE INTO flagstaff_meta (namespace, key, value) VALUES (new.namespace, 'initialized', '1');
END;

CREATE TRIGGER IF NOT EXISTS flagstaff_flags_deleted AFTER DELETE ON flagstaff_flags
BEGIN
    INSERT INTO flagstaff_changes (namespace, name, kind, version, at, before, after)
    VALUES (old.namespace, old.name, 'delete', NULL, {_NOW}, old.raw, NULL);
    INSERT OR IGNORE INTO flagstaff_meta (namespace, key, value) VALUES (old.namespace, 'initialized', '1');
END;
"""

_BATCH = 500  # change rows read per query by a watch

# Connections inherited through fork() are dropped but never closed in the
# child: closing would run SQLite's shutdown on the parent's file handles.
_ABANDONED: list[sqlite3.Connection] = []
_OPEN_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


class _ForkGate:
    """Keeps ``fork()`` out of SQLite calls made by other threads.

    SQLite's own mutexes (the VFS lock taken while opening a file or
    changing a file lock) are held inside the C library with the GIL
    released. A fork at that moment leaves them locked for ever in the
    child, whose first ``sqlite3.connect`` then hangs. Every SQLite call of
    this module runs inside the gate (any number at once). Before a fork the
    forking thread closes the gate, waits for the calls in flight, and keeps
    the gate's lock through the fork, so that the lock is in a known state
    in both processes; each then opens the gate again. Threads started by
    other fork handlers in the child simply wait for that.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside = 0
        self._forking = False

    @contextmanager
    def open(self) -> Iterator[None]:
        with self._cond:
            while self._forking:
                self._cond.wait()
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                if self._inside == 0:
                    self._cond.notify_all()

    def close_for_fork(self) -> None:
        """Wait until no call is in flight; return holding the lock."""
        self._cond.acquire()
        self._forking = True
        while self._inside:
            self._cond.wait()

    def reopen_after_fork(self, *, child: bool) -> None:
        if child:
            self._inside = 0  # the parent's threads are not here
        self._forking = False
        self._cond.notify_all()
        self._cond.release()


_GATE = _ForkGate()


def _before_fork() -> None:
    _GATE.close_for_fork()


def _after_fork_in_parent() -> None:
    _GATE.reopen_after_fork(child=False)


def _after_fork_in_child() -> None:
    _GATE.reopen_after_fork(child=True)
    # Before anything can drop (and so close) an inherited connection, e.g. a
    # client discarding its parent's store object: park them all for good.
    for store in list(_OPEN_STORES):
        store._forked()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def _errname(exc: sqlite3.Error) -> str:
    return str(getattr(exc, "sqlite_errorname", "") or "")


class SQLiteStore:
    """Flags in a SQLite database file, shared by any number of processes."""

    def __init__(
        self,
        path: str,
        *,
        namespace: str = "default",
        runtime: Runtime | None = None,
        timeout: float = 5.0,
        poll: float = 0.025,
        max_pages: int | None = None,
    ) -> None:
        if not path or path == ":memory:" or path.startswith("file:"):
            raise UnsupportedStoreURL(
                f"the SQLite store needs a database file path, not {path!r} "
                "(an in-memory database is not shared; use memory:// instead)"
            )
        self.path = os.path.abspath(path)
        self.namespace = namespace
        self.url = f"sqlite:///{self.path}?namespace={namespace}"
        self._runtime = runtime or default_runtime()
        self._timeout = timeout
        self._poll = poll
        self._max_pages = max_pages
        self._lock = self._runtime.lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._conn_inode: tuple[int, int] | None = None
        self._closed = False
        self._followers: list[_Follower] = []
        _OPEN_STORES.add(self)

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> SQLiteStore:
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc:
            raise UnsupportedStoreURL(
                f"bad SQLite URL {url!r}: use sqlite:///relative.db or sqlite:////absolute/path.db"
            )
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        options: dict[str, Any] = {}
        try:
            for key, value in parse_qsl(
                parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)
            ):
                if key == "namespace" and value:
                    options["namespace"] = value
                elif key in ("timeout", "poll") and float(value) >= 0:
                    options[key] = float(value)
                elif key == "max_pages" and int(value) > 0:
                    options["max_pages"] = int(value)
                else:
                    raise ValueError(f"{key}={value!r}")
        except ValueError as exc:
            raise UnsupportedStoreURL(
                f"bad SQLite URL option in {url!r} ({exc}); known options: namespace=NAME, "
                "timeout=SECONDS, poll=SECONDS, max_pages=N"
            ) from None
        return cls(path, runtime=runtime, **options)

    # ------------------------------------------------------------ connections

    def _open(self) -> sqlite3.Connection:
        """A new connection with the schema in place. Raises StoreUnavailable.

        Two connections setting up a new file at once (a store and its own
        watch, or two processes) can find it busy without SQLite's busy
        handler being called (switching to WAL needs the file to itself): the
        set-up is then tried again, for up to ``timeout``.
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.01
        while True:
            try:
                return self._open_once()
            except StoreUnavailable as exc:
                cause = exc.__cause__
                busy = isinstance(cause, sqlite3.Error) and _errname(cause).startswith(
                    ("SQLITE_BUSY", "SQLITE_LOCKED")
                )
                if not busy or time.monotonic() + delay > deadline:
                    raise
                self._runtime.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _connect(self) -> sqlite3.Connection:
        if not self._read_only():
            return sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        # A database this process may only read (a 0444 file, a directory it cannot create
        # the -wal/-shm files in): opened read-write, SQLite fails even to read a WAL
        # database ("attempt to write a readonly database"). Read-only mode can read it while
        # the -shm file exists (some writer has it open); without it, only as immutable.
        base = f"file:{pathname2url(self.path)}?mode=ro"
        conn = sqlite3.connect(
            base, timeout=self._timeout, isolation_level=None, check_same_thread=False, uri=True
        )
        try:
            conn.execute("PRAGMA user_version").fetchall()
            return conn
        except sqlite3.Error as exc:
            conn.close()
            log.warning(
                "%s is read-only here and has no shared-memory file (%s): reading it as immutable, "
                "so changes made after this are not seen until it is reopened",
                self.path,
                exc,
            )
        return sqlite3.connect(
            base + "&immutable=1",
            timeout=self._timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=True,
        )

    def _open_once(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self._unavailable(exc, "open") from exc
        try:
            if self._max_pages is not None:
                conn.execute(f"PRAGMA max_page_count = {int(self._max_pages)}").fetchall()
            if conn.execute("PRAGMA user_version").fetchall()[0][0] < SCHEMA_VERSION:
                mode = conn.execute("PRAGMA journal_mode").fetchall()[0][0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                conn.execute("BEGIN IMMEDIATE")
                for statement in _split_schema(_SCHEMA):
                    conn.execute(statement)
                _migrate(conn)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            # FULL: a committed change survives power loss too (writes are rare).
            conn.execute("PRAGMA synchronous = FULL").fetchall()
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            conn.close()
            raise self._unavailable(exc, "set up") from exc
        return conn

    def _read_only(self) -> bool:
        """The database exists and this process cannot write it or create files beside it."""
        if not os.path.exists(self.path):
            return False
        return not os.access(self.path, os.W_OK) or not os.access(os.path.dirname(self.path), os.W_OK)

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _connection(self) -> sqlite3.Connection:
        """The store's own connection, reopened after fork or if the file was replaced.

        Call with ``self._lock`` held.
        """
        if self._closed:
            raise StoreError(f"the store {self.url} is closed")
        conn = self._conn
        if conn is not None and self._conn_pid != os.getpid():
            _ABANDONED.append(conn)
            conn = None
        elif conn is not None and self._file_id() != self._conn_inode:
            # Replaced (restored from a backup, deleted): the old handle would
            # write into an unlinked file nobody reads.
            log.warning("%s was replaced or removed; reopening it", self.path)
            conn.close()
            conn = None
        if conn is None:
            conn = self._open()
            self._conn, self._conn_pid, self._conn_inode = conn, os.getpid(), self._file_id()
        return conn

    def _forked(self) -> None:
        """In a forked child: forget the parent's connection and lock (never close them)."""
        if self._conn is not None:
            _ABANDONED.append(self._conn)
            self._conn = None
        self._lock = self._runtime.lock()
        self._followers = []  # their tasks stayed in the parent

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock, _GATE.open():
            yield

    def _unavailable(self, exc: sqlite3.Error, doing: str) -> StoreUnavailable:
        name = _errname(exc)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            text = (
                f"the SQLite database {self.path} is locked: another writer held it for more "
                f"than {self._timeout:g} s ({doing})"
            )
        elif name.startswith("SQLITE_FULL"):
            text = (
                f"the SQLite database {self.path} is full (no disk space, or its max_page_count "
                f"was reached); nothing was written ({doing})"
            )
        else:
            text = f"the SQLite database {self.path} failed ({doing}): {exc}"
        return StoreUnavailable(text)

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A read transaction: everything read inside sees one moment."""
        with self._guard():
            conn = self._connection()
            try:
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._unavailable(exc, doing) from exc
            except BaseException:
                self._rollback(conn)
                raise

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database's write lock throughout."""
        with self._guard():
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn)
                raise self._unavailable(exc, doing) from exc
            except BaseException:
                self._rollback(conn)
                raise
        for follower in list(self._followers):
            follower.kick()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback failed")

    # ------------------------------------------------------------------ reads

    def load(self) -> StoreState:
        with self._read("load") as conn:
            rows = conn.execute(
                f"SELECT {_NAME}, {_RAW}, version FROM flagstaff_flags WHERE namespace = ?", (self.namespace,)
            ).fetchall()
            revision = _revision(conn, self.namespace)
            initialized = bool(
                conn.execute(
                    "SELECT 1 FROM flagstaff_meta WHERE namespace = ? AND key = 'initialized'",
                    (self.namespace,),
                ).fetchall()
            )
        records = {
            name: Record(name, decode_raw(raw), version)
            for name, raw, version in ((_name(n, self.path), r, v) for n, r, v in rows)
            if name is not None
        }
        return StoreState(revision, MappingProxyType(records), initialized)

    def get(self, name: str) -> Record | None:
        with self._read("get") as conn:
            rows = conn.execute(
                f"SELECT {_RAW}, version FROM flagstaff_flags WHERE namespace = ? AND name = ?",
                (self.namespace, name),
            ).fetchall()
        return Record(name, decode_raw(rows[0][0]), rows[0][1]) if rows else None

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        query = (
            f"SELECT {_NAME}, revision, version, at, author, CAST(before AS BLOB), CAST(after AS BLOB) "
            "FROM flagstaff_changes "
            "WHERE namespace = ? AND kind <> 'reset'"
        )
        args: list[Any] = [self.namespace]
        if name is not None:
            query += " AND name = ?"
            args.append(name)
        query += " ORDER BY revision DESC LIMIT ?"
        args.append(max(0, limit))
        with self._read("history") as conn:
            rows = conn.execute(query, args).fetchall()
        return [
            HistoryEntry(decode_raw(name), revision, version, at, author, _text(before), _text(after))
            for name, revision, version, at, author, before, after in rows
            if is_text(decode_raw(name))
        ]

    # ----------------------------------------------------------------- writes

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        with self._write(f"put {name!r}") as conn:
            actual = _version(conn, self.namespace, name)
            _check(name, expect, actual)
            if actual:
                conn.execute(
                    "UPDATE flagstaff_flags SET raw = ?, version = ? WHERE namespace = ? AND name = ?",
                    (raw, actual + 1, self.namespace, name),
                )
            else:
                conn.execute(
                    "INSERT INTO flagstaff_flags (namespace, name, raw, version) VALUES (?, ?, ?, 1)",
                    (self.namespace, name, raw),
                )
            self._sign(conn, author)
        return Record(name, raw, actual + 1)

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        with self._write(f"delete {name!r}") as conn:
            actual = _version(conn, self.namespace, name)
            if not actual:
                raise NotFoundError(name)
            _check(name, expect, actual)
            conn.execute(
                "DELETE FROM flagstaff_flags WHERE namespace = ? AND name = ?", (self.namespace, name)
            )
            self._sign(conn, author)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        check_writes(writes)
        if not writes:
            return []
        names = ", ".join(repr(w.name) for w in writes[:5]) + (", ..." if len(writes) > 5 else "")
        out: list[Record | None] = []
        with self._write(f"put_many {names}") as conn:
            before = _revision(conn, self.namespace)
            actuals = [_version(conn, self.namespace, w.name) for w in writes]
            for write, actual in zip(writes, actuals, strict=True):  # every check before any change
                if write.raw is None and not actual:
                    raise NotFoundError(write.name)
                _check(write.name, write.expect, actual)
            for write, actual in zip(writes, actuals, strict=True):
                if write.raw is None:
                    conn.execute(
                        "DELETE FROM flagstaff_flags WHERE namespace = ? AND name = ?",
                        (self.namespace, write.name),
                    )
                    out.append(None)
                    continue
                if actual:
                    conn.execute(
                        "UPDATE flagstaff_flags SET raw = ?, version = ? WHERE namespace = ? AND name = ?",
                        (write.raw, actual + 1, self.namespace, write.name),
                    )
                else:
                    conn.execute(
                        "INSERT INTO flagstaff_flags (namespace, name, raw, version) VALUES (?, ?, ?, 1)",
                        (self.namespace, write.name, write.raw),
                    )
                out.append(Record(write.name, write.raw, actual + 1))
            # The triggers wrote one change row per write, numbered one after the other (this
            # transaction is the only writer): ``more`` counts the rows after each.
            last = _revision(conn, self.namespace)
            conn.execute(
                "UPDATE flagstaff_changes SET more = ? - revision, author = coalesce(?, author) "
                "WHERE namespace = ? AND revision > ?",
                (last, author, self.namespace, before),
            )
        return out

    def _sign(self, conn: sqlite3.Connection, author: str | None) -> None:
        # The trigger wrote the change row; only this transaction writes, so
        # the namespace's newest row is ours.
        if author is not None:
            conn.execute(
                "UPDATE flagstaff_changes SET author = ? WHERE revision = ?",
                (author, _revision(conn, self.namespace)),
            )

    def reset_watches(self, reason: str = "reset requested") -> None:
        """Make every watch on this namespace, in every process, deliver
        :class:`Reset` (e.g. after restoring rows by hand with triggers off)."""
        with self._write("reset watches") as conn:
            conn.execute(
                "INSERT INTO flagstaff_changes (namespace, name, kind, at, after) "
                f"VALUES (?, '', 'reset', {_NOW}, ?)",
                (self.namespace, reason),
            )

    # ---------------------------------------------------------------- watches

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        with self._guard():
            if self._closed:
                raise StoreError(f"the store {self.url} is closed")
            follower = _Follower(self, on_event, since)
            self._followers.append(follower)
        return follower

    def _forget(self, follower: PollingWatch) -> None:
        with self._guard():
            if follower in self._followers:
                self._followers.remove(follower)

    def close(self) -> None:
        with self._guard():
            if self._closed:
                return
            self._closed = True
            followers, self._followers = self._followers, []
            conn, self._conn = self._conn, None
        for follower in followers:
            follower.stop()
        if conn is not None and self._conn_pid == os.getpid():
            with _GATE.open():
                conn.close()


class _Follower(PollingWatch):
    """One watch: a task polling ``PRAGMA data_version`` on its own connection."""

    def __init__(self, store: SQLiteStore, on_event: Callable[[WatchEvent], None], since: int) -> None:
        super().__init__(store._runtime, on_event, "sqlite", store._forget)
        self._store = store
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._data_version: int | None = None
        self._last = since
        self._reset: str | None = None  # why a Reset is owed once the database answers again
        self._first = True
        self._more = "more"  # the column holding Change.more (see _step)
        self._contact = time.time()  # the last poll the database answered
        self._lost = False  # Disconnected delivered; the Reset owed above ends it
        self._start("flagstaff-sqlite-follow")

    def _step(self) -> float:
        store = self._store
        try:
            with _GATE.open():  # no fork() in the middle of SQLite calls
                if self._conn is not None and store._file_id() != self._file_id:
                    self._conn.close()
                    self._conn = None
                    self._reset = f"{store.path} was replaced"
                if self._conn is None:
                    self._conn = store._open()
                    self._file_id = store._file_id()
                    if self._file_id is None:
                        # Gone between the open and the stat (its volume went away): the open
                        # descriptor would go on reading the old file, and nothing would tell.
                        raise StoreUnavailable(f"{store.path} went away as it was opened")
                    self._data_version = None
                    # A version-1 database this process could not migrate (read-only) has no
                    # ``more``: its changes are all single writes.
                    self._more = "more" if _has_more(self._conn) else "0"
                current = self._conn.execute("PRAGMA data_version").fetchall()[0][0]
                if current != self._data_version or self._wake.is_set():
                    self._wake.clear()
                    self._data_version = current
                    head = _revision(self._conn, store.namespace)
                    if self._first and self._last > head:
                        self._reset = f"revision {self._last} is newer than the database's ({head})"
                    if self._reset is not None:
                        # Resume after what exists now: the reload covers the rest.
                        why = self._reset
                        self._last, self._reset, self._lost = head, None, False
                        self._queue.push(Reset(why))
                    self._first = False
                    while True:
                        count, self._last = self._deliver(self._conn, self._last)
                        if count < _BATCH or self._stopped:
                            break
        except (sqlite3.Error, StoreUnavailable) as exc:
            if self._reset is None:  # once per outage, not once per retry
                log.warning("watch on %s lost track (%s); will reset", store.url, exc)
            if not self._lost:  # the subscriber's data may be behind from now until the Reset
                self._lost = True
                self._queue.push(Disconnected(f"the database failed: {exc}", self._contact))
            if self._conn is not None:
                with _GATE.open():
                    self._conn.close()
                self._conn = None
            self._reset = self._reset or f"the database failed: {exc}"
            return min(1.0, max(store._poll, 0.1) * 4)
        self._contact = time.time()
        return store._poll

    def _finish(self) -> None:
        if self._conn is not None:
            with _GATE.open():
                self._conn.close()

    def _deliver(self, conn: sqlite3.Connection, last: int) -> tuple[int, int]:
        """Push the change rows after ``last``; return how many and the new last."""
        rows = conn.execute(
            f"SELECT revision, {_NAME}, kind, version, CAST(after AS BLOB), {self._more} "
            "FROM flagstaff_changes WHERE namespace = ? AND revision > ? ORDER BY revision LIMIT ?",
            (self._store.namespace, last, _BATCH),
        ).fetchall()
        for revision, raw_name, kind, version, after, more in rows:
            if self._stopped:
                break
            name = _name(raw_name, self._store.path)
            if kind == "reset":
                event: WatchEvent = Reset(decode_raw(after or b"reset requested"))
            elif name is None:  # no flag has that name: skipped (and logged)
                last = revision
                continue
            elif kind == "delete":
                event = Change(name, None, revision, more)
            else:
                event = Change(name, Record(name, decode_raw(after), version), revision, more)
            self._queue.push(event)
            last = revision
        return len(rows), last


# Documents are read as bytes and decoded by us: a row written by another program may hold a
# blob, or text that is not UTF-8 (which makes sqlite3 fail the whole query), or a number.
# decode_raw turns any of them into one record, refused by the client if it is no document.
_RAW = "CAST(raw AS BLOB)"
_NAME = "CAST(name AS BLOB)"


def _name(value: bytes | str, path: str) -> str | None:
    """A row's flag name; None (logged) for one that is not UTF-8, which no flag can have."""
    name = decode_raw(value if isinstance(value, bytes | str) else str(value))
    if is_text(name):
        return name
    log.warning("%s holds a flag name that is not UTF-8 text (%s): ignored", path, printable_text(name))
    return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else decode_raw(value)


def _revision(conn: sqlite3.Connection, namespace: str) -> int:
    rows = conn.execute(
        "SELECT max(revision) FROM flagstaff_changes WHERE namespace = ?", (namespace,)
    ).fetchall()
    return int(rows[0][0] or 0)


def _version(conn: sqlite3.Connection, namespace: str, name: str) -> int:
    rows = conn.execute(
        "SELECT version FROM flagstaff_flags WHERE namespace = ? AND name = ?", (namespace, name)
    ).fetchall()
    return int(rows[0][0]) if rows else 0


def _check(name: str, expect: int | None, actual: int) -> None:
    if expect is not None and expect != actual:
        raise ConflictError(name, expect, actual)


def _has_more(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "more" for row in conn.execute("PRAGMA table_info(flagstaff_changes)").fetchall())


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database made by an older flagstaff to :data:`SCHEMA_VERSION` (inside the
    set-up transaction; a fresh database already has everything)."""
    if not _has_more(conn):  # version 1: no put_many yet, so every existing change is single
        conn.execute("ALTER TABLE flagstaff_changes ADD COLUMN more INTEGER NOT NULL DEFAULT 0")


def _split_schema(script: str) -> list[str]:
    """The schema's statements, one by one (triggers contain ``;`` inside)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        text = "\n".join(current)
        if line.rstrip().endswith(";") and sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements
