"""``postgresql://user:password@host:port/dbname?namespace=NAME``: flags in PostgreSQL.

``postgres://`` is the same. ``namespace`` (default ``default``, at most 200 characters)
separates flag sets sharing the tables; ``timeout`` (seconds, default 3) bounds every
request. Any other query option is passed to libpq as is (``sslmode=require``,
``connect_timeout=5``, ``application_name=…``). The tables, triggers and the reasons for
them are in :mod:`flagstaff.stores._pg_schema` and docs/stores.md.

Writes
    ``put`` and ``delete`` are ONE statement each, compare-and-set in its ``WHERE``
    (``UPDATE … WHERE version = expect RETURNING``, ``INSERT … ON CONFLICT DO NOTHING``),
    committed on its own: a lost answer leaves the write applied or not, never half, and
    it is reported as :class:`~flagstaff.errors.WriteOutcomeUnknown`, never sent again.
    ``put_many`` is one transaction: the rows are locked, every ``expect`` checked, then
    written; all or nothing.

Watches
    ``LISTEN flagstaff`` on a connection of its own. A notice carries only the revision;
    the watch then reads the change rows after the last one it delivered, by revision, so
    nothing rides on the notice itself. Notices are lost while disconnected, so the same
    catch-up runs after every (re)connect and once a second (which is also the heartbeat):
    each change row names the revision before it (``prev``), and a chain that does not
    reach back to the last delivered revision (history trimmed, rows deleted by hand, a
    restored database) is a :class:`Reset`. The changes of one transaction (``put_many``,
    or one hand-written statement) are delivered back to back with ``Change.more``
    counting down to 0.

Bounds
    Every request (the store's and the watch's heartbeat) is given ``timeout`` seconds: a
    watchdog shuts the socket of one that runs over, so a hung server or a silent network
    fails it instead of blocking. A watch tells :class:`Disconnected` at once when its
    connection breaks, and within ``1 + timeout`` seconds (4 s by default) when it goes
    silent; it reconnects with a backoff capped at 1 s, catches up by revision and then
    delivers :class:`Resumed` (every change of the outage came before it: no reload), or
    :class:`Reset` if the chain of changes has a gap. An idle watch sleeps on its socket
    between two heartbeats, and the watchdog sleeps until the next deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from flagstaff.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    WriteOutcomeUnknown,
)
from flagstaff.runtime import Event, Runtime, default_runtime
from flagstaff.stores._backoff import Backoff
from flagstaff.stores._dispatch import InlineDelivery
from flagstaff.stores._pg_schema import CHANNEL, NAMESPACE_MAX, SCHEMA, SCHEMA_VERSION, SETUP_LOCK, WRITE_LOCK
from flagstaff.stores._url import redact_url
from flagstaff.stores.base import (
    Change,
    Disconnected,
    HistoryEntry,
    Record,
    Reset,
    Resumed,
    StoreState,
    Watch,
    WatchEvent,
    Write,
    check_writes,
    decode_raw,
)

__all__ = ["PostgresStore"]

log = logging.getLogger("flagstaff.stores.postgres")

# Connections a forked child found open: never closed there (see _connection).
_INHERITED: list[Any] = []

HEARTBEAT = 1.0  # seconds between two catch-up reads of a quiet watch
_DOG_IDLE = 60.0  # how long the watchdog sleeps with nothing armed (an _arm wakes it)
_DOG_SLACK = 0.01  # past a deadline before the watchdog looks (so it finds it run over)
_BATCH = 500  # change rows a watch reads per query
_T = TypeVar("_T")
Conn = psycopg.Connection[tuple[Any, ...]]


class PostgresStore:
    """Flags in one namespace of a PostgreSQL database. Thread-safe; one connection for
    requests (serialized) and one per watch."""

    def __init__(
        self, conninfo: str, *, namespace: str = "default", timeout: float = 3.0, url: str = "",
        runtime: Runtime | None = None,
    ) -> None:  # fmt: skip
        if not namespace or len(namespace) > NAMESPACE_MAX:
            raise UnsupportedStoreURL(
                f"the namespace must be 1 to {NAMESPACE_MAX} characters, not {namespace!r}"
            )
        self.namespace = namespace
        self.url = url or redact_url(conninfo)
        self._conninfo = conninfo
        self._timeout = timeout
        self._runtime = runtime or default_runtime()
        self._lock = self._runtime.lock()
        self._conn: Conn | None = None
        self._pid = os.getpid()  # the process self._conn belongs to
        self._dog = _Watchdog(self._runtime)
        self._watches: list[_PgWatch] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> PostgresStore:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise UnsupportedStoreURL(f"not a postgresql:// URL: {redact_url(url)}")
        options: dict[str, Any] = {}
        rest: list[tuple[str, str]] = []
        try:
            for key, value in parse_qsl(
                parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)
            ):
                if key == "namespace":
                    options["namespace"] = value
                elif key == "timeout":
                    options["timeout"] = float(value)
                    if not options["timeout"] > 0:
                        raise ValueError(f"timeout={value!r}")
                else:
                    rest.append((key, value))
        except ValueError as exc:
            raise UnsupportedStoreURL(
                f"bad PostgreSQL URL option in {redact_url(url)} ({exc}); flagstaff's options are "
                "namespace=NAME and timeout=SECONDS, the others go to libpq"
            ) from None
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
        return cls(conninfo, url=redact_url(url), runtime=runtime, **options)

    # -- connections --------------------------------------------------------------------------

    def _connect(self, application: str) -> Conn:
        """A new autocommit connection with the schema in place. Raises StoreUnavailable/StoreError."""
        try:
            # Defaults that bound a dead or silent peer; options in the URL win over them.
            params: dict[str, Any] = {
                "connect_timeout": max(2, round(self._timeout)),
                "application_name": application,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 1,
                "keepalives_count": 3,
                "tcp_user_timeout": int(self._timeout * 1000),
                **conninfo_to_dict(self._conninfo),
            }
            conn: Conn = psycopg.connect(make_conninfo("", **params), autocommit=True)
        except psycopg.Error as exc:
            raise self._error(exc, "connect") from exc
        try:
            with self._dog.guard(conn, self._timeout):
                self._ensure_schema(conn)
        except psycopg.Error as exc:
            conn.close()
            raise self._error(exc, "set up") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _ensure_schema(conn: Conn) -> None:
        rows = conn.execute("SELECT to_regclass('flagstaff_schema') IS NOT NULL").fetchall()
        if rows[0][0] and conn.execute("SELECT max(version) FROM flagstaff_schema").fetchall()[0][0] == (
            SCHEMA_VERSION
        ):
            return
        with conn.transaction():  # one process sets up; the others wait, then find it done
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
            done = conn.execute("SELECT to_regclass('flagstaff_schema') IS NOT NULL").fetchall()[0][0]
            if not done or conn.execute("SELECT max(version) FROM flagstaff_schema").fetchall()[0][0] != (
                SCHEMA_VERSION
            ):
                conn.execute(SCHEMA.encode())

    def _connection(self) -> Conn:
        """The request connection, reconnected if it broke (checked without a round trip)."""
        if self._closed:
            raise StoreError(f"the store {self.url} is closed")
        conn = self._conn
        if conn is not None and self._pid != os.getpid():
            # A forked child: the socket is the parent's. Closing it would end the parent's
            # session (libpq says goodbye on it), so it is left alone, referenced for good.
            _INHERITED.append(conn)
            conn = self._conn = None
        if conn is not None and not _alive(conn):
            self._drop()
            conn = None
        if conn is None:
            conn = self._conn = self._connect("flagstaff")
            self._pid = os.getpid()
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()

    def _error(self, exc: psycopg.Error, doing: str) -> StoreError:
        state = exc.sqlstate or ""
        if state.startswith("28"):  # invalid authorization: configuration, not an outage
            return StoreError(f"PostgreSQL refused the credentials for {self.url} ({doing})")
        if not state or state.startswith(("08", "40", "53", "55", "57")):
            return StoreUnavailable(f"PostgreSQL unavailable at {self.url} ({doing}): {_first_line(exc)}")
        return StoreError(f"PostgreSQL error at {self.url} ({doing}): {_first_line(exc)}")

    def _read(self, doing: str, fn: Callable[[Conn], _T]) -> _T:
        """Run a read; once more on a new connection if the old one was found broken."""
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                guard = self._dog.guard(conn, self._timeout)
                try:
                    with guard:
                        return fn(conn)
                except psycopg.Error as exc:
                    if not conn.broken and not conn.closed:
                        raise self._error(exc, doing) from exc
                    self._drop()
                    if attempt == 2 or guard.fired:  # a hung server is not asked twice
                        raise StoreUnavailable(
                            f"PostgreSQL unavailable at {self.url} ({doing}): "
                            + (f"no answer within {self._timeout:g} s" if guard.fired else _first_line(exc))
                        ) from exc
        raise AssertionError("unreachable")

    def _write(self, doing: str, fn: Callable[[Conn], _T]) -> _T:
        """Run a write. A connection lost once it was sent leaves its outcome unknown."""
        with self._lock:
            conn = self._connection()
            guard = self._dog.guard(conn, self._timeout)
            try:
                with guard:
                    return fn(conn)
            except psycopg.Error as exc:
                if not conn.broken and not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                            conn.execute("ROLLBACK")
                    raise self._error(exc, doing) from exc
                self._drop()
                why = f"no answer within {self._timeout:g} s" if guard.fired else _first_line(exc)
                raise WriteOutcomeUnknown(
                    f"outcome unknown: {doing} on {self.url}: the connection was lost before "
                    f"PostgreSQL answered ({why}); the write may have been applied"
                ) from exc
            except (NotFoundError, ConflictError):
                raise  # put_many refused, its transaction rolled back: the connection is clean
            except BaseException:
                self._drop()  # in an unknown state
                raise

    # -- reads --------------------------------------------------------------------------------

    def load(self) -> StoreState:
        # One statement: one snapshot, so the revision is the one the rows are at.
        def run(conn: Conn) -> list[tuple[Any, ...]]:
            return conn.execute(
                "SELECT NULL::text, NULL::bytea, NULL::bigint, "
                "(SELECT revision FROM flagstaff_namespaces WHERE namespace = %(ns)s), true "
                "UNION ALL SELECT name, raw, version, NULL, false FROM flagstaff_flags "
                "WHERE namespace = %(ns)s",
                {"ns": self.namespace},
            ).fetchall()

        rows = self._read("load", run)
        head = next(row[3] for row in rows if row[4])
        records = {
            name: Record(name, decode_raw(raw), version) for name, raw, version, _, meta in rows if not meta
        }
        return StoreState(int(head or 0), MappingProxyType(records), head is not None)

    def get(self, name: str) -> Record | None:
        rows = self._read(
            "get",
            lambda conn: conn.execute(
                "SELECT raw, version FROM flagstaff_flags WHERE namespace = %s AND name = %s",
                (self.namespace, name),
            ).fetchall(),
        )
        return Record(name, decode_raw(rows[0][0]), rows[0][1]) if rows else None

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        query = (
            "SELECT name, revision, version, at, author, before, after FROM flagstaff_changes "
            "WHERE namespace = %s"
            + ("" if name is None else " AND name = %s")
            + " ORDER BY revision DESC LIMIT %s"
        )
        args: tuple[Any, ...] = (self.namespace, max(0, limit))
        if name is not None:
            args = (self.namespace, name, max(0, limit))
        rows = self._read("history", lambda conn: conn.execute(query, args).fetchall())
        return [
            HistoryEntry(n, rev, ver, at, author, _text(before), _text(after))
            for n, rev, ver, at, author, before, after in rows
        ]

    # -- writes -------------------------------------------------------------------------------

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        data = raw.encode("utf-8", "surrogateescape")
        args = {"author": author or "", "ns": self.namespace, "name": name, "raw": data, "expect": expect}
        if expect is None:
            sql = (
                f"{_AUTHOR} INSERT INTO flagstaff_flags (namespace, name, raw) "
                "SELECT %(ns)s, %(name)s, %(raw)b FROM a ON CONFLICT (namespace, name) DO UPDATE "
                "SET raw = EXCLUDED.raw, version = flagstaff_flags.version + 1 RETURNING version"
            )
        elif expect == 0:
            sql = (
                f"{_AUTHOR} INSERT INTO flagstaff_flags (namespace, name, raw) "
                "SELECT %(ns)s, %(name)s, %(raw)b FROM a "
                "ON CONFLICT (namespace, name) DO NOTHING RETURNING version"
            )
        else:
            sql = (
                f"{_AUTHOR} UPDATE flagstaff_flags SET raw = %(raw)b, version = version + 1 FROM a "
                "WHERE namespace = %(ns)s AND name = %(name)s AND version = %(expect)s RETURNING version"
            )
        rows = self._write(f"writing flag {name!r}", lambda conn: conn.execute(sql, args).fetchall())
        if not rows:
            current = self.get(name)
            raise ConflictError(name, expect, current.version if current else None)
        return Record(name, raw, int(rows[0][0]))

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        args = {"author": author or "", "ns": self.namespace, "name": name, "expect": expect}
        sql = (
            f"{_AUTHOR} DELETE FROM flagstaff_flags USING a WHERE namespace = %(ns)s AND name = %(name)s"
            + ("" if expect is None else " AND version = %(expect)s")
            + " RETURNING version"
        )
        rows = self._write(f"deleting flag {name!r}", lambda conn: conn.execute(sql, args).fetchall())
        if not rows:
            current = self.get(name)
            if current is None:
                raise NotFoundError(name)
            raise ConflictError(name, expect, current.version)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        """All of ``writes`` in one transaction, or none: every ``expect`` is checked under the
        rows' locks before anything is written. A watch delivers them back to back, ``more``
        counting down to 0."""
        check_writes(writes)
        if not writes:
            return []
        names = [w.name for w in writes]

        def run(conn: Conn) -> list[Record | None]:
            conn.execute("BEGIN")
            try:
                # The write lock first, as every writer takes it (see _pg_schema): no deadlocks.
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s), set_config('flagstaff.author', %s, true)",
                    (WRITE_LOCK, author or ""),
                )
                held: dict[str, int] = dict(
                    conn.execute(
                        "SELECT name, version FROM flagstaff_flags WHERE namespace = %s AND name = ANY(%s) "
                        "ORDER BY name FOR UPDATE",
                        (self.namespace, names),
                    ).fetchall()
                )
                for w in writes:
                    actual = held.get(w.name)
                    if w.raw is None and actual is None:
                        raise NotFoundError(w.name)
                    if w.expect is not None and w.expect != (actual or 0):
                        raise ConflictError(w.name, w.expect, actual)
                out: list[Record | None] = []
                for w in writes:
                    if w.raw is None:
                        conn.execute(
                            "DELETE FROM flagstaff_flags WHERE namespace = %s AND name = %s",
                            (self.namespace, w.name),
                        )
                        out.append(None)
                        continue
                    version = conn.execute(
                        "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES (%s, %s, %b) "
                        "ON CONFLICT (namespace, name) DO UPDATE "
                        "SET raw = EXCLUDED.raw, version = flagstaff_flags.version + 1 RETURNING version",
                        (self.namespace, w.name, w.raw.encode("utf-8", "surrogateescape")),
                    ).fetchall()[0][0]
                    out.append(Record(w.name, w.raw, int(version)))
            except (NotFoundError, ConflictError):
                conn.execute("ROLLBACK")
                raise
            except psycopg.Error as exc:
                if conn.broken or conn.closed:  # before COMMIT went out: the server rolls it back
                    raise StoreUnavailable(
                        f"PostgreSQL unavailable at {self.url} (writing {len(writes)} flags): "
                        f"{_first_line(exc)}; nothing was written"
                    ) from exc
                raise
            conn.execute("COMMIT")  # a lost answer from here on: outcome unknown (see _write)
            return out

        return self._write(f"writing {len(writes)} flags", run)

    # -- watch --------------------------------------------------------------------------------

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.url} is closed")
            w = _PgWatch(self, on_event, since)
            self._watches.append(w)
        return w

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = self._watches, []
            self._drop()
        for w in watches:
            w.stop()
        self._dog.close()

    def _changes_after(self, conn: Conn, last: int) -> tuple[int, list[tuple[Any, ...]]]:
        """The namespace's revision and the change rows after ``last`` (a batch), in one snapshot:
        ``(revision, prev, name, version, after, more)``."""
        with self._dog.guard(conn, self._timeout):
            rows = conn.execute(
                _CHANGES_AFTER, {"ns": self.namespace, "last": last, "batch": _BATCH}
            ).fetchall()
        head = rows[0][0] if rows else None
        return int(head or 0), [row[1:] for row in rows if row[1] is not None]


# The author rides in the writing statement itself (one statement, one implicit transaction):
# the trigger reads it when it records the change; a hand edit has none.
_AUTHOR = "WITH a AS (SELECT set_config('flagstaff.author', %(author)s, true) AS author)"

_CHANGES_AFTER = """
SELECT h.head, c.revision, c.prev, c.name, c.version, c.after,
       (SELECT count(*) FROM flagstaff_changes m
        WHERE m.namespace = c.namespace AND m.txid = c.txid AND m.revision > c.revision)
FROM (SELECT (SELECT revision FROM flagstaff_namespaces WHERE namespace = %(ns)s) AS head) h
LEFT JOIN LATERAL (
    SELECT * FROM flagstaff_changes
    WHERE namespace = %(ns)s AND revision > %(last)s ORDER BY revision LIMIT %(batch)s
) c ON true
ORDER BY c.revision
"""


class _PgWatch:
    """One watch: LISTEN on its own connection, and catch-up reads by revision."""

    def __init__(self, store: PostgresStore, on_event: Callable[[WatchEvent], None], since: int) -> None:
        self._store = store
        self._queue = InlineDelivery(store._runtime, on_event)
        self._last = since  # the newest revision delivered (or covered by a Reset)
        self._contact = time.time()  # when the server last answered this watch
        self._lost = False  # Disconnected delivered: a Resumed or a Reset is owed once back
        self._stop: Event = store._runtime.event()
        self._conn: Conn | None = None  # the connection listening now (stop() shuts it)
        self._conn_lock = store._runtime.lock()
        self._task = store._runtime.spawn(self._run, name="flagstaff-postgres-watch")

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            conn: Conn | None = None
            try:
                conn = self._store._connect("flagstaff-watch")
                with self._conn_lock:
                    if self._stop.is_set():
                        break
                    self._conn = conn
                self._follow(conn, backoff)
            except (psycopg.Error, StoreError, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning("PostgreSQL watch on %s interrupted: %s", self._store.url, _first_line(exc))
                if not self._lost:  # once per outage
                    self._lost = True
                    self._queue.push(Disconnected(f"PostgreSQL: {_first_line(exc)}", self._contact))
            finally:
                if conn is not None:
                    with self._conn_lock:
                        self._conn = None
                        with contextlib.suppress(psycopg.Error, OSError):
                            conn.close()
            if backoff.wait(self._stop):
                break

    def _follow(self, conn: Conn, backoff: Backoff) -> None:
        store = self._store
        with store._dog.guard(conn, store._timeout):
            conn.execute(f"LISTEN {CHANNEL}")
        # Listening from here: any commit after this is noticed; the catch-up covers the rest.
        backoff.reset()
        reset = self._catch_up(conn)
        if self._lost:
            # Listening since before the catch-up, which reached the head: every change of the
            # outage was delivered (or the gap in the chain was answered with a Reset).
            self._lost = False
            if not reset:
                self._queue.push(Resumed("reconnected to PostgreSQL; caught up by revision"))
        checked = time.monotonic()
        while not self._stop.is_set():
            due = False
            # Blocks on the socket until a notice or the next heartbeat (stop() shuts the
            # socket to end it at once): an idle watch wakes once per heartbeat.
            wait = max(0.0, HEARTBEAT - (time.monotonic() - checked))
            for notice in conn.notifies(timeout=wait, stop_after=1):
                revision, _, namespace = notice.payload.partition(" ")
                if namespace == store.namespace and revision.isdigit() and int(revision) > self._last:
                    due = True
            if self._stop.is_set():
                return
            if due or time.monotonic() - checked >= HEARTBEAT:
                self._catch_up(conn)
                checked = time.monotonic()

    def _catch_up(self, conn: Conn) -> bool:
        """Deliver the changes after the last delivered revision, or a Reset if they cannot be
        proved complete; whether it delivered a Reset."""
        while not self._stop.is_set():
            head, rows = self._store._changes_after(conn, max(self._last, 0))
            self._contact = time.time()
            if head == max(self._last, 0) and not rows:
                return False
            why = None
            if head < self._last:
                why = f"the namespace is at revision {head}, behind {self._last} (wiped or restored)"
            elif not rows or rows[0][1] != self._last:
                why = f"the changes after revision {self._last} are no longer all in the history"
            else:
                for before, after in itertools.pairwise(rows):
                    if after[1] != before[0]:
                        why = f"the history has a gap before revision {after[0]}"
                        break
            if why is not None:
                log.info("PostgreSQL watch on %s: %s: reset", self._store.url, why)
                # Wiped (no namespace row): the subscriber finds it empty and unmarked, and is
                # told again at the first write after (-1 is no change's "prev"), which marks it.
                self._last = head if head else -1
                self._queue.push(Reset(why))
                return True
            for revision, _prev, name, version, after, more in rows:
                if self._stop.is_set():
                    return False
                record = None if after is None else Record(name, decode_raw(after), int(version))
                self._queue.push(Change(name, record, int(revision), int(more)))
                self._last = int(revision)
            if len(rows) < _BATCH:
                return False
        return False

    def stop(self) -> None:
        self._stop.set()
        self._queue.stop()
        with self._conn_lock:  # wake the task from its wait on the socket
            if self._conn is not None:
                with contextlib.suppress(OSError, psycopg.Error, ValueError):
                    _shutdown(self._conn.fileno())
        self._task.join(1.0)


class _Guard:
    """One armed deadline (see :class:`_Watchdog`); ``fired`` once it shut the socket."""

    def __init__(self, dog: _Watchdog, conn: Conn, seconds: float) -> None:
        self._dog = dog
        self._conn = conn
        self._seconds = seconds
        self.fired = False

    def __enter__(self) -> _Guard:
        self._dog._arm(self, time.monotonic() + self._seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        self._dog._disarm(self)

    def fire(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError, psycopg.Error):
            _shutdown(self._conn.fileno())


class _Watchdog:
    """Bounds requests: libpq waits for an answer as long as the socket stays open, so a
    hung server (SIGSTOP) or a silent network would block a request, and the store's lock,
    for ever. A task checks the armed deadlines every 0.1 s and shuts the socket of one that
    ran over; the request then fails at once, as on a dropped connection."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._lock = runtime.lock()
        self._armed: dict[_Guard, float] = {}
        self._wake = runtime.event()
        self._task: Any = None
        self._pid = os.getpid()
        self._closed = False
        self._until = 0.0  # when the task wakes next by itself (monotonic)

    def guard(self, conn: Conn, seconds: float) -> _Guard:
        return _Guard(self, conn, seconds)

    def _arm(self, guard: _Guard, deadline: float) -> None:
        with self._lock:
            self._armed[guard] = deadline
            if self._pid != os.getpid():  # forked: the parent's task did not come along
                self._task, self._pid = None, os.getpid()
            if self._task is None and not self._closed:
                self._until = 0.0
                self._task = self._runtime.spawn(self._run, name="flagstaff-postgres-watchdog")
            elif deadline < self._until:
                self._wake.set()  # sleeping past this deadline: look again

    def _disarm(self, guard: _Guard) -> None:
        with self._lock:
            self._armed.pop(guard, None)

    def _run(self) -> None:
        # Sleeps until the earliest armed deadline (woken by _arm for an earlier one), so an
        # idle store's watchdog costs nothing between requests.
        while True:
            now = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                late = [g for g, deadline in self._armed.items() if deadline <= now]
                for g in late:
                    del self._armed[g]
                self._until = min(self._armed.values(), default=now + _DOG_IDLE)
                self._wake.clear()  # under the lock: an _arm after this sets it again
            for g in late:
                log.warning("a PostgreSQL request ran over its time: closing its connection")
                g.fire()
            if not late:
                self._wake.wait(max(0.0, self._until - now) + _DOG_SLACK)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            task, self._task = self._task, None
        self._wake.set()
        if task is not None:
            task.join(1.0)


def _shutdown(fd: int) -> None:
    """Shut down the socket behind ``fd`` (libpq's), without closing libpq's descriptor."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def _alive(conn: Conn) -> bool:
    """Whether ``conn`` can still take a request: not closed, and no end-of-stream waiting on
    its socket (a restarted server, a terminated backend). No round trip: a write sent on a
    connection that is already gone would be reported as outcome unknown."""
    if conn.closed or conn.broken:
        return False
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            conn.pgconn.consume_input()
    except (psycopg.Error, OSError, ValueError):
        return False
    return conn.pgconn.status == pq.ConnStatus.OK


def _text(value: bytes | None) -> str | None:
    return None if value is None else decode_raw(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
