"""How flagstaff's data sits on ZooKeeper, and the requests and handler kazoo lacks.

Layout
    One znode per flag, ``<chroot>/<name>``, holding the document text as
    UTF-8. flagstaff's own bookkeeping lives under ``<chroot>/.flagstaff``
    (never listed as a flag; flag names cannot start with a dot):
    ``initialized`` (the marker written with the first change) and
    ``history`` (a bounded log of sequential nodes ``h-0000000042``).

Reading in bulk
    Flags are read with ``multiRead`` (:class:`MultiRead`, one request per 200
    flags; pipelined single reads on servers before 3.6): kazoo has no call for
    it. :func:`collect`, :func:`answers` and :func:`gather` wait for pipelined
    reads, leaving out the nodes gone meanwhile.

The handler
    kazoo runs its connection and callbacks on a handler: kazoo's gevent
    handler when the runtime's tasks are greenlets, else :class:`PollHandler`
    (kazoo's threading handler with one ``poll(2)`` per ``select``).

The tree watch
    ZooKeeper 3.6 and later keep a *persistent recursive* watch (``addWatch``,
    :class:`AddWatch`): one request, and every node created, changed or
    deleted at or below a path is notified, for as long as the connection
    lasts (it is not re-armed by the server after a reconnect: kazoo sends no
    ``setWatches``, so the caller registers it again). kazoo only delivers
    notices to the one-shot watches it registered, by exact path;
    :func:`watch_tree` also routes the notices under the watched path to a
    callback, on kazoo's callback thread like any watch. A server before 3.6
    answers the unknown request with :class:`UnimplementedError` and closes the
    connection (the session survives).

The handshake
    kazoo waits for the server's answer to a connect request as long as the
    whole session timeout (10 s). A server that accepts the socket while it
    is still starting may never answer, which kept a follower away for that
    long after the server was back. :func:`bound_handshake` gives the
    answer :data:`HANDSHAKE_TIMEOUT` seconds; past that kazoo drops the
    socket and tries again with its usual (capped) backoff.
"""

from __future__ import annotations

import logging
import math
import select
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import (
    EXCEPTIONS,
    ConnectionClosedError,
    ConnectionLoss,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.connection import ConnectionHandler
from kazoo.protocol.serialization import (
    Connect,
    Watch,
    int_struct,
    multiheader_struct,
    read_buffer,
    stat_struct,
    write_string,
)
from kazoo.protocol.states import Callback, EventType, WatchedEvent, ZnodeStat

from flagstaff.runtime import Runtime
from flagstaff.stores._history import decode_entry
from flagstaff.stores.base import HistoryEntry, Record, decode_raw

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HISTORY",
    "HISTORY_PREFIX",
    "MARKER",
    "META",
    "MULTI_READ_CHUNK",
    "TRANSIENT",
    "AddWatch",
    "MultiRead",
    "Node",
    "PollHandler",
    "answers",
    "bound_handshake",
    "collect",
    "gather",
    "handler_for",
    "history_entry",
    "is_flag_name",
    "sequence",
    "unwatch_tree",
    "watch_tree",
]

log = logging.getLogger("flagstaff.stores.zookeeper")

META = ".flagstaff"
MARKER = "initialized"
HISTORY = "history"
HISTORY_PREFIX = "h-"
MULTI_READ_CHUNK = 200  # flags per multiRead request (documents are small; a chunk stays well under 1 MB)

# Errors meaning "the server could not be asked"; an operation retries them until its deadline.
TRANSIENT = (ConnectionLoss, SessionExpiredError, OperationTimeoutError, ConnectionClosedError)


HANDSHAKE_TIMEOUT = 2.0  # seconds a connect request waits for the server's answer


# Notices a persistent watch sends: kazoo's EventType values by ZooKeeper's numbers (no
# NodeChildrenChanged: a recursive watch reports the child itself).
_TREE_EVENTS = {1: EventType.CREATED, 2: EventType.DELETED, 3: EventType.CHANGED}


class _BoundedHandshake(ConnectionHandler):  # type: ignore[misc]
    """kazoo's connection, with the connect request's wait bounded and the notices of a
    persistent recursive watch routed (see the module doc)."""

    handshake_timeout = HANDSHAKE_TIMEOUT
    # (the watched path with the client's chroot, callback) while a tree watch is wanted
    tree: tuple[str, Callable[[WatchedEvent], None]] | None = None

    def _invoke(self, timeout: float, request: Any, xid: int | None = None) -> Any:
        if isinstance(request, Connect):
            timeout = min(timeout, self.handshake_timeout)
        return super()._invoke(timeout, request, xid)

    def _read_watch_event(self, buffer: bytes, offset: int) -> None:
        # kazoo's own one-shot watches first (the server sends one notice per path even when
        # both kinds of watch cover it), then the tree watch's callback.
        super()._read_watch_event(buffer, offset)
        tree, client = self.tree, self.client
        if tree is None or client._stopped.is_set():
            return
        watch, _ = Watch.deserialize(buffer, offset)
        root, callback = tree
        kind = _TREE_EVENTS.get(watch.type)  # state notices (type NONE) concern the connection
        if kind is None or not (watch.path == root or watch.path.startswith(root + "/")):
            return
        event = WatchedEvent(kind, client._state, client.unchroot(watch.path))
        client.handler.dispatch_callback(Callback("watch", callback, (event,)))


def bound_handshake(zk: Any, seconds: float = HANDSHAKE_TIMEOUT) -> None:
    """Give ``zk`` (a fresh, unstarted KazooClient) a connection whose handshake waits ``seconds``."""
    old = zk._connection
    bounded = _BoundedHandshake(zk, old.retry_sleeper, logger=old.logger, sasl_options=old.sasl_options)
    bounded.handshake_timeout = seconds
    zk._connection = bounded


def handler_for(runtime: Runtime) -> Any:
    """kazoo's handler for ``runtime``: asked what kind of event it makes, so that any runtime
    whose tasks are greenlets (its events are gevent's) gets kazoo's gevent handler."""
    if type(runtime.event()).__module__.startswith("gevent"):
        from kazoo.handlers.gevent import SequentialGeventHandler

        return SequentialGeventHandler()
    return PollHandler()


_POLL_READ = select.POLLIN | select.POLLPRI
_POLL_DONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


class PollHandler(SequentialThreadingHandler):  # type: ignore[misc]
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


class MultiRead:
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


PERSISTENT_RECURSIVE = 1  # AddWatchMode: the node and everything below it, until removed


class AddWatch:
    """ZooKeeper's ``addWatch`` request (opcode 106, servers 3.6+): a persistent watch.

    ``AddWatchRequest {ustring path; int mode}``; the answer carries only an
    error code. kazoo registers no watcher for it (``watcher`` is None): the
    notices reach :func:`watch_tree`'s callback instead.
    """

    type = 106
    watcher = None

    def __init__(self, path: str, mode: int = PERSISTENT_RECURSIVE) -> None:
        self.path = path
        self.mode = mode

    def serialize(self) -> bytes:
        return bytes(write_string(self.path) + int_struct.pack(self.mode))

    def deserialize(self, buf: bytes, offset: int) -> None:
        return None


def watch_tree(zk: Any, path: str, callback: Callable[[WatchedEvent], None]) -> Any:
    """Register a persistent recursive watch on ``path`` (below the client's chroot) and route
    its notices to ``callback``; the request's async result (UnimplementedError before 3.6).

    Call again after every reconnection: the server forgets the watch with the connection.
    ``zk`` must have had :func:`bound_handshake` (its connection routes the notices).
    """
    connection: _BoundedHandshake = zk._connection
    connection.tree = (zk.chroot + path, callback)
    result = zk.handler.async_result()
    zk._call(AddWatch(zk.chroot + path), result)
    return result


def unwatch_tree(zk: Any) -> None:
    """Stop routing tree notices (the server drops the watch with the session)."""
    connection: _BoundedHandshake = zk._connection
    connection.tree = None


@dataclass(frozen=True, slots=True)
class Node:
    """A flag as last read, with the zxids that place it in time."""

    record: Record
    mzxid: int

    @staticmethod
    def of(name: str, data: bytes | None, stat: ZnodeStat) -> Node:
        raw = decode_raw(data or b"")  # not UTF-8: one bad document, its bytes kept
        return Node(Record(name, raw, stat.version + 1), stat.mzxid)


def collect(pending: list[tuple[str, Any]], timeout: float) -> dict[str, Node]:
    """The answers to pipelined reads of flags; the ones gone meanwhile are left out."""
    return {name: Node.of(name, data, stat) for name, (data, stat) in answers(pending, timeout)}


def answers(pending: list[tuple[str, Any]], timeout: float) -> Iterator[tuple[str, Any]]:
    """(name, answer) for the pipelined reads that found their node."""
    for name, result in pending:
        try:
            yield name, result.get(timeout=timeout)
        except NoNodeError:
            continue


def gather(pending: list[Any], timeout: float) -> tuple[list[Any], bool]:
    """The answers of pipelined reads that found their node, and whether any did not."""
    results: list[Any] = []
    missing = False
    for result in pending:
        try:
            results.append(result.get(timeout=timeout))
        except NoNodeError:
            missing = True
    return results, missing


def sequence(entry: str) -> int:
    """The number of a history entry (``h-0000000042`` -> 42)."""
    return int(entry.removeprefix(HISTORY_PREFIX))


def is_flag_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and "/" not in name


def history_entry(data: bytes, stat: ZnodeStat) -> HistoryEntry | None:
    """The history entry a log node holds (its revision: the node's czxid); None if unreadable."""
    try:
        return decode_entry(data, stat.czxid)
    except ValueError:
        log.warning("skipping an unreadable history entry (czxid %d)", stat.czxid)
        return None
