"""``zookeeper://[user:password@]host:port[,host:port…]/chroot[?options]``: flags in ZooKeeper.

Layout
    One znode per flag, ``<chroot>/<name>``, holding the document text as
    UTF-8. Any ZooKeeper client may write it: ``zkCli.sh set /experiments/x 1``
    puts the text ``1`` there, which the store delivers raw (the client reads
    a bare number as a percentage). flagstaff's own bookkeeping lives under
    ``<chroot>/.flagstaff`` (never listed as a flag; flag names cannot start
    with a dot): ``initialized`` (the marker written with the first change)
    and ``history`` (a bounded log of sequential nodes).

Versions and revisions
    A flag's version is its znode ``dataVersion + 1`` (creation gives 1), and
    compare-and-set maps straight onto znode versions. The store revision is
    a ZooKeeper zxid: ``load()`` reports the largest ``mzxid`` of the flags and
    ``pzxid`` of the chroot (the zxid of the last create or delete below it).
    A watch delivers each change at the zxid that produced it, raised if need
    be to one more than the revision it delivered last, so revisions always
    increase even when watch notices and reads interleave.

Watches
    One mirror per store keeps a children watch on the chroot and a data
    watch on every flag; a notice only marks the flag dirty, and the mirror's
    task re-reads what is dirty (pipelined) and delivers the differences. We
    use plain watches rather than kazoo's ``TreeCache``: it has no notion of a
    revision, and rebuilds after a reconnect without saying what it missed.
    Flags are read in bulk with ``multiRead`` (one request per 200 flags;
    pipelined single reads on servers before 3.6) and their data watches are
    then armed in small steps in the background, a flag that changed in
    between being read again. A reconnect on the same session first delivers
    what the history log holds since the mirror's cursor (flagstaff's own
    writes, a few reads away), then re-reads everything and re-arms the
    watches (kazoo drops its watch callbacks when the connection drops),
    delivering the differences; after a session expiry the mirror re-reads
    and delivers :class:`Reset`. Reconnection uses
    a bounded backoff (at most 0.5 s between attempts), so the store is back
    within a second or so of the server.

Writes
    Each write is one ZooKeeper ``multi`` transaction: the flag (conditional
    on the version read just before, or on ``expect``) plus its history entry.
    :meth:`ZooKeeperStore.put_many` writes several flags in one transaction.
    A document larger than :data:`MAX_DOCUMENT_BYTES` is refused with
    :class:`StoreError` before anything is sent (ZooKeeper's own 1 MB packet
    limit would otherwise drop the connection); documents are not chunked, so
    any ZooKeeper client still reads a flag as one node.

Credentials
    ``user:password@`` in the URL adds digest authentication. Nodes this store
    creates get the ACL: the writer (those credentials) may do everything;
    ``?readers=app:secret[,…]`` grants read to those digest users only,
    otherwise anyone may read. Application processes use the reader's
    credentials and may add ``?readonly=1`` to refuse writes locally; a write
    the server refuses raises :class:`StoreError` saying the credentials lack
    write permission. Passwords never appear in ``url``, logs or errors.

Options
    ``session_timeout`` (seconds, default 10), ``timeout`` (seconds an
    operation waits for the server, default 10), ``readers``, ``readonly``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import logging
import math
import re
import select
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    EXCEPTIONS,
    BadVersionError,
    ConnectionClosedError,
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
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.serialization import (
    int_struct,
    multiheader_struct,
    read_buffer,
    stat_struct,
    write_string,
)
from kazoo.protocol.states import EventType, WatchedEvent, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import ACL, make_acl, make_digest_acl

from flagstaff.errors import ConflictError, NotFoundError, StoreError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.model import validate_name
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._dispatch import InlineDelivery
from flagstaff.stores.base import Change, HistoryEntry, Record, Reset, StoreState, Watch, WatchEvent

__all__ = ["MAX_DOCUMENT_BYTES", "ZooKeeperStore"]

log = logging.getLogger("flagstaff.stores.zookeeper")

T = TypeVar("T")

#: Largest flag document accepted, in UTF-8 bytes. ZooKeeper refuses packets
#: over ``jute.maxbuffer`` (1 MiB by default) by dropping the connection; we
#: keep headroom for the path and the transaction around it.
MAX_DOCUMENT_BYTES = 1_000_000
#: The history entry is written in the same packet as the flag: it keeps the
#: texts before and after only while the whole packet stays under this.
_PACKET_BUDGET = 1_000_000
HISTORY_LIMIT = 1000
_MULTI_READ_CHUNK = 200  # flags per multiRead request (documents are small; a chunk stays well under 1 MB)
# Data watches armed per step of the mirror's task: small steps, so that after a reconnect
# the catch-up never waits behind a long queue of requests sent before the connection dropped.
_ARM_BATCH = 100
_REPLAY_LIMIT = 1000  # changes a mirror keeps to replay to late subscribers
_HISTORY_SLACK = 100  # prune in batches, not on every write
_SEEN_LIMIT = 10_000  # flags whose last written state a store remembers for its next write
_UNKNOWN: Any = object()
# The deadline of the store operation running in this thread or greenlet (see _remaining).
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("flagstaff_zk", default=None)

_META = ".flagstaff"
_MARKER = "initialized"
_HISTORY = "history"
_HISTORY_PREFIX = "h-"

# Errors meaning "the server could not be asked"; an operation retries them until its deadline.
_TRANSIENT = (ConnectionLoss, SessionExpiredError, OperationTimeoutError, ConnectionClosedError)


@dataclass(frozen=True, slots=True)
class _Options:
    hosts: str
    root: str
    user: str | None
    password: str | None
    readers: tuple[tuple[str, str], ...]
    readonly: bool
    session_timeout: float
    timeout: float


def _parse_url(url: str) -> _Options:
    parts = urlsplit(url)
    if parts.scheme not in ("zookeeper", "zk"):
        raise UnsupportedStoreURL(f"not a zookeeper:// URL: {_mask(url)!r}")
    netloc = parts.netloc
    user = password = None
    if "@" in netloc:
        cred, _, netloc = netloc.rpartition("@")
        user, sep, password = cred.partition(":")
        if not user or not sep:
            raise UnsupportedStoreURL("zookeeper:// credentials must be user:password@")
        user, password = unquote(user), unquote(password)
    if not netloc:
        raise UnsupportedStoreURL("a zookeeper:// URL needs host:port[,host:port...]")
    root = "/" + parts.path.strip("/")
    if root == "/":
        raise UnsupportedStoreURL(
            "a zookeeper:// URL needs a chroot below '/', e.g. zookeeper://host:2181/flags"
        )
    query = parse_qs(parts.query)

    def one(key: str, default: str) -> str:
        return query.get(key, [default])[-1]

    readers: list[tuple[str, str]] = []
    for item in ",".join(query.get("readers", [])).split(","):
        if item:
            name, sep, secret = item.partition(":")
            if not name or not sep:
                raise UnsupportedStoreURL("readers= takes user:password pairs separated by commas")
            readers.append((name, secret))
    try:
        session_timeout = float(one("session_timeout", "10"))
        timeout = float(one("timeout", "10"))
    except ValueError:
        raise UnsupportedStoreURL("session_timeout= and timeout= take seconds") from None
    return _Options(
        hosts=netloc,
        root=root,
        user=user,
        password=password,
        readers=tuple(readers),
        readonly=one("readonly", "0").lower() in ("1", "true", "yes"),
        session_timeout=session_timeout,
        timeout=timeout,
    )


def _mask(url: str) -> str:
    """The URL without its password (and without reader passwords)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        cred, _, hosts = netloc.rpartition("@")
        netloc = f"{cred.partition(':')[0]}:***@{hosts}"
    query = parts.query
    if "readers=" in query:
        query = "&".join("readers=***" if kv.startswith("readers=") else kv for kv in query.split("&") if kv)
    return parts._replace(netloc=netloc, query=query).geturl()


class _Redact(logging.Filter):
    """Keeps credentials out of kazoo's debug logs (it logs auth packets verbatim)."""

    _AUTH = re.compile(r"auth='[^']*'")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: collections.Counter[str] = collections.Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._AUTH.sub("auth='***'", message)
        for secret in list(self.secrets):
            clean = clean.replace(secret, "***")
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_KAZOO_LOG = logging.getLogger("flagstaff.stores.zookeeper.kazoo")
_REDACT = _Redact()
_KAZOO_LOG.addFilter(_REDACT)


def _handler(runtime: Runtime) -> Any:
    if runtime.name == "gevent":
        from kazoo.handlers.gevent import SequentialGeventHandler

        return SequentialGeventHandler()
    return _PollHandler()


_POLL_READ = select.POLLIN | select.POLLPRI
_POLL_DONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class _PollHandler(SequentialThreadingHandler):  # type: ignore[misc]
    """kazoo's threading handler with ``select`` done by one ``poll(2)`` call.

    kazoo's connection thread waits in ``select`` several times per request
    and per answer; the stock handler builds and closes an epoll selector
    each time (three system calls and a file descriptor), which made up a
    third of the time to read 10,000 flags. ``poll`` needs no descriptor and
    has no limit on descriptor numbers. Same contract as kazoo's
    ``selector_select``: lists of the ready objects, a hang-up or error
    counts as readable (or writable, for an object only written to).
    """

    def select(
        self, rlist: list[Any], wlist: list[Any], xlist: list[Any], timeout: float | None = None
    ) -> tuple[list[Any], list[Any], list[Any]]:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be non-negative")
        poller = select.poll()
        wanted: dict[int, tuple[list[Any], list[Any]]] = {}
        for objs, slot in ((rlist, 0), (wlist, 1)):
            for obj in objs:
                fd = obj if isinstance(obj, int) else obj.fileno()
                if fd < 0:
                    raise ValueError("Invalid event mask or fd")
                wanted.setdefault(fd, ([], []))[slot].append(obj)
        for fd, (readers, writers) in wanted.items():
            poller.register(fd, (_POLL_READ if readers else 0) | (select.POLLOUT if writers else 0))
        ready = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        readable: list[Any] = []
        writable: list[Any] = []
        for fd, events in ready:
            readers, writers = wanted[fd]
            if readers and events & (_POLL_READ | _POLL_DONE):
                readable.extend(readers)
            elif writers and events & (select.POLLOUT | _POLL_DONE):
                writable.extend(writers)
        return readable, writable, []


class _MultiRead:
    """ZooKeeper's ``multiRead`` request (opcode 22, servers 3.6+) of getData operations.

    kazoo has no call for it; it sends any request object with ``type``,
    ``serialize()`` and ``deserialize()``, as it does its own ``Transaction``.
    Each read succeeds or fails on its own: the answer is a list, in request
    order, of ``(data, stat)`` or the error for that path.
    """

    type = 22
    watcher = None

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def serialize(self) -> bytes:
        out = bytearray()
        for path in self.paths:  # each op: header (getData), path, watch = false
            out += multiheader_struct.pack(4, False, -1) + write_string(path) + b"\0"
        return bytes(out + multiheader_struct.pack(-1, True, -1))

    def deserialize(self, buf: bytes, offset: int) -> list[tuple[bytes, ZnodeStat] | Exception]:
        answers: list[tuple[bytes, ZnodeStat] | Exception] = []
        while True:
            kind, done, _ = multiheader_struct.unpack_from(buf, offset)
            offset += multiheader_struct.size
            if done:
                return answers
            if kind == 4:
                data, offset = read_buffer(buf, offset)
                answers.append((data or b"", ZnodeStat._make(stat_struct.unpack_from(buf, offset))))
                offset += stat_struct.size
            else:  # an error result: its code
                code = int_struct.unpack_from(buf, offset)[0]
                offset += int_struct.size
                answers.append(EXCEPTIONS[code]())


@dataclass(frozen=True, slots=True)
class _Node:
    """A flag as last read, with the zxids that place it in time."""

    record: Record
    mzxid: int

    @staticmethod
    def of(name: str, data: bytes | None, stat: ZnodeStat) -> _Node:
        raw = (data or b"").decode("utf-8", errors="replace")
        return _Node(Record(name, raw, stat.version + 1), stat.mzxid)


class ZooKeeperStore:
    """Flags in ZooKeeper, pushed by watches. See the module doc."""

    def __init__(self, url: str, *, runtime: Runtime | None = None) -> None:
        self._opts = _parse_url(url)
        self.url = _mask(url)
        self._runtime = runtime or default_runtime()
        self._root = self._opts.root
        self._meta = f"{self._root}/{_META}"
        self._acl = self._make_acl()
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
            handler=_handler(self._runtime),
            auth_data=auth or None,
            default_acl=self._acl,
            logger=_KAZOO_LOG,
        )
        self._secrets = [p for p in (self._opts.password, *(p for _, p in self._opts.readers)) if p]
        _REDACT.secrets.update(self._secrets)
        self._lock = self._runtime.lock()
        self._mirror: _Mirror | None = None
        self._marker_known = False
        self._closed = False
        self._multi_read = True  # until the server says it has no multiRead
        self._seen: dict[str, _Node | None] = {}  # flag -> its state as this store last wrote it
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
        self._ensure_mirror().wait_synced(self._opts.timeout)

        def read() -> StoreState:
            try:
                nodes, pzxid = self._read_all()
            except NoNodeError:
                return StoreState(0, MappingProxyType({}), initialized=False)
            initialized = (
                self._zk.exists_async(f"{self._meta}/{_MARKER}").get(timeout=self._remaining()) is not None
            )
            revision = max([pzxid, *(n.mzxid for n in nodes.values())])
            records = {name: n.record for name, n in nodes.items()}
            return StoreState(revision, MappingProxyType(records), initialized)

        return self._call("loading flags", read)

    def get(self, name: str) -> Record | None:
        def read() -> Record | None:
            try:
                data, stat = self._zk.get_async(self._path(name)).get(timeout=self._remaining())
            except NoNodeError:
                return None
            return _Node.of(name, data, stat).record

        if not _is_flag_name(name):
            return None
        return self._call(f"reading {name!r}", read)

    def _read_all(
        self, watch_children: Callable[[WatchedEvent], None] | None = None
    ) -> tuple[dict[str, _Node], int]:
        """Every flag and the chroot's pzxid. NoNodeError if no chroot."""
        timeout = self._remaining()
        children, stat = self._zk.get_children_async(self._root, watch=watch_children, include_data=True).get(
            timeout=timeout
        )
        names = [c for c in children if _is_flag_name(c)]
        return self._read_many(names, timeout), stat.pzxid

    def _read_many(self, names: Iterable[str], timeout: float) -> dict[str, _Node]:
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
        return _collect([(n, self._zk.get_async(self._path(n))) for n in names], timeout)

    def _multi_read_many(self, names: list[str], timeout: float) -> dict[str, _Node]:
        chunks = [names[i : i + _MULTI_READ_CHUNK] for i in range(0, len(names), _MULTI_READ_CHUNK)]
        pending = [(chunk, self._send_multi_read([self._path(n) for n in chunk])) for chunk in chunks]
        nodes: dict[str, _Node] = {}
        for chunk, result in pending:
            for name, answer in zip(chunk, result.get(timeout=timeout), strict=True):
                if isinstance(answer, NoNodeError):
                    continue  # deleted since the listing
                if isinstance(answer, Exception):
                    raise answer
                nodes[name] = _Node.of(name, *answer)
        return nodes

    def _send_multi_read(self, paths: list[str]) -> Any:
        """Send one ``multiRead`` of ``paths`` (below the client's chroot); its async result."""
        result = self._zk.handler.async_result()
        self._zk._call(_MultiRead([self._zk.chroot + p for p in paths]), result)
        return result

    # -- writing -----------------------------------------------------------

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        return self.put_many({name: raw}, expect={name: expect}, author=author)[name]

    def put_many(
        self,
        docs: Mapping[str, str],
        *,
        expect: Mapping[str, int | None] | None = None,
        author: str | None = None,
    ) -> dict[str, Record]:
        """Write several flags in one ZooKeeper transaction: all or none.

        ``expect`` maps names to the versions required (as in :meth:`put`);
        a :class:`ConflictError` names the first flag that did not match.
        """
        self._check_writable()
        expect = dict(expect or {})
        encoded: dict[str, bytes] = {}
        for name, raw in docs.items():
            _require_name(name)
            data = raw.encode("utf-8")
            if len(data) > MAX_DOCUMENT_BYTES:
                raise StoreError(
                    f"flag {name!r} is {len(data):,} bytes, over ZooKeeper's node limit "
                    f"({MAX_DOCUMENT_BYTES:,} bytes): shorten it (e.g. move a long user list into a "
                    "group or an attribute rule) or use another store"
                )
            encoded[name] = data
        total = sum(len(d) for d in encoded.values())
        if len(encoded) > 1 and total > MAX_DOCUMENT_BYTES:
            raise StoreError(
                f"these {len(encoded)} flags are {total:,} bytes together, over what one ZooKeeper "
                f"transaction carries ({MAX_DOCUMENT_BYTES:,} bytes): write them in smaller batches"
            )

        def write() -> dict[str, Record]:
            self._ensure_layout()
            olds, guessed = self._known(list(encoded))
            try:
                return attempt(olds)
            except ConflictError:
                if not guessed:
                    raise
                # Judged on a remembered state that someone else's write overtook: read, retry.
                self._forget(guessed)
                olds.update(self._read_many(guessed, self._remaining()))
                for name in guessed:
                    olds.setdefault(name, None)
                return attempt(olds)

        def attempt(olds: dict[str, _Node | None]) -> dict[str, Record]:
            ops: list[tuple[str, int | None, _Node | None]] = []
            for name in encoded:
                old = olds.get(name)
                _check(name, expect.get(name), old)
                ops.append((name, expect.get(name), old))
            txn = self._zk.transaction()
            for name, _, old in ops:
                if old is None:
                    txn.create(self._path(name), encoded[name], acl=self._acl)
                else:
                    txn.set_data(self._path(name), encoded[name], version=old.record.version - 1)
            used = total  # the packet's bytes so far: history texts are kept while they fit
            for name, _, old in ops:
                before, version = (old.record.raw, old.record.version + 1) if old else (None, 1)
                used += self._add_history(txn, name, version, before, docs[name], author, used)
            results = txn.commit_async().get(timeout=self._remaining())
            self._raise_failed(results, ops)
            out: dict[str, Record] = {}
            for (name, _, old), result in zip(ops, results, strict=False):
                version = 1 if old is None else result.version + 1
                out[name] = Record(name, docs[name], version)
                self._remember(name, _Node(out[name], 0))
            self._sequence_seen(results[len(ops) :])
            return out

        records = self._write("writing " + ", ".join(map(repr, docs)), write, docs, expect)
        self._prune_history()
        return records

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        self._check_writable()
        if not _is_flag_name(name):
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

        def attempt(old: _Node | None) -> None:
            if old is None:
                raise NotFoundError(name)
            _check(name, expect, old)
            self._ensure_layout()
            txn = self._zk.transaction()
            txn.delete(self._path(name), version=old.record.version - 1)
            self._add_history(txn, name, None, old.record.raw, None, author, 0)
            results = txn.commit_async().get(timeout=self._remaining())
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

    def _known(self, names: list[str]) -> tuple[dict[str, _Node | None], list[str]]:
        """Remembered states (None: known absent) and the names they were guessed for;
        the names nothing is known of are read now."""
        mirror = self._mirror
        mirrored = mirror.nodes_if_synced() if mirror is not None else None
        known: dict[str, _Node | None] = {}
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

    def _remember(self, name: str, node: _Node | None) -> None:
        if len(self._seen) >= _SEEN_LIMIT:
            self._seen.clear()  # bounded: a miss only costs the read it saves
        self._seen[name] = node

    def _forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._seen.pop(name, None)

    def _sequence_seen(self, results: list[Any]) -> None:
        """Note the history log's numbering from the paths a transaction created."""
        for result in results:
            if isinstance(result, str) and _HISTORY_PREFIX in result:
                with contextlib.suppress(ValueError):
                    self._log_sequence = max(self._log_sequence, _sequence(result.rpartition("/")[2]))

    def _write(
        self,
        what: str,
        fn: Callable[[], dict[str, Record]],
        docs: Mapping[str, str],
        expect: Mapping[str, int | None],
    ) -> dict[str, Record]:
        """Run a write; an unconditional write retries when someone else won the race."""
        for _ in range(20):
            try:
                return self._call(what, fn)
            except ConflictError:
                if all(expect.get(n) is None for n in docs):
                    self._runtime.sleep(0.01)
                    continue
                raise
        raise StoreUnavailable(f"{what}: too much contention, gave up after 20 attempts")

    def _raise_failed(self, results: list[Any], ops: list[tuple[str, int | None, _Node | None]]) -> None:
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

    def _add_history(
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
        entry: dict[str, Any] = {"name": name, "version": version, "at": time.time(), "author": author}
        texts = {"before": before, "after": after}
        if size + sum(len(t.encode()) for t in texts.values() if t) < _PACKET_BUDGET - 50_000:
            entry.update(texts)
        else:
            entry["truncated"] = True
        path = f"{self._meta}/{_HISTORY}/{_HISTORY_PREFIX}"
        data = json.dumps(entry).encode()
        txn.create(path, data, acl=self._acl, sequence=True)
        return len(data)

    def _ensure_layout(self) -> None:
        """Create the chroot, the bookkeeping nodes and the initialized marker (once)."""
        if self._marker_known:
            return
        for path in (self._root, self._meta, f"{self._meta}/{_HISTORY}", f"{self._meta}/{_MARKER}"):
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
        hdir = f"{self._meta}/{_HISTORY}"
        if 0 <= self._log_sequence < self._prune_check_at:
            return  # the log has not grown by the slack since the last look: skip the round trip
        self._prune_check_at = self._log_sequence + _HISTORY_SLACK // 2
        try:
            stat = self._zk.exists_async(hdir).get(timeout=self._remaining())
            if stat is None or stat.numChildren <= HISTORY_LIMIT + _HISTORY_SLACK:
                return
            children = sorted(self._zk.get_children_async(hdir).get(timeout=self._remaining()))
            doomed = children[: len(children) - HISTORY_LIMIT]
            for result in [self._zk.delete_async(f"{hdir}/{c}") for c in doomed]:
                try:
                    result.get(timeout=self._remaining())
                except NoNodeError:
                    continue  # another writer pruned it first
        except (KazooException, self._zk.handler.timeout_exception) as exc:
            log.warning("could not prune the history of %s: %s", self.url, type(exc).__name__)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        hdir = f"{self._meta}/{_HISTORY}"

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
                    entry = _history_entry(data, stat)
                    if entry is not None and (name is None or entry.name == name):
                        out.append(entry)
                if len(out) >= limit:
                    break
            return out[:limit]

        return self._call("reading history", read)

    # -- watching ----------------------------------------------------------

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        return self._ensure_mirror().subscribe(on_event, since)

    def _ensure_mirror(self) -> _Mirror:
        with self._lock:
            if self._closed:
                raise StoreError(f"{self.url} is closed")
            if self._mirror is None:
                self._mirror = _Mirror(self)
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
        _REDACT.secrets.subtract(self._secrets)
        _REDACT.secrets += collections.Counter()  # drop the ones no open store uses

    # -- plumbing ----------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    def _make_acl(self) -> list[ACL] | None:
        o = self._opts
        if o.user is None:
            return None  # kazoo's default: open
        acl = [make_digest_acl(o.user, o.password or "", all=True)]
        if o.readers:
            acl += [make_digest_acl(u, p, read=True) for u, p in o.readers]
        else:
            acl.append(make_acl("world", "anyone", read=True))
        return acl

    def _check_writable(self) -> None:
        if self._opts.readonly:
            raise StoreError(f"{self.url} was opened read-only (readonly=1): writes are refused")

    def _remaining(self) -> float:
        """How long the next request may wait for its answer: what is left of the operation's
        ``timeout`` inside :meth:`_call`, so an operation of several requests keeps to it."""
        deadline = _DEADLINE.get()
        if deadline is None:
            return self._opts.timeout
        return max(0.001, deadline - time.monotonic())

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once connected, retrying transient failures until ``timeout``.

        A write retried after a lost connection may have been applied the first
        time; the compare-and-set then reports a conflict rather than writing twice.
        """
        if self._closed:
            raise StoreError(f"{self.url} is closed")
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
            except (*_TRANSIENT, timeout_exc) as exc:
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


@dataclass(slots=True)
class _Subscriber:
    queue: InlineDelivery
    floor: int  # events at or before this zxid are already known to the subscriber


# One candidate change found by a sync: (zxid, name, node or None for a delete).
_Candidate: TypeAlias = tuple[int, str, "_Node | None"]


class _Mirror:
    """The store's one set of ZooKeeper watches, fanned out to subscribers.

    What it watches: the chroot's children, every flag's data, and the
    history log's children. ZooKeeper notices only mark things dirty (they
    arrive on kazoo's thread and must be quick); the mirror's task re-reads
    and delivers. Watches are one-shot and coalesce, so the history log (one
    entry per flagstaff write, made in the same transaction and so carrying
    the same zxid) is what delivers every intermediate change in order;
    reading the flags themselves catches writes made by other ZooKeeper
    clients. A change is delivered once: anything at or before the zxid
    already held for a flag (or its deletion) is skipped, so values never go
    backwards. The number of ZooKeeper watches is one per flag plus two,
    however many subscribers there are.
    """

    def __init__(self, store: ZooKeeperStore) -> None:
        self._store = store
        self._zk = store._zk
        self._runtime = store._runtime
        self._root = store._root
        self._hdir = f"{store._meta}/{_HISTORY}"
        self._lock = self._runtime.lock()
        self._wake = self._runtime.event()
        self._nodes: dict[str, _Node] = {}
        self._gone: dict[str, int] = {}  # deleted flag -> zxid of its deletion (tombstones)
        self._armed: set[str] = set()  # flags with a data watch in place
        self._to_arm: list[str] = []  # flags read without a watch, to arm step by step
        self._cursor = -1  # the sequence number of the last history entry taken into account
        self._log_stat: tuple[int, int] | None = None  # the log's (cversion, numChildren) at the cursor
        self._revision = 0  # the last revision delivered
        self._log: collections.deque[tuple[int, Change]] = collections.deque(maxlen=_REPLAY_LIMIT)
        self._log_base = 0  # the log holds every change after this revision
        self._dirty: set[str] = set()
        self._children_dirty = False
        self._full = True  # a full re-read is due (start, reconnect)
        self._expired = False  # the session was lost: deliver Reset after the re-read
        self._synced = False
        self._synced_event = self._runtime.event()
        self._joining: list[_Subscriber] = []
        self._subscribers: list[_Subscriber] = []
        self._stopped = False
        self._zk.add_listener(self._on_state)  # before the first check of the connection: no lost wake-up
        self._wake.set()
        self._task = self._runtime.spawn(self._run, name="flagstaff-zookeeper-mirror")

    def subscribe(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        queue = InlineDelivery(self._runtime, on_event)
        with self._lock:
            self._joining.append(_Subscriber(queue, since))
        self._wake.set()
        return _Subscription(self, queue)

    def unsubscribe(self, queue: InlineDelivery) -> None:
        queue.stop()
        with self._lock:
            self._joining = [s for s in self._joining if s.queue is not queue]
            self._subscribers = [s for s in self._subscribers if s.queue is not queue]

    def stop(self) -> None:
        self._stopped = True
        self._zk.remove_listener(self._on_state)
        self._wake.set()
        with self._lock:
            subscribers = self._joining + self._subscribers
            self._joining, self._subscribers = [], []
        for sub in subscribers:
            sub.queue.stop()
        self._task.join(5)

    def wait_synced(self, timeout: float) -> bool:
        """Wait (bounded) until the first full read is done."""
        return self._synced_event.wait(timeout)

    def nodes_if_synced(self) -> Mapping[str, _Node] | None:
        """The flags as the mirror holds them (a live view), or None before the first read
        or while a full re-read is due."""
        return self._nodes if self._synced and not self._full else None

    @property
    def watch_count(self) -> int:
        """ZooKeeper watches this mirror keeps armed (for leak checks)."""
        return len(self._armed) + 1

    # Kazoo calls these on its own thread: record and wake, nothing more.

    def _on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            self._expired = True
            self._full = True
        elif state == KazooState.SUSPENDED:
            self._full = True  # kazoo forgets its watch callbacks when a connection drops
        self._wake.set()

    def _on_data(self, event: WatchedEvent) -> None:
        if event.type == EventType.NONE or self._stopped:
            return  # a connection notice; _on_state handles those
        with self._lock:
            name = event.path.rpartition("/")[2]
            self._armed.discard(name)
            self._dirty.add(name)
        self._wake.set()

    def _on_children(self, event: WatchedEvent) -> None:
        if event.type == EventType.NONE or self._stopped:
            return
        with self._lock:
            self._children_dirty = True
        self._wake.set()

    # The mirror's task.

    def _run(self) -> None:
        failures = 0
        while not self._stopped:
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stopped:
                break
            if not self._zk.connected:
                self._store._forget_zxid_if_refused()
                continue  # _on_state wakes us when the connection is back
            try:
                if self._full:
                    self._full_sync()
                elif self._dirty or self._children_dirty:
                    self._incremental_sync()
                self._admit()
                if self._to_arm and not self._full:
                    self._arm_some()
                failures = 0
            except (*_TRANSIENT, self._zk.handler.timeout_exception) as exc:
                log.info("zookeeper watch interrupted (%s); re-reading when connected", type(exc).__name__)
                self._full = True
                self._wake.set()
                self._runtime.sleep(0.05)
            except Exception:
                failures += 1
                log.exception("zookeeper watch failed; re-reading everything")
                self._full = True
                self._wake.set()
                self._runtime.sleep(min(0.1 * 2**failures, 2.0))

    def _full_sync(self) -> None:
        expired, self._expired = self._expired, False
        self._full = False
        with self._lock:
            self._dirty.clear()
            self._children_dirty = False
            self._armed.clear()
            self._to_arm = []
        if self._synced and not expired:
            # Back on the same session: what flagstaff wrote meanwhile is in the log, a few
            # reads away. Deliver it before re-arming every flag's watch, which costs one read
            # per flag (seconds for a fleet of processes holding 10,000 flags each) and only
            # adds changes written by other ZooKeeper clients.
            self._catch_up_from_history()
        # History first: entries after this cursor are newer than what the reads below may miss.
        cursor, log_stat = self._history_cursor()
        try:
            nodes, pzxid = self._store._read_all(self._on_children)
        except NoNodeError:
            self._watch_creation(self._root, self._on_children)
            if self._synced and not expired:
                self._wiped()
                return
            nodes, pzxid = {}, 0
        # The flags were read without data watches (one request per 200 flags); the
        # watches, one request each, are armed step by step once the data is served.
        self._to_arm = sorted(nodes)
        self._wake.set()
        if expired or not self._synced:
            self._nodes, self._gone, self._cursor, self._log_stat = nodes, {}, cursor, log_stat
            self._revision = max([self._revision, pzxid, *(n.mzxid for n in nodes.values())])
            self._log.clear()
            self._log_base = self._revision
            if expired and self._synced:
                log.info("zookeeper session expired: watches re-armed, subscribers reset")
                self._publish(0, Reset("the ZooKeeper session expired; watches were lost"))
            self._synced = True
            self._synced_event.set()
            return
        if cursor >= self._cursor:
            self._cursor, self._log_stat = cursor, log_stat
        candidates: list[_Candidate] = [(n.mzxid, name, n) for name, n in nodes.items()]
        candidates += [(pzxid, name, None) for name in self._nodes if name not in nodes]
        self._apply(candidates)

    def _incremental_sync(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            children_dirty, self._children_dirty = self._children_dirty, False
        store, zk, timeout = self._store, self._zk, self._store._remaining()
        # Round trip 1, pipelined: the dirty flags, the chroot's children, the history
        # log, in this order. ZooKeeper answers a session's requests in order, so the
        # log lists every flagstaff write that the reads saw.
        reading = [(n, zk.get_async(store._path(n), watch=self._on_data)) for n in dirty]
        listing = (
            zk.get_children_async(self._root, watch=self._on_children, include_data=True)
            if children_dirty
            else None
        )
        # And, speculatively, the entries the cursor predicts next (one per dirty flag): most
        # changes are flagstaff's own writes, whose entries are then at hand without a second
        # round trip. Sent after the flag reads, so they see at least what those saw.
        ahead = [
            f"{_HISTORY_PREFIX}{seq:010d}" for seq in range(self._cursor + 1, self._cursor + 1 + len(dirty))
        ]
        log_read = self._read_log(ahead)
        reads = _collect(reading, timeout)
        candidates: list[_Candidate] = []
        unarmed: set[str] = set()
        if listing is not None:
            try:
                children, stat = listing.get(timeout=timeout)
                pzxid = stat.pzxid
            except NoNodeError:
                self._watch_creation(self._root, self._on_children)
                self._wiped()
                return
            listed = {c for c in children if _is_flag_name(c)}
            with self._lock:
                unarmed = listed - self._armed - set(reads) - set(self._to_arm)
            candidates += [(pzxid, name, None) for name in (set(self._nodes) | dirty) - listed]
        elif len(reads) < len(dirty):
            # A flag vanished: the listing tells when (pzxid) and re-arms the children watch.
            with self._lock:
                self._children_dirty = True
            self._wake.set()
        new_stat, fetched = log_read(timeout)
        logged = self._expected_entries(new_stat)
        # Round trip 2 (often empty), pipelined: flags new in the listing, the log entries not
        # fetched ahead. An entry fetched ahead that the log's stat does not count is ignored:
        # it comes round again, counted, with the next change.
        reading = [(n, zk.get_async(store._path(n), watch=self._on_data)) for n in unarmed]
        entries = [zk.get_async(f"{self._hdir}/{n}") for n in logged or () if n not in ahead]
        if reading:
            reads.update(_collect(reading, timeout))
        with self._lock:
            self._armed |= set(reads)
        results, missing = _gather(entries, timeout)
        results += [fetched[n] for n in logged or () if n in fetched]
        # An entry counted by the stat (read before the entries fetched ahead) yet not found
        # ahead was pruned or renumbered: list the log, as for any other gap.
        missing = missing or any(n in ahead and n not in fetched for n in logged or ())
        if logged is None or missing:  # numbering jumped (a server restart renumbers): list the log
            history = self._catch_up_by_listing()
        else:
            history = self._history_candidates(results)
            if logged:
                self._cursor = _sequence(logged[-1])
            if new_stat is not None:
                self._log_stat = (new_stat.cversion, new_stat.numChildren)
        seen = {(name, zxid) for zxid, name, _ in history}
        # A read the log explains is the same change; the others were written by other clients.
        found: list[_Candidate] = [
            (n.mzxid, name, n) for name, n in reads.items() if (name, n.mzxid) not in seen
        ]
        self._apply(candidates + history + found)

    def _read_log(
        self, ahead: list[str]
    ) -> Callable[[float], tuple[ZnodeStat | None, dict[str, tuple[bytes, ZnodeStat]]]]:
        """Send the reads of the log's stat and of the entries ``ahead``; returns the function
        that waits for them: (the stat, or None without a log; the entries found, by name).

        One ``multiRead`` request where the server has it (a subscriber's requests per change
        are most of its work, fifty processes on two cores feel each), else pipelined reads.
        """
        zk, hdir = self._zk, self._hdir
        if self._store._multi_read:
            multi = self._store._send_multi_read([hdir, *(f"{hdir}/{n}" for n in ahead)])

            def wait(timeout: float) -> tuple[ZnodeStat | None, dict[str, tuple[bytes, ZnodeStat]]]:
                try:
                    answers = multi.get(timeout=timeout)
                except UnimplementedError:
                    log.info("zookeeper server has no multiRead (before 3.6): reading the log one by one")
                    self._store._multi_read = False
                    return self._read_log(ahead)(timeout)
                for answer in answers:
                    if isinstance(answer, Exception) and not isinstance(answer, NoNodeError):
                        raise answer
                head = answers[0]
                stat = None if isinstance(head, Exception) else head[1]
                found = {
                    n: a for n, a in zip(ahead, answers[1:], strict=True) if not isinstance(a, Exception)
                }
                return stat, found

            return wait
        log_stat = zk.exists_async(hdir)
        speculated = [(n, zk.get_async(f"{hdir}/{n}")) for n in ahead]

        def wait_each(timeout: float) -> tuple[ZnodeStat | None, dict[str, tuple[bytes, ZnodeStat]]]:
            return log_stat.get(timeout=timeout), dict(_answers(speculated, timeout))

        return wait_each

    def _arm_some(self) -> None:
        """Arm the data watches of the next batch of flags read without one.

        A flag that changed between that read and its watch (a write by another
        ZooKeeper client: flagstaff's own writes come through the history log)
        is marked dirty and read again; a flag gone is left to the listing.
        """
        batch, self._to_arm = self._to_arm[:_ARM_BATCH], self._to_arm[_ARM_BATCH:]
        store, timeout = self._store, self._store._remaining()
        pending = [(n, self._zk.exists_async(store._path(n), watch=self._on_data)) for n in batch]
        changed: list[str] = []
        gone = False
        for name, result in pending:
            stat = result.get(timeout=timeout)
            held = self._nodes.get(name)
            with self._lock:
                if stat is None:
                    gone = True
                elif name not in self._dirty:  # a notice may have come in already
                    self._armed.add(name)
                    if held is None or stat.mzxid > held.mzxid:
                        changed.append(name)
        if changed or gone:
            with self._lock:
                self._dirty.update(changed)
                self._children_dirty = self._children_dirty or gone
        if changed or gone or self._to_arm:
            self._wake.set()

    def _catch_up_from_history(self) -> None:
        """Deliver the history entries written since the cursor (pipelined reads)."""
        self._apply(self._catch_up_by_listing())

    def _catch_up_by_listing(self) -> list[_Candidate]:
        """List the log, read the entries after the cursor, move the cursor past them.
        Candidates, not yet applied."""
        timeout = self._store._remaining()
        listing = self._list_log(timeout)
        if listing is None:
            return []
        names, self._log_stat = listing
        logged = sorted((n for n in names if _sequence(n) > self._cursor), key=_sequence)
        results, _ = _gather([self._zk.get_async(f"{self._hdir}/{n}") for n in logged], timeout)
        if logged:  # entries missing here were pruned already: the flag reads cover them
            self._cursor = _sequence(logged[-1])
        return self._history_candidates(results)

    def _list_log(self, timeout: float) -> tuple[list[str], tuple[int, int]] | None:
        """The log's entry names (at most ``HISTORY_LIMIT`` and a little, one answer) and its
        (cversion, numChildren) at that moment; None if there is no log."""
        try:
            names, stat = self._zk.get_children_async(self._hdir, include_data=True).get(timeout=timeout)
        except NoNodeError:
            return None
        return names, (stat.cversion, stat.numChildren)

    def _wiped(self) -> None:
        """The chroot was deleted behind flagstaff's back: deliver Reset, not a deletion per flag.

        The client then loads an empty namespace without the marker and keeps the flags it
        holds (a wiped store is not believed). Flags deleted one by one before the chroot
        went were ordinary deletions and have been delivered as such.
        """
        had_flags = bool(self._nodes)
        self._nodes, self._gone, self._cursor, self._log_stat = {}, {}, -1, None
        self._log.clear()
        self._log_base = self._revision
        if had_flags:
            log.warning("zookeeper chroot %s was deleted; subscribers reset", self._root)
            self._publish(0, Reset(f"the ZooKeeper chroot {self._root} was deleted"))

    def _history_candidates(self, results: list[tuple[bytes, ZnodeStat]]) -> list[_Candidate]:
        """History entries as candidates (an entry too large to hold the text marks its flag dirty)."""
        candidates: list[_Candidate] = []
        truncated: set[str] = set()
        for data, stat in results:
            entry = _history_entry(data, stat)
            if entry is None:
                continue
            if entry.version is None:
                candidates.append((stat.czxid, entry.name, None))
            elif entry.after is None:
                truncated.add(entry.name)  # too large to log: the flag's own read delivers it
            else:
                record = Record(entry.name, entry.after, entry.version)
                candidates.append((stat.czxid, entry.name, _Node(record, stat.czxid)))
        if truncated:
            with self._lock:
                self._dirty |= truncated
            self._wake.set()
        return candidates

    def _history_cursor(self) -> tuple[int, tuple[int, int] | None]:
        """The newest history entry's sequence number (-1 if none) and the log's stat."""
        listing = self._list_log(self._store._remaining())
        if listing is None:
            return -1, None
        names, stat = listing
        return max((_sequence(n) for n in names), default=-1), stat

    def _expected_entries(self, stat: ZnodeStat | None) -> list[str] | None:
        """Names of the entries created since the cursor, predicted from the log's stat.

        Every child created or deleted raises the log's ``cversion`` by one and
        ``numChildren`` moves with them, so the entries created since the
        cursor number (Δcversion + ΔnumChildren) / 2, and ZooKeeper numbers new
        sequential children one after the other. That number is not the
        ``cversion`` itself (pruning raises it, not the numbering), and a server
        restart may renumber from the ``cversion``: an expected entry that is
        not there makes the caller list the log instead, as does None.
        """
        if stat is None:
            return []
        if self._log_stat is None:
            return [] if stat.numChildren == 0 else None
        cversion, count = self._log_stat
        created = (stat.cversion - cversion + stat.numChildren - count) // 2
        if created <= 0:
            return []
        if created > 3 * HISTORY_LIMIT:
            return None
        return [f"{_HISTORY_PREFIX}{seq:010d}" for seq in range(self._cursor + 1, self._cursor + 1 + created)]

    def _watch_creation(self, path: str, watch: Callable[[WatchedEvent], None]) -> None:
        """``path`` does not exist: watch for its creation (and look again if it appeared meanwhile)."""
        stat = self._zk.exists_async(path, watch=watch).get(timeout=self._store._remaining())
        if stat is not None:
            with self._lock:
                self._children_dirty = True
            self._wake.set()

    def _apply(self, candidates: list[_Candidate]) -> None:
        """Take the candidates in zxid order, skip what is not newer, deliver the rest."""
        candidates.sort(key=lambda c: (c[0], c[2] is None, c[1]))
        for zxid, name, node in candidates:
            held, gone = self._nodes.get(name), self._gone.get(name, -1)
            if (held is not None and zxid <= held.mzxid) or zxid <= gone:
                continue  # already delivered (or superseded): never go backwards
            if node is None:
                if held is None:
                    continue
                del self._nodes[name]
                self._gone[name] = zxid
            else:
                self._nodes[name] = node
                self._gone.pop(name, None)
            self._revision = max(zxid, self._revision + 1)
            change = Change(name, node.record if node else None, self._revision)
            self._log.append((zxid, change))
            if len(self._log) == self._log.maxlen:
                self._log_base = self._log[0][1].revision - 1
            self._publish(zxid, change)
        if len(self._gone) > 4 * _REPLAY_LIMIT:
            # Tombstones only guard against entries older than the deletion; keep the newest.
            newest = sorted(self._gone.items(), key=lambda kv: kv[1])[-_REPLAY_LIMIT:]
            self._gone = dict(newest)

    def _publish(self, zxid: int, event: WatchEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if isinstance(event, Reset):
                # The subscriber reloads and judges later changes by its own revision; the
                # zxids of a server that lost its data start again from below the old floor.
                sub.floor = 0
                sub.queue.push(event)
            elif zxid > sub.floor:
                sub.queue.push(event)

    def _admit(self) -> None:
        """Bring waiting subscribers up to date from the replay log, then make them live."""
        if not self._synced:
            return
        with self._lock:
            joining, self._joining = self._joining, []
        # Delivered outside the lock: callbacks run on this task (kazoo's thread takes the
        # lock to mark flags dirty). Only this task publishes, so nothing overtakes them.
        for sub in joining:
            if sub.floor < self._log_base:
                sub.queue.push(Reset("changes before the watch's revision are no longer known"))
            else:
                for zxid, change in list(self._log):
                    if zxid > sub.floor:
                        sub.queue.push(change)
        with self._lock:
            self._subscribers += [sub for sub in joining if not sub.queue.stopped]


class _Subscription:
    def __init__(self, mirror: _Mirror, queue: InlineDelivery) -> None:
        self._mirror = mirror
        self._queue = queue

    def stop(self) -> None:
        self._mirror.unsubscribe(self._queue)


def _history_entry(data: bytes, stat: ZnodeStat) -> HistoryEntry | None:
    try:
        doc = json.loads(data)
        return HistoryEntry(
            name=str(doc["name"]),
            revision=stat.czxid,
            version=doc.get("version"),
            at=float(doc["at"]),
            author=doc.get("author"),
            before=doc.get("before"),
            after=doc.get("after"),
        )
    except (ValueError, KeyError, TypeError):
        log.warning("skipping an unreadable history entry (czxid %d)", stat.czxid)
        return None


def _collect(pending: list[tuple[str, Any]], timeout: float) -> dict[str, _Node]:
    """The answers to pipelined reads of flags; the ones gone meanwhile are left out."""
    return {name: _Node.of(name, data, stat) for name, (data, stat) in _answers(pending, timeout)}


def _answers(pending: list[tuple[str, Any]], timeout: float) -> Iterator[tuple[str, Any]]:
    """(name, answer) for the pipelined reads that found their node."""
    for name, result in pending:
        try:
            yield name, result.get(timeout=timeout)
        except NoNodeError:
            continue


def _gather(pending: list[Any], timeout: float) -> tuple[list[Any], bool]:
    """The answers of pipelined reads that found their node, and whether any did not."""
    results: list[Any] = []
    missing = False
    for result in pending:
        try:
            results.append(result.get(timeout=timeout))
        except NoNodeError:
            missing = True
    return results, missing


def _sequence(entry: str) -> int:
    """The number of a history entry (``h-0000000042`` -> 42)."""
    return int(entry.removeprefix(_HISTORY_PREFIX))


def _is_flag_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name


def _require_name(name: str) -> None:
    from flagstaff.errors import ValidationError

    problems = validate_name(name)
    if problems:
        raise ValidationError(problems, flag=str(name))


def _check(name: str, expect: int | None, old: _Node | None) -> None:
    if expect is None:
        return
    actual = old.record.version if old else 0
    if actual != expect:
        raise ConflictError(name, expect, actual)
