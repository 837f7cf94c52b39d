"""The ZooKeeper store: reads, compare-and-set writes with their history, and the connection.

Versions and revisions
    A flag's version is its znode ``dataVersion + 1`` (creation gives 1), and
    compare-and-set maps straight onto znode versions. The store revision is
    a ZooKeeper zxid: ``load()`` reports the largest ``mzxid`` of the flags and
    ``pzxid`` of the chroot (the zxid of the last create or delete below it).
    A watch delivers each change at the zxid that produced it, raised if need
    be to one more than the revision it delivered last, so revisions always
    increase even when watch notices and reads interleave.

Writes
    Each write is one ZooKeeper ``multi`` transaction: the flag (conditional
    on the version read just before, or on ``expect``) plus its history entry.
    :meth:`ZooKeeperStore.put_many` writes several flags (puts and deletes) in one
    transaction, each conditional on its version, with one history entry each.
    A document larger than :data:`MAX_ZNODE_BYTES` is refused with
    :class:`StoreError` before anything is sent (ZooKeeper's own 1 MB packet
    limit would otherwise drop the connection); documents are not chunked, so
    any ZooKeeper client still reads a flag as one node.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
    UnimplementedError,
)
from kazoo.protocol.states import WatchedEvent
from kazoo.retry import KazooRetry

from flagstaff.document import validate_name
from flagstaff.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    ValidationError,
    WriteOutcomeUnknown,
)
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._history import HISTORY_LIMIT, encode_entry, entries_to_trim
from flagstaff.stores._url import redact_url
from flagstaff.stores.base import HistoryEntry, Record, StoreState, Watch, WatchEvent, Write, check_writes
from flagstaff.stores.zookeeper._mirror import Mirror
from flagstaff.stores.zookeeper._options import KAZOO_LOG, REDACT, acl_for, parse_url
from flagstaff.stores.zookeeper._wire import (
    HANDSHAKE_TIMEOUT,
    HISTORY,
    HISTORY_PREFIX,
    MARKER,
    META,
    MULTI_READ_CHUNK,
    TRANSIENT,
    MultiRead,
    Node,
    bound_handshake,
    collect,
    handler_for,
    history_entry,
    is_flag_name,
    sequence,
)

__all__ = ["MAX_ZNODE_BYTES", "ZooKeeperStore"]

log = logging.getLogger("flagstaff.stores.zookeeper")

T = TypeVar("T")

#: Largest flag document accepted, in UTF-8 bytes. ZooKeeper refuses packets
#: over ``jute.maxbuffer`` (1 MiB by default) by dropping the connection; we
#: keep headroom for the path and the transaction around it.
MAX_ZNODE_BYTES = 1_000_000
#: The history entry is written in the same packet as the flag: it keeps the
#: texts before and after only while the whole packet stays under this.
_PACKET_BUDGET = 1_000_000
_HISTORY_SLACK = 100  # prune in batches, not on every write
_SEEN_LIMIT = 10_000  # flags whose last written state a store remembers for its next write
_UNKNOWN: Any = object()
# The deadline of the store operation running in this thread or greenlet (see _remaining).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("flagstaff_zk", default=None)


class ZooKeeperStore:
    """Flags in ZooKeeper, pushed by watches. See the module doc."""

    def __init__(self, url: str, *, runtime: Runtime | None = None) -> None:
        self._opts = parse_url(url)
        self.url = redact_url(url)
        self._runtime = runtime or default_runtime()
        self._root = self._opts.root
        self._meta = f"{self._root}/{META}"
        self._acl = acl_for(self._opts)
        auth = []
        if self._opts.user is not None:
            auth.append(("digest", f"{self._opts.user}:{self._opts.password}"))
        # Kazoo's default reconnect backoff grows to a minute; ours is capped so
        # the store is back within about a second of the server.
        retry = KazooRetry(max_tries=-1, delay=0.05, backoff=2, max_delay=0.5, max_jitter=0.05)
        self._zk = KazooClient(
            hosts=self._opts.hosts,
            timeout=self._opts.session_timeout,
            connection_retry=retry,
            handler=handler_for(self._runtime),
            auth_data=auth or None,
            default_acl=self._acl,
            logger=KAZOO_LOG,
        )
        bound_handshake(self._zk, min(HANDSHAKE_TIMEOUT, self._opts.session_timeout))
        self._secrets = self._opts.secrets
        REDACT.secrets.update(self._secrets)
        self._lock = self._runtime.lock()
        self._mirror: Mirror | None = None
        self._marker_known = False
        self._closed = False
        self._multi_read = True  # until the server says it has no multiRead
        self._tree_watch = True  # until the server says it has no persistent watches (addWatch)
        self._seen: dict[str, Node | None] = {}  # flag -> its state as this store last wrote it
        self._log_sequence = -1  # the highest history entry number this store created
        self._prune_check_at = 0  # look at the log's size again once the numbering reaches this
        self._away_since: float | None = None  # since when the connection is down
        self._zk.add_listener(self._on_connection)
        # Connect in the background: constructing a store never blocks or fails
        # because the server is away; operations wait for it up to ``timeout``.
        self._zk.start_async()

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> ZooKeeperStore:
        return cls(url, runtime=runtime)

    def __repr__(self) -> str:
        return f"ZooKeeperStore({self.url!r})"

    # -- reading -----------------------------------------------------------

    def load(self) -> StoreState:
        # The mirror (which feeds watches) starts before the first load reads, so
        # its replay log covers every change after the revision returned here:
        # a watch from that revision never needs a Reset.
        # One deadline for the whole load: waiting for the mirror and then reading each had
        # their own `timeout` (20 s against a down server for a stated 10).
        deadline = time.monotonic() + self._opts.timeout
        self._ensure_mirror().wait_synced(self._opts.timeout)

        def read() -> StoreState:
            try:
                nodes, pzxid = self._read_all()
            except NoNodeError:
                return StoreState(0, MappingProxyType({}), initialized=False)
            initialized = (
                self._zk.exists_async(f"{self._meta}/{MARKER}").get(timeout=self._remaining()) is not None
            )
            revision = max([pzxid, *(n.mzxid for n in nodes.values())])
            records = {name: n.record for name, n in nodes.items()}
            return StoreState(revision, MappingProxyType(records), initialized)

        return self._call("loading flags", read, deadline=deadline)

    def get(self, name: str) -> Record | None:
        def read() -> Record | None:
            try:
                data, stat = self._zk.get_async(self._path(name)).get(timeout=self._remaining())
            except NoNodeError:
                return None
            return Node.of(name, data, stat).record

        if not is_flag_name(name):
            return None
        return self._call(f"reading {name!r}", read)

    def _read_all(
        self, watch_children: Callable[[WatchedEvent], None] | None = None
    ) -> tuple[dict[str, Node], int]:
        """Every flag and the chroot's pzxid. NoNodeError if no chroot."""
        timeout = self._remaining()
        children, stat = self._zk.get_children_async(self._root, watch=watch_children, include_data=True).get(
            timeout=timeout
        )
        names = [c for c in children if is_flag_name(c)]
        return self._read_many(names, timeout), stat.pzxid

    def _read_many(self, names: Iterable[str], timeout: float) -> dict[str, Node]:
        """The named flags that exist, without watches.

        ZooKeeper 3.6 and later read many nodes in one request (``multiRead``):
        kazoo sends one request at a time through its connection thread, about
        0.3 ms each, so 10,000 flags take 3 s one by one and 0.1 s this way. An
        older server refuses the request; the store then reads them pipelined.
        """
        names = list(names)
        if self._multi_read and len(names) > 1:
            try:
                return self._multi_read_many(names, timeout)
            except UnimplementedError:
                log.info("zookeeper server has no multiRead (before 3.6): reading flags one by one")
                self._multi_read = False
        return collect([(n, self._zk.get_async(self._path(n))) for n in names], timeout)

    def _multi_read_many(self, names: list[str], timeout: float) -> dict[str, Node]:
        chunks = [names[i : i + MULTI_READ_CHUNK] for i in range(0, len(names), MULTI_READ_CHUNK)]
        pending = [(chunk, self._send_multi_read([self._path(n) for n in chunk])) for chunk in chunks]
        nodes: dict[str, Node] = {}
        for chunk, result in pending:
            for name, answer in zip(chunk, result.get(timeout=timeout), strict=True):
                if isinstance(answer, NoNodeError):
                    continue  # deleted since the listing
                if isinstance(answer, Exception):
                    raise answer
                nodes[name] = Node.of(name, *answer)
        return nodes

    def _send_multi_read(self, paths: list[str]) -> Any:
        """Send one ``multiRead`` of ``paths`` (below the client's chroot); its async result."""
        result = self._zk.handler.async_result()
        self._zk._call(MultiRead([self._zk.chroot + p for p in paths]), result)
        return result

    # -- writing -----------------------------------------------------------

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        record = self.put_many([Write(name, raw, expect)], author=author)[0]
        assert record is not None
        return record

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        """Apply ``writes`` in one ZooKeeper ``multi`` transaction: all or none.

        Each flag's operation is conditional on its version (the one ``expect`` asks
        for, else the one read just before), and each gets its history entry in the
        same transaction, so watchers see the whole write at one zxid.
        """
        check_writes(writes)
        if not writes:
            return []
        encoded: dict[str, bytes] = {}
        for each in writes:
            _require_name(each.name)
            if each.raw is None:
                continue
            data = each.raw.encode("utf-8")
            if len(data) > MAX_ZNODE_BYTES:
                raise StoreError(
                    f"flag {each.name!r} is {len(data):,} bytes, over ZooKeeper's node limit "
                    f"({MAX_ZNODE_BYTES:,} bytes): shorten it (e.g. move a long user list into a "
                    "group or an attribute rule) or use another store"
                )
            encoded[each.name] = data
        total = sum(len(d) for d in encoded.values())
        if len(encoded) > 1 and total > MAX_ZNODE_BYTES:
            raise StoreError(
                f"these {len(encoded)} flags are {total:,} bytes together, over what one ZooKeeper "
                f"transaction carries ({MAX_ZNODE_BYTES:,} bytes): write them in smaller batches"
            )
        names = [w.name for w in writes]

        def write() -> list[Record | None]:
            self._ensure_layout()
            olds, guessed = self._known(names)
            try:
                return attempt(olds)
            except (ConflictError, NotFoundError):
                if not guessed:
                    raise
                # Judged on a remembered state that someone else's write overtook: read, retry.
                self._forget(guessed)
                olds.update(self._read_many(guessed, self._remaining()))
                for name in guessed:
                    olds.setdefault(name, None)
                return attempt(olds)

        def attempt(olds: dict[str, Node | None]) -> list[Record | None]:
            ops: list[tuple[str, int | None, Node | None]] = []
            for w in writes:  # every check before anything is sent
                old = olds.get(w.name)
                if w.raw is None and old is None:
                    raise NotFoundError(w.name)
                _check(w.name, w.expect, old)
                ops.append((w.name, w.expect, old))
            txn = self._zk.transaction()
            for w, (name, _, old) in zip(writes, ops, strict=True):
                if w.raw is None:
                    assert old is not None
                    txn.delete(self._path(name), version=old.record.version - 1)
                elif old is None:
                    txn.create(self._path(name), encoded[name], acl=self._acl)
                else:
                    txn.set_data(self._path(name), encoded[name], version=old.record.version - 1)
            used = total  # the packet's bytes so far: history texts are kept while they fit
            for w, (name, _, old) in zip(writes, ops, strict=True):
                before = old.record.raw if old else None
                version = None if w.raw is None else (old.record.version + 1 if old else 1)
                used += self._add_history(txn, name, version, before, w.raw, author, used)
            results = self._commit(txn, names)
            self._raise_failed(results, ops)
            out: list[Record | None] = []
            for w, (name, _, old), result in zip(writes, ops, results, strict=False):
                if w.raw is None:
                    self._remember(name, None)
                    out.append(None)
                    continue
                record = Record(name, w.raw, 1 if old is None else result.version + 1)
                self._remember(name, Node(record, 0))
                out.append(record)
            self._sequence_seen(results[len(ops) :])
            return out

        what = "writing " + ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        records = self._write(what, write, unconditional=all(w.expect is None for w in writes))
        self._prune_history()
        return records

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        if not is_flag_name(name):
            raise NotFoundError(name)

        def remove() -> None:
            olds, guessed = self._known([name])
            try:
                attempt(olds.get(name))
            except (ConflictError, NotFoundError):
                if not guessed:
                    raise
                self._forget(guessed)
                attempt(self._read_many([name], self._remaining()).get(name))
            self._remember(name, None)

        def attempt(old: Node | None) -> None:
            if old is None:
                raise NotFoundError(name)
            _check(name, expect, old)
            self._ensure_layout()
            txn = self._zk.transaction()
            txn.delete(self._path(name), version=old.record.version - 1)
            self._add_history(txn, name, None, old.record.raw, None, author, 0)
            results = self._commit(txn, [name])
            self._raise_failed(results, [(name, expect, old)])
            self._sequence_seen(results[1:])

        for _ in range(20):  # an unconditional delete retries when someone else wrote meanwhile
            try:
                self._call(f"deleting {name!r}", remove)
                break
            except ConflictError:
                if expect is not None:
                    raise
                self._runtime.sleep(0.01)
        else:
            raise StoreUnavailable(f"deleting {name!r}: too much contention, gave up after 20 attempts")
        self._prune_history()

    # A write needs each flag's version (for the compare-and-set) and text (the history's
    # "before"). What this store last wrote, or what its mirror holds, is usually still
    # current: the write is then one transaction, conditional on that version, instead of a
    # read and a transaction. When someone else wrote meanwhile the transaction fails on the
    # version, and the write reads the flag and tries once more.

    def _known(self, names: list[str]) -> tuple[dict[str, Node | None], list[str]]:
        """Remembered states (None: known absent) and the names they were guessed for;
        the names nothing is known of are read now."""
        mirror = self._mirror
        mirrored = mirror.nodes_if_synced() if mirror is not None else None
        known: dict[str, Node | None] = {}
        guessed: list[str] = []
        unknown: list[str] = []
        for name in names:
            node = self._seen.get(name, _UNKNOWN)
            if mirrored is not None:
                held = mirrored.get(name)
                if node is _UNKNOWN or (
                    held is not None and node is not None and held.record.version > node.record.version
                ):
                    node = held
            if node is _UNKNOWN:
                unknown.append(name)
            else:
                known[name] = node
                guessed.append(name)
        if unknown:
            read = self._read_many(unknown, self._remaining())
            for name in unknown:
                known[name] = read.get(name)
        return known, guessed

    def _remember(self, name: str, node: Node | None) -> None:
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()  # bounded: a miss only costs the read it saves
        self._seen[name] = node

    def _forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._seen.pop(name, None)

    def _sequence_seen(self, results: list[Any]) -> None:
        """Note the history log's numbering from the paths a transaction created."""
        for result in results:
            if isinstance(result, str) and HISTORY_PREFIX in result:
                with contextlib.suppress(ValueError):
                    self._log_sequence = max(self._log_sequence, sequence(result.rpartition("/")[2]))

    def _write(
        self, what: str, fn: Callable[[], list[Record | None]], *, unconditional: bool
    ) -> list[Record | None]:
        """Run a write; an unconditional write retries when someone else won the race."""
        for _ in range(20):
            try:
                return self._call(what, fn)
            except ConflictError:
                if unconditional:
                    self._runtime.sleep(0.01)
                    continue
                raise
        raise StoreUnavailable(f"{what}: too much contention, gave up after 20 attempts")

    def _commit(self, txn: Any, names: list[str]) -> list[Any]:
        """Send the write transaction ``txn``; its results. A lost answer: WriteOutcomeUnknown.

        ZooKeeper applies a transaction it has received even when the connection drops before
        the answer is back, and kazoo cannot tell "never sent" from "answer lost". Sent again
        (as :meth:`_call` would, after a reconnect), it fails against its own first attempt
        (a conditional write reads as a conflict) or applies twice (an unconditional one).
        """
        if not self._zk.connected:
            raise ConnectionLoss()  # not sent: _call tries again once connected
        try:
            results: list[Any] = txn.commit_async().get(timeout=self._remaining())
        except (
            ConnectionLoss,
            SessionExpiredError,
            OperationTimeoutError,
            self._zk.handler.timeout_exception,
        ) as exc:
            self._forget(names)  # the remembered states may be what the lost write replaced
            raise WriteOutcomeUnknown(
                f"outcome unknown: writing {', '.join(map(repr, names))} to {self.url}: ZooKeeper's "
                f"answer was lost ({type(exc).__name__}); the write may have been applied"
            ) from None
        return results

    def _raise_failed(self, results: list[Any], ops: list[tuple[str, int | None, Node | None]]) -> None:
        failures = [
            (i, r)
            for i, r in enumerate(results)
            if isinstance(r, Exception) and not isinstance(r, RolledBackError | RuntimeInconsistency)
        ]
        if not failures:
            return
        index, exc = failures[0]
        if index < len(ops) and isinstance(exc, BadVersionError | NodeExistsError | NoNodeError):
            name, expected, old = ops[index]
            if old is None and isinstance(exc, NoNodeError):
                self._marker_known = False  # the chroot itself is gone (wiped): lay it out again
            # Someone wrote between our read and our transaction: report it as the
            # conflict it is; _write retries it when no version was required.
            raise ConflictError(name, expected, None if old is None else old.record.version)
        raise exc

    def _add_history(  # noqa: PLR0913 (the fields of one history entry)
        self,
        txn: Any,
        name: str,
        version: int | None,
        before: str | None,
        after: str | None,
        author: str | None,
        size: int,
    ) -> int:
        """Add the history entry to ``txn``; ``size``: the packet's bytes so far. Returns the entry's."""
        # The entry's revision is its node's czxid, given by ZooKeeper: not stored.
        entry = HistoryEntry(name, 0, version, time.time(), author, before, after)
        used = size + sum(len(t.encode("utf-8", "surrogateescape")) for t in (before, after) if t)
        path = f"{self._meta}/{HISTORY}/{HISTORY_PREFIX}"
        data = encode_entry(entry, texts=used < _PACKET_BUDGET - 50_000).encode()
        txn.create(path, data, acl=self._acl, sequence=True)
        return len(data)

    def _ensure_layout(self) -> None:
        """Create the chroot, the bookkeeping nodes and the initialized marker (once)."""
        if self._marker_known:
            return
        for path in (self._root, self._meta, f"{self._meta}/{HISTORY}", f"{self._meta}/{MARKER}"):
            if self._zk.exists_async(path).get(timeout=self._remaining()) is None:
                self._ensure_path(path)
        self._marker_known = True

    def _ensure_path(self, path: str) -> None:
        prefix = ""
        for part in path.strip("/").split("/"):
            prefix += "/" + part
            try:
                self._zk.create_async(prefix, b"", acl=self._acl).get(timeout=self._remaining())
            except NodeExistsError:
                continue

    def _prune_history(self) -> None:
        """Keep the newest HISTORY_LIMIT entries (best effort: a failure is logged)."""
        hdir = f"{self._meta}/{HISTORY}"
        if 0 <= self._log_sequence < self._prune_check_at:
            return  # the log has not grown by the slack since the last look: skip the round trip
        self._prune_check_at = self._log_sequence + _HISTORY_SLACK // 2
        try:
            stat = self._zk.exists_async(hdir).get(timeout=self._remaining())
            if stat is None or not entries_to_trim(stat.numChildren, HISTORY_LIMIT, slack=_HISTORY_SLACK):
                return
            children = sorted(self._zk.get_children_async(hdir).get(timeout=self._remaining()))
            doomed = children[: entries_to_trim(len(children), HISTORY_LIMIT)]
            for result in [self._zk.delete_async(f"{hdir}/{c}") for c in doomed]:
                try:
                    result.get(timeout=self._remaining())
                except NoNodeError:
                    continue  # another writer pruned it first
        except (KazooException, self._zk.handler.timeout_exception) as exc:
            log.warning("could not prune the history of %s: %s", self.url, type(exc).__name__)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        hdir = f"{self._meta}/{HISTORY}"

        def read() -> list[HistoryEntry]:
            try:
                children = sorted(
                    self._zk.get_children_async(hdir).get(timeout=self._remaining()), reverse=True
                )
            except NoNodeError:
                return []
            out: list[HistoryEntry] = []
            batch = max(limit, 50)
            for start in range(0, len(children), batch):
                chunk = children[start : start + batch]
                pending = [self._zk.get_async(f"{hdir}/{c}") for c in chunk]
                for result in pending:
                    try:
                        data, stat = result.get(timeout=self._remaining())
                    except NoNodeError:
                        continue  # pruned meanwhile
                    entry = history_entry(data, stat)
                    if entry is not None and (name is None or entry.name == name):
                        out.append(entry)
                if len(out) >= limit:
                    break
            return out[:limit]

        return self._call("reading history", read)

    # -- watching ----------------------------------------------------------

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        return self._ensure_mirror().subscribe(on_event, since)

    def _ensure_mirror(self) -> Mirror:
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.url} is closed")
            if self._mirror is None:
                self._mirror = Mirror(self)
            return self._mirror

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            mirror, self._mirror = self._mirror, None
        if mirror is not None:
            mirror.stop()
        try:
            self._zk.stop()
            self._zk.close()
        except KazooException as exc:
            log.warning("closing %s: %s", self.url, type(exc).__name__)
        REDACT.secrets.subtract(self._secrets)
        REDACT.secrets += collections.Counter()  # drop the ones no open store uses

    # -- plumbing ----------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def _remaining(self) -> float:
        """How long the next request may wait for its answer: what is left of the operation's
        ``timeout`` inside :meth:`_call`, so an operation of several requests keeps to it."""
        deadline = _DEADLINE.get()
        if deadline is None:
            return self._opts.timeout
        return max(0.001, deadline - time.monotonic())

    def _call(self, what: str, fn: Callable[[], T], *, deadline: float | None = None) -> T:
        """Run ``fn`` once connected, retrying transient failures until ``timeout``.

        A write retried after a lost connection may have been applied the first
        time; the compare-and-set then reports a conflict rather than writing twice.
        """
        if self._closed:
            raise StoreError(f"{self.url} is closed")
        if deadline is None:
            deadline = time.monotonic() + self._opts.timeout
        delay = 0.02
        timeout_exc = self._zk.handler.timeout_exception
        while True:
            token = _DEADLINE.set(deadline)
            try:
                self._wait_connected(deadline)
                return fn()
            except NoAuthError:
                raise StoreError(
                    f"{what}: ZooKeeper refused it for lack of permission under {self._root} "
                    "(read-only credentials, or none where an ACL requires them)"
                ) from None
            except (*TRANSIENT, timeout_exc) as exc:
                if self._closed or time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{what}: ZooKeeper at {self._opts.hosts} unreachable for "
                        f"{self._opts.timeout:g} s ({type(exc).__name__})"
                    ) from None
                self._runtime.sleep(delay)
                delay = min(delay * 2, 0.25)
            finally:
                _DEADLINE.reset(token)

    def _wait_connected(self, deadline: float) -> None:
        while not self._zk.connected:
            if self._closed or time.monotonic() >= deadline:
                raise ConnectionLoss()
            self._forget_zxid_if_refused()
            self._runtime.sleep(0.02)

    def _on_connection(self, state: str) -> None:
        # On kazoo's thread: only note since when the connection is down.
        if state == KazooState.LOST:
            self._marker_known = False  # a new session may find a server that lost its data
        if state == KazooState.CONNECTED:
            self._away_since = None
        elif self._away_since is None:
            self._away_since = time.monotonic()

    def _forget_zxid_if_refused(self) -> None:
        """Reconnect as a new client after a session timeout without a connection.

        A ZooKeeper server refuses every client that has seen a newer zxid than
        its own, for ever: a server that came back without its data (wiped, or
        restored from an old snapshot) would never take us back. By then the
        session has expired anyway; forgetting the zxid lets the next attempt
        in, the session's expiry leads to a full re-read and a Reset, and the
        client decides whether to believe what it finds. Revisions still never
        go backwards (the mirror keeps its own).
        """
        since = self._away_since
        if since is None or self._zk.last_zxid == 0:
            return
        if time.monotonic() - since > self._opts.session_timeout:
            log.warning(
                "zookeeper %s has not taken us back for %.0f s; reconnecting as a new client "
                "(a server that lost its data refuses clients that saw newer zxids)",
                self.url,
                time.monotonic() - since,
            )
            self._zk.last_zxid = 0


def _require_name(name: str) -> None:

    problems = validate_name(name)
    if problems:
        raise ValidationError(problems, flag=str(name))


def _check(name: str, expect: int | None, old: Node | None) -> None:
    if expect is None:
        return
    actual = old.record.version if old else 0
    if actual != expect:
        raise ConflictError(name, expect, actual)
