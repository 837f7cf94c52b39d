"""``etcd://[user:pass@]host:port[,host:port...]/prefix``: flags in etcd v3.

Layout under ``<prefix>``::

    <prefix>/<flag>                          the flag document (any etcd client may write it)
    <prefix>/.flagstaff/initialized          the marker written with every change through flagstaff
    <prefix>/.flagstaff/history/<time>-<id>  one history entry (JSON), bounded to HISTORY_LIMIT

Versions: a flag's version is etcd's per-key ``version`` (1 on creation, +1 per
write, as the Store protocol asks). Writes read the key, then commit in a
transaction guarded by its ``mod_revision`` (so the history entry records the
exact text it replaced); the store revision is etcd's header revision.

Watches: one prefix watch, resumed from the last seen revision after any
disconnect (etcd replays what happened meanwhile). The outage itself is told
(:class:`Disconnected`), and once the stream is back and has replayed up to the
marker's revision read when it was re-created (the last write through flagstaff),
:class:`Resumed`: the subscriber missed nothing and need not reload. If that
revision has been compacted, the store re-lists at one consistent revision,
delivers :class:`Reset` and watches again from there; with no marker to compare
against (a wiped or never written prefix) the reconnect is a ``Reset`` too. A
watchdog probes the cluster every two seconds (a failed probe is tried once more
at once before contact counts as lost) and restarts a stream that has gone
silent while the prefix moved on (a half-open connection).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from flagstaff.document import printable_text
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
from flagstaff.stores._etcdv3 import Gateway, KeyValue, WatchStream, b64, prefix_end
from flagstaff.stores._history import HISTORY_LIMIT, decode_entry, encode_entry, entries_to_trim
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
    is_text,
)

__all__ = ["HISTORY_LIMIT", "MAX_WRITES", "EtcdStore"]

log = logging.getLogger("flagstaff.stores.etcd")

#: Writes one ``put_many`` may hold: each flag is one operation of the transaction, plus
#: the history key and the marker, within etcd's default ``--max-txn-ops`` of 128.
MAX_WRITES = 126
_TRIM_EVERY = 50  # writes between two history trims (each trim is two requests)
_CAS_ATTEMPTS = 32
_PROBE_INTERVAL = 2.0
# A failed probe is tried again at once with this timeout before contact counts as lost: a
# probe answered late by a starved machine must not restart a healthy stream. Bound: a cut
# just after an answered probe is told within 2 + 2 + 1.5 s, inside the stated 6 s.
_PROBE_RETRY_TIMEOUT = 1.5
_LOAD_PAGE = 1000  # keys per request when listing a namespace (load)
_HISTORY_ROOT = "/.flagstaff/history"  # + the prefix: "/.flagstaff/history/flags/<time>-<hex>"
_SEEN_LIMIT = 10_000  # flags whose last known state a store remembers for its next write
_UNKNOWN: Any = object()


class EtcdStore:
    """Flags under one etcd key prefix. Thread- and greenlet-safe."""

    def __init__(  # noqa: PLR0913 (keyword-only connection options)
        self,
        endpoints: list[tuple[str, int]],
        prefix: str,
        *,
        user: str | None = None,
        password: str | None = None,
        runtime: Runtime | None = None,
        timeout: float = 3.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        prefix = "/" + prefix.strip("/")
        hosts = ",".join(f"{h}:{p}" for h, p in endpoints)
        scheme = "etcds" if tls is not None else "etcd"
        self.url = f"{scheme}://{user + ':***@' if user else ''}{hosts}{prefix}"
        self._runtime = runtime or default_runtime()
        self._gw = Gateway(endpoints, self._runtime, user=user, password=password, timeout=timeout, tls=tls)
        self._root = prefix.rstrip("/") + "/"  # "/a" -> "/a/"; "/" -> "/"
        self._meta = self._root + ".flagstaff/"
        self._marker = self._meta + "initialized"
        # The history lives outside the watched prefix: every watch stream would otherwise carry
        # each write's entry (its texts before and after) to every process, and etcd encodes
        # each stream's JSON on its own: with 50 watching processes that doubled the p99.
        self._history = _HISTORY_ROOT + self._root
        self._writes = 0
        self._seen: dict[str, KeyValue] = {}  # key -> its last state written or seen here
        self._lock = self._runtime.lock()
        self._watches: list[_EtcdWatch] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> EtcdStore:
        parts = urlsplit(url)
        if parts.scheme not in ("etcd", "etcds"):
            raise UnsupportedStoreURL(f"not an etcd:// URL: {redact_url(url)}")
        options = _options(parts.query, url)
        timeout = options.pop("timeout", "3")
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 600:
            raise UnsupportedStoreURL(f"etcd URL: timeout must be seconds in (0, 600], not {timeout!r}")
        tls = _tls_context(parts.scheme == "etcds", options, url)
        userinfo, _, hostlist = parts.netloc.rpartition("@")
        user = password = None
        if userinfo:
            raw_user, _, raw_password = userinfo.partition(":")
            user, password = unquote(raw_user), unquote(raw_password)
        endpoints: list[tuple[str, int]] = []
        for item in hostlist.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise UnsupportedStoreURL(f"etcd URL needs host:port endpoints: {redact_url(url)}")
            endpoints.append((host.strip("[]"), int(port)))
        return cls(
            endpoints,
            parts.path or "/flagstaff",
            user=user,
            password=password,
            runtime=runtime,
            timeout=seconds,
            tls=tls,
        )

    # -- reads --------------------------------------------------------------------------------

    def load(self) -> StoreState:
        # One transaction, so three ranges at one revision: the flags before and after the
        # ".flagstaff/" meta range (names cannot start with ".", but keys written by others may).
        # Paged (as Kubernetes' reflector lists etcd): a 10,000-key range is one reply etcd
        # builds whole before its first byte, and twenty processes reloading at once on a busy
        # machine waited longer than the request timeout for it, failed, backed off and tried
        # again (20-30 s to resync). Each page is quick; later pages read at the first page's
        # revision, so the whole listing is still one consistent state.
        ends = (b64(self._meta), prefix_end(self._root))
        reply = self._gw.call(
            "kv/txn",
            {
                "success": [
                    {
                        "request_range": {
                            "key": b64(self._root),
                            "range_end": ends[0],
                            "limit": str(_LOAD_PAGE),
                        }
                    },
                    {
                        "request_range": {
                            "key": prefix_end(self._meta),
                            "range_end": ends[1],
                            "limit": str(_LOAD_PAGE),
                        }
                    },
                    {"request_range": {"key": b64(self._marker), "count_only": True}},
                ]
            },
        )
        revision = _revision(reply)
        responses = reply.get("responses", [])
        records: dict[str, Record] = {}
        for end, response in zip(ends, responses[:2], strict=True):
            page = response.get("response_range", {})
            while True:
                last: str | None = None
                for raw_kv in page.get("kvs", []):
                    kv = KeyValue.parse(raw_kv)
                    last = kv.key
                    record = self._record(kv)
                    if record is not None:
                        records[record.name] = record
                if not page.get("more") or last is None:
                    break
                page = self._gw.call(
                    "kv/range",
                    {
                        "key": b64(last + "\0"),
                        "range_end": end,
                        "limit": str(_LOAD_PAGE),
                        "revision": str(revision),
                    },
                )
        initialized = int(responses[2].get("response_range", {}).get("count", 0)) > 0
        return StoreState(revision, MappingProxyType(records), initialized)

    def get(self, name: str) -> Record | None:
        kv = self._get(self._key(name))
        return None if kv is None else self._record(kv)

    def _get(self, key: str) -> KeyValue | None:
        reply = self._gw.call("kv/range", {"key": b64(key)})
        kvs = reply.get("kvs", [])
        return KeyValue.parse(kvs[0]) if kvs else None

    # -- writes -------------------------------------------------------------------------------

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        key = self._key(name)
        old, fresh = self._known(key)
        for _ in range(_CAS_ATTEMPTS):
            actual = old.version if old else 0
            if expect is not None and actual != expect:
                if not fresh:  # judged on a remembered value: ask the server before refusing
                    old, fresh = self._get(key), True
                    continue
                raise ConflictError(name, expect, actual)
            before = decode_raw(old.value) if old else None
            ops = [
                {"request_put": {"key": b64(key), "value": b64(raw)}},
                *self._log_ops(name, actual + 1, author, before, raw),
            ]
            revision, current = self._commit(key, old, ops)
            if revision:
                created = old.create_revision if old else revision
                self._remember(KeyValue(key, raw.encode(), actual + 1, revision, created))
                return Record(name, raw, actual + 1)
            old, fresh = current, True
        raise StoreUnavailable(f"flag {name!r}: too many concurrent writers, gave up")

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        key = self._key(name)
        old, fresh = self._known(key)
        for _ in range(_CAS_ATTEMPTS):
            if old is None or (expect is not None and old.version != expect):
                if not fresh:
                    old, fresh = self._get(key), True
                    continue
                if old is None:
                    raise NotFoundError(name)
                raise ConflictError(name, expect, old.version)
            ops = [
                {"request_delete_range": {"key": b64(key)}},
                *self._log_ops(name, None, author, decode_raw(old.value), None),
            ]
            revision, current = self._commit(key, old, ops)
            if revision:
                self._forget(key)
                return
            old, fresh = current, True
        raise StoreUnavailable(f"flag {name!r}: too many concurrent writers, gave up")

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        """Apply ``writes`` in one etcd transaction: all or none, at one revision.

        The transaction compares every flag's ``mod_revision`` (``create_revision`` 0 for one
        expected absent) and, when all hold, writes the flags, one history key holding the
        entries of them all, and the marker: ``len(writes) + 2`` operations, within etcd's
        ``--max-txn-ops`` (128 by default) for at most :data:`MAX_WRITES` writes.
        """
        check_writes(writes)
        if not writes:
            return []
        if len(writes) > MAX_WRITES:
            raise StoreError(
                f"put_many of {len(writes)} flags: one etcd transaction holds at most {MAX_WRITES} "
                f"(etcd's --max-txn-ops, 128 by default, counts each flag, the history and the marker); "
                "write them in smaller batches"
            )
        keys = [self._key(w.name) for w in writes]
        known = [self._known_if_remembered(k) for k in keys]
        missing = [k for k, kv in zip(keys, known, strict=True) if kv is _UNKNOWN]
        read = self._get_many(missing) if missing else {}
        olds: dict[str, KeyValue | None] = {
            k: read.get(k) if kv is _UNKNOWN else kv for k, kv in zip(keys, known, strict=True)
        }
        fresh = set(missing)
        for _ in range(_CAS_ATTEMPTS):
            refused = self._refusal(writes, keys, olds)
            if refused is not None:
                if set(keys) - fresh:  # judged on remembered values: ask the server before refusing
                    olds, fresh = self._get_many(keys), set(keys)
                    continue
                raise refused
            ops: list[dict[str, Any]] = []
            entries: list[HistoryEntry] = []
            now = time.time()
            for w, k in zip(writes, keys, strict=True):
                old = olds[k]
                before = decode_raw(old.value) if old else None
                if w.raw is None:
                    ops.append({"request_delete_range": {"key": b64(k)}})
                    entries.append(HistoryEntry(w.name, 0, None, now, author, before, None))
                else:
                    ops.append({"request_put": {"key": b64(k), "value": b64(w.raw)}})
                    version = (old.version if old else 0) + 1
                    entries.append(HistoryEntry(w.name, 0, version, now, author, before, w.raw))
            ops += self._history_ops(entries)
            revision, current = self._commit_many(olds, ops)
            if revision:
                out: list[Record | None] = []
                for w, k in zip(writes, keys, strict=True):
                    old = olds[k]
                    if w.raw is None:
                        self._forget(k)
                        out.append(None)
                        continue
                    version = (old.version if old else 0) + 1
                    created = old.create_revision if old else revision
                    self._remember(KeyValue(k, w.raw.encode(), version, revision, created))
                    out.append(Record(w.name, w.raw, version))
                return out
            olds, fresh = current, set(keys)
        raise StoreUnavailable(f"put_many of {len(writes)} flags: too many concurrent writers, gave up")

    @staticmethod
    def _refusal(
        writes: Sequence[Write], keys: list[str], olds: dict[str, KeyValue | None]
    ) -> StoreError | None:
        """The error the first write whose expectation ``olds`` fails raises, if any."""
        for w, k in zip(writes, keys, strict=True):
            old = olds[k]
            actual = old.version if old else 0
            if w.raw is None and old is None:
                return NotFoundError(w.name)
            if w.expect is not None and actual != w.expect:
                return ConflictError(w.name, w.expect, actual)
        return None

    def _get_many(self, keys: list[str]) -> dict[str, KeyValue | None]:
        """The keys as they are now, read at one revision (one transaction of ranges)."""
        reply = self._gw.call("kv/txn", {"success": [{"request_range": {"key": b64(k)}} for k in keys]})
        out: dict[str, KeyValue | None] = dict.fromkeys(keys)
        for response in reply.get("responses", []):
            for raw_kv in response.get("response_range", {}).get("kvs", []):
                kv = KeyValue.parse(raw_kv)
                out[kv.key] = kv
        return out

    # A write needs the flag as it stands (its version, and the text the history keeps as
    # "before"). The value this process last wrote or saw is usually still current, so the
    # write is one transaction, conditional on that value's mod_revision; when someone else
    # wrote meanwhile the transaction fails and its failure branch returns the key as it
    # is now, to try again with. A write costs one round trip instead of a read and a write.

    def _known(self, key: str) -> tuple[KeyValue | None, bool]:
        """The key's remembered state and False, else its state read now and True."""
        kv = self._seen.get(key, _UNKNOWN)
        if kv is _UNKNOWN:
            return self._get(key), True
        return kv, False

    def _known_if_remembered(self, key: str) -> Any:
        """The key's remembered state (None: known absent), or ``_UNKNOWN``."""
        return self._seen.get(key, _UNKNOWN)

    def _remember(self, kv: KeyValue) -> None:
        seen = self._seen
        held = seen.get(kv.key)
        if held is not None and held.mod_revision >= kv.mod_revision:
            return
        if len(seen) >= _SEEN_LIMIT:
            seen.clear()  # bounded: a miss only costs the read it saves
        seen[kv.key] = kv

    def _forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def _commit(
        self, key: str, old: KeyValue | None, ops: list[dict[str, Any]]
    ) -> tuple[int, KeyValue | None]:
        """Apply ``ops`` if ``key`` is still as ``old`` (by ``mod_revision``; None: absent).

        Returns the commit's revision and None, or 0 and the key as it is now.
        """
        revision, current = self._commit_many({key: old}, ops)
        return revision, current.get(key)

    def _commit_many(
        self, olds: dict[str, KeyValue | None], ops: list[dict[str, Any]]
    ) -> tuple[int, dict[str, KeyValue | None]]:
        """Apply ``ops`` if every key of ``olds`` is still as given (by ``mod_revision``;
        None: absent). Returns the commit's revision and ``{}``, or 0 and the keys as they
        are now."""
        compares = []
        for key, old in olds.items():
            if old is None:
                compares.append(
                    {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                )
            else:
                compares.append(
                    {
                        "key": b64(key),
                        "target": "MOD",
                        "result": "EQUAL",
                        "mod_revision": str(old.mod_revision),
                    }
                )
        failure = [{"request_range": {"key": b64(key)}} for key in olds]
        try:
            reply = self._gw.call(
                "kv/txn", {"compare": compares, "success": ops, "failure": failure}, write=True
            )
        except WriteOutcomeUnknown:
            for key in olds:
                self._forget(key)  # whatever we remembered may be what the lost write replaced
            raise
        if not reply.get("succeeded", False):
            current: dict[str, KeyValue | None] = {}
            for key, response in zip(olds, reply.get("responses") or [{}] * len(olds), strict=False):
                self._forget(key)
                kvs = response.get("response_range", {}).get("kvs", [])
                current[key] = KeyValue.parse(kvs[0]) if kvs else None
            return 0, current
        with self._lock:
            self._writes += 1
            trim = self._writes % _TRIM_EVERY == 0
        if trim:
            self._trim_history()
        return _revision(reply), {}

    def _log_ops(
        self, name: str, version: int | None, author: str | None, before: str | None, after: str | None
    ) -> list[dict[str, Any]]:
        return self._history_ops([HistoryEntry(name, 0, version, time.time(), author, before, after)])

    def _history_ops(self, entries: list[HistoryEntry]) -> list[dict[str, Any]]:
        """The history key of one write and the marker: two operations, however many flags.

        The key sorts by time; its entries' revision is the key's own mod_revision (the
        commit's). A ``put_many`` of several flags keeps their entries in one key, as a JSON
        list (etcd caps the operations of a transaction)."""
        hkey = f"{self._history}{time.time_ns():020d}-{os.urandom(4).hex()}"
        if len(entries) == 1:
            value = encode_entry(entries[0])
        else:
            value = "[" + ",".join(encode_entry(e) for e in entries) + "]"
        return [
            {"request_put": {"key": b64(hkey), "value": b64(value)}},
            {"request_put": {"key": b64(self._marker), "value": b64("1")}},
        ]

    def _trim_history(self) -> None:
        try:
            count = int(
                self._gw.call(
                    "kv/range",
                    {"key": b64(self._history), "range_end": prefix_end(self._history), "count_only": True},
                ).get("count", 0)
            )
            excess = entries_to_trim(count, HISTORY_LIMIT)
            if not excess:
                return
            reply = self._gw.call(
                "kv/range",
                {
                    "key": b64(self._history),
                    "range_end": prefix_end(self._history),
                    "keys_only": True,
                    "limit": str(excess),
                    "sort_order": "ASCEND",
                    "sort_target": "KEY",
                },
            )
            keys = [KeyValue.parse(kv).key for kv in reply.get("kvs", [])]
            if keys:
                self._gw.call("kv/deleterange", {"key": b64(keys[0]), "range_end": b64(keys[-1] + "\0")})
        except StoreError as exc:
            log.warning("etcd history trim failed (will retry later): %s", exc)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        reply = self._gw.call(
            "kv/range",
            {
                "key": b64(self._history),
                "range_end": prefix_end(self._history),
                "sort_order": "DESCEND",
                "sort_target": "MOD",
            },
        )
        entries: list[HistoryEntry] = []
        for raw_kv in reply.get("kvs", []):
            kv = KeyValue.parse(raw_kv)
            try:
                found = _decode_entries(kv.value, kv.mod_revision)
            except ValueError as exc:
                log.warning("skipping unreadable etcd history entry %s: %s", kv.key, exc)
                continue
            # A put_many's entries share one key and revision: newest first means the last first.
            entries += [e for e in reversed(found) if name is None or e.name == name]
            if len(entries) >= limit:
                break
        return entries[:limit]

    # -- watch --------------------------------------------------------------------------------

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        w = _EtcdWatch(self, on_event, since)
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
        self._gw.close()

    # -- helpers ------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self._root + name

    def _record(self, kv: KeyValue) -> Record | None:
        """The flag a key holds, or None for keys that are not flags (meta, nested)."""
        name = kv.key[len(self._root) :]
        if not kv.key.startswith(self._root) or not name or "/" in name or name.startswith("."):
            return None
        if not is_text(name):
            log.warning("etcd key %s is not UTF-8 text, so no flag name: ignored", printable_text(kv.key))
            return None
        # A value that is not UTF-8 is still this flag: one bad document, refused by the
        # client and named, rather than a flag that silently vanishes.
        return Record(name, decode_raw(kv.value), kv.version)

    def _marker_revision(self, timeout: float = _PROBE_INTERVAL) -> tuple[int, int]:
        """The revision of the last write through flagstaff (every one rewrites the marker), and
        the cluster's current revision; O(1)."""
        reply = self._gw.call("kv/range", {"key": b64(self._marker), "keys_only": True}, timeout=timeout)
        kvs = reply.get("kvs", [])
        return (KeyValue.parse(kvs[0]).mod_revision if kvs else 0), _revision(reply)


class _EtcdWatch:
    """A prefix watch: a reader task following the stream, and a watchdog task probing it."""

    def __init__(self, store: EtcdStore, on_event: Callable[[WatchEvent], None], since: int) -> None:
        self._store = store
        self._runtime = store._runtime
        self._queue = InlineDelivery(self._runtime, on_event)
        self._next = since + 1  # the first revision not yet delivered
        self._rewound = False  # the watchdog saw the cluster's revision below what was delivered
        self._stop = self._runtime.event()
        self._lock = self._runtime.lock()
        self._stream: WatchStream | None = None
        self._contact = time.time()  # when etcd last answered the stream or a probe
        self._lost = False  # Disconnected delivered: a Resumed or a Reset is owed once back
        # While lost, once the stream is re-created: the marker revision it must replay past
        # before Resumed (None: not known yet, so nothing is owed yet).
        self._resume_at: int | None = None
        self._contact_lock = self._runtime.lock()  # orders Disconnected before its Resumed/Reset
        self._reader = self._runtime.spawn(self._read_loop, name="flagstaff-etcd-watch")
        self._watchdog = self._runtime.spawn(self._probe_loop, name="flagstaff-etcd-watchdog")

    def _read_loop(self) -> None:
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                if self._rewound:
                    self._rewound = False
                    self._resync("the etcd cluster's revision went back (replaced or restored)")
                self._follow(backoff)
            except StoreError as exc:
                if self._stop.is_set():
                    break
                log.warning(
                    "etcd watch on %s interrupted (resuming at revision %d): %s",
                    self._store.url,
                    self._next,
                    exc,
                )
                self._lose(f"etcd watch: {exc}")
            if backoff.wait(self._stop):
                break

    def _follow(self, backoff: Backoff) -> None:
        store = self._store
        stream = store._gw.open_watch(
            {"key": b64(store._root), "range_end": prefix_end(store._root), "start_revision": str(self._next)}
        )
        with self._lock:
            if self._stop.is_set():
                stream.close()
                return
            self._stream = stream
        try:
            for message in stream:
                if "error" in message:
                    error = message["error"]
                    if isinstance(error, dict) and str(error.get("grpc_code", error.get("code", ""))) == "16":
                        store._gw.invalidate_token()
                    raise StoreUnavailable(f"etcd watch error: {error}")
                self._contact = time.time()
                result = message.get("result", {})
                if result.get("created"):
                    backoff.reset()
                    self._arm_resume()
                compacted = int(result.get("compact_revision", 0))
                if compacted:
                    self._resync(f"etcd compacted past revision {self._next - 1} (to {compacted})")
                    return
                if result.get("canceled"):
                    raise StoreUnavailable(f"etcd canceled the watch: {result.get('cancel_reason', '')}")
                if result.get("events"):
                    self._deliver(result["events"])
                    # After the replayed events, never before: Resumed says they all came.
                    self._regain()
        finally:
            with self._lock:
                self._stream = None
            stream.close()

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        store = self._store
        parsed = [(KeyValue.parse(e.get("kv", {})), e.get("type") == "DELETE") for e in events]
        # A revision that deletes the marker wiped the prefix (``etcdctl del --prefix``): its flag
        # deletions are not passed on one by one, only a Reset, so the subscriber can see the
        # store empty *and* unmarked and keep its last good flags.
        wiped = {kv.mod_revision for kv, deleted in parsed if deleted and kv.key == store._marker}
        changes: list[Change] = []
        for kv, deleted in parsed:
            if kv.mod_revision < self._next:
                continue  # already delivered before a reconnect
            if kv.key == store._marker:
                if deleted:
                    self._push(changes)  # what came before the wipe, in order
                    changes = []
                    self._queue.push(Reset("the etcd prefix was wiped (marker deleted)"))
            elif kv.mod_revision not in wiped:
                record = store._record(kv)
                if record is not None:
                    if deleted:
                        store._forget(kv.key)
                    elif store._writes:  # only a store that writes needs them (the server's)
                        store._remember(kv)
                    changes.append(Change(record.name, None if deleted else record, kv.mod_revision))
        self._push(changes)
        if parsed:
            self._next = max(self._next, max(kv.mod_revision for kv, _ in parsed) + 1)

    def _push(self, changes: list[Change]) -> None:
        """Deliver ``changes``. A transaction's events share its revision and come in one
        response (etcd never splits a revision): the changes of one put_many count down to
        the last of them."""
        left = collections.Counter(c.revision for c in changes)
        for change in changes:
            left[change.revision] -= 1
            self._queue.push(dataclasses.replace(change, more=left[change.revision]))

    def _resync(self, why: str) -> None:
        """Re-list at one consistent revision, tell the subscriber to reload, watch on from there."""
        state = self._store.load()
        log.warning("etcd watch on %s: %s; re-listed at revision %d", self._store.url, why, state.revision)
        with self._contact_lock:
            self._lost = False  # this Reset is the one owed after an outage too
            self._resume_at = None
            self._queue.push(Reset(why))
        self._next = state.revision + 1

    def _lose(self, why: str) -> None:
        """Tell the subscriber, once per outage, that changes may be missed for now."""
        with self._contact_lock:
            self._resume_at = None  # a new stream follows; it sets what it must replay
            if not self._lost:
                self._lost = True
                self._queue.push(Disconnected(why, self._contact))

    def _arm_resume(self) -> None:
        """A stream was created while contact counted as lost: read the marker's revision (the
        last write through flagstaff, O(1)); the stream replays from where it stopped, and once
        it is past that revision every change of the outage was delivered (:meth:`_regain`).
        Without a marker there is nothing to prove completeness against: Reset. Raises
        ``StoreError`` (the read loop treats it as a broken stream)."""
        with self._contact_lock:
            if not self._lost:
                return
        newest, _ = self._store._marker_revision()
        with self._contact_lock:
            if not self._lost:
                return
            if not newest:
                self._lost = False
                self._queue.push(Reset("reconnected to etcd; no marker to check the replay against"))
                return
            self._resume_at = newest
        self._regain()

    def _regain(self) -> None:
        """Resumed, once per outage, when the re-created stream has delivered every revision up
        to the one read when it was created: nothing was missed, the subscriber need not reload."""
        with self._contact_lock:
            if self._lost and self._resume_at is not None and self._next > self._resume_at:
                self._lost = False
                self._resume_at = None
                self._queue.push(Resumed(f"reconnected to etcd; replayed up to revision {self._next - 1}"))

    def _probe_loop(self) -> None:
        suspect = 0  # a revision the stream should have delivered by the next probe
        while not self._stop.wait(_PROBE_INTERVAL):
            # Taken before the probe is sent: the stream may deliver newer revisions while it is
            # out, and the probe's answer is only compared with what was delivered before it.
            delivered = self._next - 1
            try:
                newest, current = self._probe()
            except StoreError as exc:
                log.info("etcd probe failed twice for %s: %s", self._store.url, exc)
                self._lose(f"etcd probe: {exc}")
                self._abort_stream()
                suspect = 0
                continue
            self._contact = time.time()
            with self._lock:
                streaming = self._stream is not None
            if streaming:
                self._regain()
            if current and current < delivered:
                # Below a revision already delivered: a cluster rebuilt or restored from a
                # snapshot. The stream would wait for revisions it has passed: re-list instead.
                log.warning(
                    "etcd cluster of %s is at revision %d, below the %d delivered: replaced; re-listing",
                    self._store.url,
                    current,
                    delivered,
                )
                self._rewound = True
                self._abort_stream()
                suspect = 0
            elif suspect and self._next <= suspect:
                log.warning(
                    "etcd watch on %s silent while the prefix moved on; restarting it", self._store.url
                )
                self._abort_stream()
                suspect = 0
            elif newest >= self._next:
                suspect = newest
            else:
                suspect = 0

    def _probe(self) -> tuple[int, int]:
        """``_marker_revision``, tried once more at once (shorter timeout) if it fails."""
        try:
            return self._store._marker_revision()
        except StoreError as exc:
            if self._stop.is_set():
                raise
            log.debug("etcd probe failed for %s (trying again): %s", self._store.url, exc)
        return self._store._marker_revision(_PROBE_RETRY_TIMEOUT)

    def _abort_stream(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.abort()

    def stop(self) -> None:
        self._stop.set()
        self._queue.stop()
        self._abort_stream()
        # Bounded: the reader may sit in one request (timeout 3 s); it exits on its own after.
        self._watchdog.join(1.0)
        self._reader.join(1.0)


_TLS_OPTIONS = ("ca", "cert", "key")


def _options(query: str, url: str) -> dict[str, str]:
    """The URL's query options; an unknown one is refused (a typo must not pass silently)."""
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("timeout", *_TLS_OPTIONS):
            raise UnsupportedStoreURL(
                f"etcd URL: unknown option {key!r} (known: timeout, ca, cert, key): {redact_url(url)}"
            )
        options[key] = value
    return options


def _tls_context(tls: bool, options: dict[str, str], url: str) -> ssl.SSLContext | None:
    """``etcds://``: HTTPS to the gateway, verified against ``ca`` (else the system's
    authorities), with the client certificate ``cert``/``key`` when etcd asks for one."""
    given = [k for k in _TLS_OPTIONS if options.get(k)]
    if not tls:
        if given:
            named = ", ".join(given)
            raise UnsupportedStoreURL(f"etcd URL: {named} need the etcds:// scheme: {redact_url(url)}")
        return None
    if bool(options.get("cert")) != bool(options.get("key")):
        raise UnsupportedStoreURL(f"etcd URL: cert and key go together: {redact_url(url)}")
    try:
        context = ssl.create_default_context(cafile=options.get("ca") or None)
        if options.get("cert"):
            context.load_cert_chain(options["cert"], options["key"])
    except (OSError, ssl.SSLError) as exc:
        raise UnsupportedStoreURL(f"etcd URL: cannot load the TLS files: {exc}") from None
    return context


def _decode_entries(value: bytes, revision: int) -> list[HistoryEntry]:
    """The history entries one key holds: one entry, or a ``put_many``'s list of them.
    Raises ``ValueError`` for a value that is neither."""
    try:
        doc = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if isinstance(doc, list):
        return [decode_entry(item, revision) for item in doc]
    return [decode_entry(doc, revision)]


def _revision(reply: dict[str, Any]) -> int:
    return int(reply.get("header", {}).get("revision", 0))
