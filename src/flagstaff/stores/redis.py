"""``redis://[:password@]host:port/db?prefix=NAME``: flags in Redis, changes by pub/sub.

Layout (``NAME`` defaults to ``flagstaff``)::

    NAME:flags        hash   flag name -> document text
    NAME:versions     hash   flag name -> version (int)
    NAME:revision     string the store revision, +1 per change
    NAME:initialized  string the marker written with every change through flagstaff
    NAME:sums         hash   flag name -> SHA-1 of the text flagstaff wrote (hand edits)
    NAME:history      list   newest first, capped at HISTORY_LIMIT entries (JSON)
    NAME:changes      channel: one JSON notice per change,
                      {"n": name, "r": revision, "p": previous revision, "v": version,
                       "d": text or null}

Writes are ``WATCH NAME:revision`` / ``MULTI`` / ``EXEC`` transactions (a
``put_many`` is one transaction, bumping the revision once per flag, its
notices carrying ``"m"``: ``Change.more``): every write bumps the revision, so
two writers never interleave, and the notice published inside the transaction
carries the exact revision it made.

Pub/sub is fire-and-forget: a subscriber that is disconnected, or killed with
``CLIENT KILL TYPE pubsub``, loses notices. So a watch compares the revision
counter after every (re)subscribe and once a second; a revision that is still
unseen one second later is replayed from the history list when that holds
every missed change, else (history trimmed, a write made out of band, a
counter that went down because the store was wiped) the watch delivers
:class:`Reset`. No change stays missed for more than about
two seconds. After an outage the same replay runs once subscribed again; when it
covers the outage and the hand-edit check (below) finds nothing new, the watch
delivers :class:`Resumed` after the replayed changes, else ``Reset``.

A value changed by hand (``HSET NAME:flags f '...'``, ``HDEL``) bumps no revision
and publishes no notice. Every write through flagstaff also records the text's
SHA-1 in ``NAME:sums``; a watch runs one server-side script every
``CONTENT_INTERVAL`` seconds that lists the flags whose text no longer matches its
sum, and delivers :class:`Reset` when that list changes, so a hand edit is seen
within that bound. Where the server has keyspace notifications on for hashes
(``notify-keyspace-events Kh``), the watch also listens to ``NAME:flags``' own
keyspace channel and runs the check as soon as the key changes: a hand edit is
then seen as fast as a notice. A store that is wiped (``FLUSHALL``) reads as empty and
uninitialized; its next write restarts the revision from the clock (in
microseconds) so revisions never go backwards across a wipe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from flagstaff.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    WriteOutcomeUnknown,
)
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._backoff import Backoff
from flagstaff.stores._dispatch import InlineDelivery
from flagstaff.stores._history import HISTORY_LIMIT, decode_entry, entry_fields
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
    is_text,
)

__all__ = ["HISTORY_LIMIT", "RedisStore"]

log = logging.getLogger("flagstaff.stores.redis")

RECONCILE_INTERVAL = 1.0  # seconds between two checks of the revision counter
CONTENT_INTERVAL = 10.0  # seconds between two checks for values written by hand (see module doc)
# The flags whose text differs from the sum flagstaff recorded (or that have no sum, or a sum
# but no text: added or removed by hand), with the text's SHA-1 ("" when removed), and the
# revision, in one atomic step. Only differences travel back, whatever the namespace's size.
_CONTENT_SCRIPT = """
local flags = redis.call('HGETALL', KEYS[1])
local sums = redis.call('HGETALL', KEYS[2])
local known = {}
for i = 1, #sums, 2 do known[sums[i]] = sums[i + 1] end
local out = {}
for i = 1, #flags, 2 do
  local sum = redis.sha1hex(flags[i + 1])
  if known[flags[i]] ~= sum then
    out[#out + 1] = flags[i]
    out[#out + 1] = sum
  end
  known[flags[i]] = nil
end
for name, _ in pairs(known) do
  out[#out + 1] = name
  out[#out + 1] = ''
end
return {redis.call('GET', KEYS[3]) or '0', out}
"""
_SILENCE_LIMIT = 3.0  # seconds without any reply (not even a PONG) on the pub/sub connection
_CAS_ATTEMPTS = 64


class RedisStore:
    """Flags in one Redis database under one key prefix. Thread- and greenlet-safe."""

    def __init__(
        self, client: redis.Redis, prefix: str = "flagstaff", *, url: str = "", runtime: Runtime | None = None
    ) -> None:
        self.url = url or f"redis://?prefix={prefix}"
        # redis-py's annotations do not follow its pipelines' chaining: kept untyped here.
        self._client: Any = client
        self._runtime = runtime or default_runtime()
        self._flags = f"{prefix}:flags"
        self._versions = f"{prefix}:versions"
        self._revision = f"{prefix}:revision"
        self._marker = f"{prefix}:initialized"
        self._history = f"{prefix}:history"
        self._sums = f"{prefix}:sums"
        self._channel = f"{prefix}:changes"
        db = client.connection_pool.connection_kwargs.get("db", 0)
        self._keyspace = f"__keyspace@{db}__:{self._flags}"
        self._content_script = client.register_script(_CONTENT_SCRIPT)
        self._lock = self._runtime.lock()
        self._watches: list[_RedisWatch] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> RedisStore:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise UnsupportedStoreURL(f"not a redis:// URL: {redact_url(url)}")
        query = parse_qsl(parts.query)
        prefix = next((v for k, v in query if k == "prefix"), "flagstaff")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        client = redis.Redis.from_url(
            urlunsplit(parts._replace(query=rest)),
            decode_responses=True,
            # A value that is not UTF-8 (written with redis-cli) keeps its bytes as lone
            # surrogates (like stores.base.decode_raw): that one document is then refused and
            # named by the client, instead of failing load() or being read with U+FFFD in it.
            encoding_errors="surrogateescape",
            socket_timeout=3.0,
            socket_connect_timeout=2.0,
            # No hidden retries: a failure reaches our own bounded backoff and resync at once.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, prefix, url=redact_url(url), runtime=runtime)

    # -- reads --------------------------------------------------------------------------------

    def load(self) -> StoreState:
        with _errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self._flags).hgetall(self._versions).get(self._revision).exists(self._marker)
            flags, versions, revision, marker = pipe.execute()
        # A field name that is not UTF-8 (redis-cli can write one) names no flag: skipped.
        records = {
            name: Record(name, raw, _version(versions.get(name)))
            for name, raw in flags.items()
            if is_text(name)
        }
        if len(records) != len(flags):
            log.warning("Redis store %s holds flag names that are not UTF-8 text: ignored", self.url)
        return StoreState(int(revision or 0), MappingProxyType(records), bool(marker))

    def get(self, name: str) -> Record | None:
        with _errors():
            pipe = self._client.pipeline(transaction=True)
            raw, version = pipe.hget(self._flags, name).hget(self._versions, name).execute()
        return None if raw is None else Record(name, raw, _version(version))

    # -- writes -------------------------------------------------------------------------------

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        record = self.put_many([Write(name, raw, expect)], author=author)[0]
        assert record is not None
        return record

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        self.put_many([Write(name, None, expect)], author=author)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        """Compare-and-set writes, all or none: ``WATCH`` the revision, read, then ``MULTI``/``EXEC``.

        Every write bumps the revision (one per flag: a ``put_many`` of n flags moves it by n,
        each change with its own notice and history entry), so watching it serializes all
        writers. The watch and the reads go out as one pipelined batch on one connection, and
        the transaction as a second: two round trips (redis-py's watching pipeline sends each
        read on its own).
        """
        check_writes(writes)
        if not writes:
            return []
        names = [w.name for w in writes]
        what = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        pool = self._client.connection_pool
        with _errors():
            for _ in range(_CAS_ATTEMPTS):
                conn = pool.get_connection()
                try:
                    replies = _roundtrip(
                        conn,
                        [
                            ("WATCH", self._revision),
                            ("HMGET", self._flags, *names),
                            ("HMGET", self._versions, *names),
                            ("GET", self._revision),
                            ("EXISTS", self._marker),
                        ],
                    )
                    _, olds, versions, current_text, marker = replies
                    actuals = [
                        0 if old is None else _version(v) for old, v in zip(olds, versions, strict=True)
                    ]
                    refused = _refusal(writes, olds, actuals)
                    if refused is not None:
                        _roundtrip(conn, [("UNWATCH",)])
                        raise refused
                    current = int(current_text or 0)
                    # A wiped (or new) namespace restarts from the clock, above any revision it had.
                    first = current + 1 if marker else max(current + 1, time.time_ns() // 1000)
                    last = first + len(writes) - 1
                    ops: list[tuple[Any, ...]] = [("SET", self._revision, last), ("SET", self._marker, "1")]
                    out: list[Record | None] = []
                    for i, (w, old, actual) in enumerate(zip(writes, olds, actuals, strict=True)):
                        revision, prev = first + i, (current if i == 0 else first + i - 1)
                        if w.raw is None:
                            ops += [
                                ("HDEL", self._flags, w.name),
                                ("HDEL", self._versions, w.name),
                                ("HDEL", self._sums, w.name),
                            ]
                            out.append(None)
                            version: int | None = None
                        else:
                            version = actual + 1
                            ops += [
                                ("HSET", self._flags, w.name, w.raw),
                                ("HSET", self._versions, w.name, version),
                                ("HSET", self._sums, w.name, _sum(w.raw)),
                            ]
                            out.append(Record(w.name, w.raw, version))
                        more = len(writes) - 1 - i
                        ops += self._log_ops(w.name, version, (revision, prev), author, old, w.raw, more)
                    transaction = [("MULTI",), *ops, ("EXEC",)]
                    conn.send_packed_command(conn.pack_commands(transaction))
                    # Sent whole: from here a lost answer leaves the write maybe applied (Redis
                    # runs a transaction once EXEC is in), so it is never sent again.
                    try:
                        committed = _read_replies(conn, len(transaction))[-1]
                    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                        raise WriteOutcomeUnknown(
                            f"outcome unknown: writing {what} to {self.url}: Redis's answer "
                            f"was lost ({exc}); the write may have been applied"
                        ) from exc
                except (NotFoundError, ConflictError):
                    raise  # refused after UNWATCH: the connection is clean, it goes back to the pool
                except BaseException:
                    conn.disconnect()  # in an unknown state (half-read replies, a WATCH in place)
                    raise
                finally:
                    pool.release(conn)
                if committed is not None:  # None: the revision moved after WATCH; try again
                    return out
        raise StoreUnavailable(f"writing {what}: too many concurrent writers, gave up")

    def _log_ops(  # noqa: PLR0913 (the fields of one change)
        self,
        name: str,
        version: int | None,
        revisions: tuple[int, int],
        author: str | None,
        before: str | None,
        after: str | None,
        more: int = 0,
    ) -> list[tuple[Any, ...]]:
        # "prev" chains each change to the one before it, so a watch can tell a complete replay.
        revision, prev = revisions
        entry = HistoryEntry(name, revision, version, time.time(), author, before, after)
        notice: dict[str, Any] = {"n": name, "r": revision, "p": prev, "v": version, "d": after}
        fields = entry_fields(entry, with_revision=True, prev=prev)
        if more:  # changes of the same put_many still to come (Change.more)
            notice["m"] = more
            fields["more"] = more
        return [
            ("LPUSH", self._history, json.dumps(fields)),
            ("LTRIM", self._history, 0, HISTORY_LIMIT - 1),
            ("PUBLISH", self._channel, json.dumps(notice)),
        ]

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        with _errors():
            items = self._client.lrange(self._history, 0, -1)
        entries: list[HistoryEntry] = []
        for item in items:
            try:
                entry = decode_entry(item)
            except ValueError as exc:
                log.warning("skipping an unreadable Redis history entry: %s", exc)
                continue
            if name is None or entry.name == name:
                entries.append(entry)
                if len(entries) >= limit:
                    break
        return entries

    # -- watch --------------------------------------------------------------------------------

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        w = _RedisWatch(self, on_event, since)
        with self._lock:
            self._watches.append(w)
        return w

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watches, self._watches = self._watches, []
        for w in watches:
            w.stop()
        self._client.close()

    def _hand_edits(self) -> dict[str, str]:
        """Flags whose text is not what flagstaff last wrote: name -> SHA-1 of the text now
        ("" when the text is gone). See the module doc."""
        with _errors():
            _, out = self._content_script(keys=[self._flags, self._sums, self._revision])
        return {str(out[i]): str(out[i + 1]) for i in range(0, len(out), 2)}

    def _current_revision(self) -> int:
        with _errors():
            return int(self._client.get(self._revision) or 0)


class _RedisWatch:
    """One subscriber task: pub/sub notices, checked against the revision counter."""

    def __init__(self, store: RedisStore, on_event: Callable[[WatchEvent], None], since: int) -> None:
        self._store = store
        self._runtime = store._runtime
        self._queue = InlineDelivery(self._runtime, on_event)
        self._last = since  # the newest revision delivered (or covered by a Reset)
        self._contact = time.time()  # when Redis last answered on the pub/sub connection
        self._lost = False  # Disconnected delivered: a Resumed or a Reset is owed once subscribed again
        self._edits: dict[str, str] | None = None  # hand edits known at the last content check
        self._content_checks = True  # off if the server refuses scripts
        self._stop = self._runtime.event()
        self._task = self._runtime.spawn(self._run, name="flagstaff-redis-watch")

    def _run(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            pubsub = self._store._client.pubsub()
            try:
                self._follow(pubsub, backoff)
            except (redis.RedisError, StoreError, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning("Redis watch on %s interrupted: %s", self._store.url, exc)
                if not self._lost:  # once per outage: notices may be missed until Resumed or Reset
                    self._lost = True
                    self._queue.push(Disconnected(f"Redis: {exc}", self._contact))
            finally:
                try:
                    pubsub.close()
                except (redis.RedisError, OSError) as exc:
                    log.debug("closing a broken Redis pub/sub connection: %s", exc)
            if backoff.wait(self._stop):
                break

    def _follow(self, pubsub: Any, backoff: Backoff) -> None:
        store = self._store
        pubsub.subscribe(store._channel, store._keyspace)
        deadline = time.monotonic() + 3.0
        confirmed = 0
        while confirmed < 2:  # wait for the confirmations: only then can no notice slip by unseen
            message = pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1
                continue
            if self._stop.is_set():
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable("Redis did not confirm the subscription")
        backoff.reset()
        current = store._current_revision()
        self._contact = time.time()
        if self._lost:
            self._regain(current)
        else:
            self._check(current, "subscribed")
            self._edits = None  # a new baseline: the subscriber's next load reads any hand edit
            self._check_content()
        last_heard = last_check = last_content = time.monotonic()
        content_due = False  # the flags key changed (keyspace notification): check when quiet
        suspect = 0  # a revision the counter showed that no notice has delivered yet
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=0.25)
            now = time.monotonic()
            if message is not None:
                if message.get("type") == "message":
                    if message.get("channel") == store._keyspace:
                        content_due = True
                    else:
                        self._on_notice(message.get("data"))  # delivers inline: not silence
                now = last_heard = time.monotonic()
                self._contact = time.time()
            if (content_due and message is None) or now - last_content >= CONTENT_INTERVAL:
                content_due = False
                last_content = now
                self._check_content()
            if now - last_check >= RECONCILE_INTERVAL:
                last_check = now
                current = store._current_revision()
                if current < self._last or (suspect and self._last < suspect):
                    self._check(current, "a notice was lost" if current >= self._last else "store wiped")
                    suspect = 0
                else:
                    suspect = current if current > self._last else 0
                pubsub.ping()
            if now - last_heard > _SILENCE_LIMIT:
                raise StoreUnavailable("the Redis pub/sub connection went silent")

    def _regain(self, current: int) -> None:
        """Back after an outage the subscriber was told of (subscribed again, counter read):
        replay what the notices missed, then Resumed when that is provably all of it: the
        history chain reached back to the last delivered revision, and the hand-edit check
        finds no flag edited by hand since the one before the outage. Otherwise Reset."""
        self._lost = False
        complete = self._check(current, "reconnected")
        if not complete:
            self._edits = None  # the Reset reloads everything, hand edits included
            self._check_content()
            return
        baseline = self._edits
        if baseline is None or not self._content_checks:
            # Nothing to compare hand edits against: the subscriber reloads.
            self._queue.push(Reset("reconnected to Redis"))
            self._edits = None
            self._check_content()
            return
        if self._check_content():
            return  # a hand edit during the outage: Reset delivered
        if not self._content_checks:  # the server refused the check just now
            self._queue.push(Reset("reconnected to Redis"))
            return
        self._queue.push(Resumed("reconnected to Redis; the missed notices were replayed from history"))

    def _check_content(self) -> bool:
        """Reset when the set of flags edited by hand changed since the last check; whether
        it delivered that Reset."""
        if not self._content_checks:
            return False
        try:
            edits = self._store._hand_edits()
        except StoreError as exc:
            if isinstance(exc.__cause__, redis.ResponseError):  # scripting disabled, say
                log.warning(
                    "Redis store %s: cannot check for values edited by hand: %s", self._store.url, exc
                )
                self._content_checks = False
                return False
            raise
        if self._edits is not None and edits.items() - self._edits.items():
            names = sorted(name for name, _ in edits.items() - self._edits.items())
            log.warning(
                "Redis store %s: flags changed without flagstaff (by hand?): %s",
                self._store.url,
                ", ".join(names[:10]),
            )
            self._queue.push(Reset(f"flags changed in Redis without flagstaff: {', '.join(names[:10])}"))
            self._edits = edits
            return True
        self._edits = edits
        return False

    def _check(self, current: int, why: str) -> bool:
        """Catch up when the counter is not where the notices left us: replay, else Reset;
        whether every change up to ``current`` was delivered (False: a Reset was)."""
        if current == self._last:
            return True
        if 0 <= current < self._last:
            # Wiped: tell the subscriber now (it will find the store empty and unmarked), and
            # again at the first write after (-1 matches no "prev"), which re-initializes it.
            log.warning("Redis store %s wiped (revision %d, had %d)", self._store.url, current, self._last)
            self._queue.push(Reset("the Redis store was wiped"))
            self._last = current if current else -1
            return False
        replay = self._replay(current) if current > self._last else None
        if replay is not None:
            log.debug(
                "Redis watch on %s: %s; replayed %d changes from history", self._store.url, why, len(replay)
            )
            for change in replay:
                self._queue.push(change)
        else:
            log.info(
                "Redis watch on %s: %s; revision %d, last delivered %d: reset",
                self._store.url,
                why,
                current,
                self._last,
            )
            self._queue.push(Reset(f"Redis revision moved outside notices ({why})"))
            self._last = current
            return False
        self._last = current
        return True

    def _replay(self, current: int) -> list[Change] | None:
        """The changes in (last, current] from the history list, if it holds every one of them.

        Each entry names the revision before it (``prev``): the chain from ``current`` back
        to the last delivered revision must be unbroken, or something was written out of band.
        """
        try:
            with _errors():
                items = self._store._client.lrange(self._store._history, 0, HISTORY_LIMIT - 1)
            chain: list[dict[str, Any]] = []
            want = current
            for item in items:  # newest first
                entry = json.loads(item)
                revision = int(entry["revision"])
                if revision > want:
                    continue
                if revision < want:
                    return None
                chain.append(entry)
                want = int(entry["prev"])
                if want == self._last:
                    return [_change(e) for e in reversed(chain)]
                if want < self._last:
                    return None
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable Redis history, falling back to a reset: %s", exc)
            return None

    def _on_notice(self, data: Any) -> None:
        try:
            notice = json.loads(data)
            name, revision, prev = str(notice["n"]), int(notice["r"]), int(notice["p"])
            version, text, more = notice.get("v"), notice.get("d"), int(notice.get("m", 0))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed Redis change notice: %s", exc)
            return
        if revision <= self._last:
            return
        if prev != self._last:
            self._check(revision, "notices were missed")
            return
        self._last = revision
        record = None if text is None else Record(name, str(text), int(version or 1))
        self._queue.push(Change(name, record, revision, more))

    def stop(self) -> None:
        self._stop.set()
        self._queue.stop()
        self._task.join(1.0)


def _sum(raw: str) -> str:
    """What ``redis.sha1hex`` gives for the stored bytes of ``raw``."""
    return hashlib.sha1(raw.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


def _change(entry: dict[str, Any]) -> Change:
    name, after = str(entry["name"]), entry.get("after")
    record = None if after is None else Record(name, str(after), int(entry["version"]))
    return Change(name, record, int(entry["revision"]), int(entry.get("more", 0)))


def _refusal(writes: Sequence[Write], olds: list[str | None], actuals: list[int]) -> StoreError | None:
    """The error the first write whose expectation the store fails raises, if any."""
    for w, old, actual in zip(writes, olds, actuals, strict=True):
        if w.raw is None and old is None:
            return NotFoundError(w.name)
        if w.expect is not None and actual != w.expect:
            return ConflictError(w.name, w.expect, actual)
    return None


def _roundtrip(conn: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` pipelined on ``conn`` and read every reply (errors raise after all are read)."""
    conn.send_packed_command(conn.pack_commands(commands))
    return _read_replies(conn, len(commands))


def _read_replies(conn: Any, count: int) -> list[Any]:
    """Read ``count`` replies from ``conn`` (errors raise after all are read)."""
    replies: list[Any] = []
    error: redis.ResponseError | None = None
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            error = error or exc
            replies.append(exc)
    if error is not None:
        raise error
    return replies


def _version(value: Any) -> int:
    # A flag written out of band (HSET without a version) counts as version 1.
    return int(value) if value else 1


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except redis.AuthenticationError as exc:
        # Wrong credentials are a configuration error, not an outage: StoreError, not Unavailable.
        raise StoreError(f"Redis refused the credentials ({type(exc).__name__})") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise StoreUnavailable(f"Redis unreachable: {exc}") from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc) or "NOPERM" in str(exc):
            raise StoreError("Redis refused the credentials (missing, wrong, or not allowed)") from None
        raise StoreError(f"Redis error: {exc}") from exc
