"""The store's one set of ZooKeeper watches, fanned out to its subscribers.

Watches
    One mirror per store. On ZooKeeper 3.6 and later it keeps one persistent
    recursive watch on the chroot (the *tree watch*, ``addWatch``, see
    :func:`~flagstaff.stores.zookeeper._wire.watch_tree`); a server before 3.6
    refuses it (and closes the connection), and the store then keeps, for
    good, a children watch on the chroot and a data watch on every flag. Either
    way a notice only marks the flag dirty (a creation or deletion also the
    listing), and the mirror's task re-reads what is dirty (pipelined) and
    delivers the differences. We use plain watches rather than kazoo's
    ``TreeCache``: it has no notion of a revision, and rebuilds after a
    reconnect without saying what it missed.

    A full read (start, reconnect, session expiry) registers the tree watch
    first, so that no change falls between it and the reads, then reads the
    flags in bulk with ``multiRead`` (one request per 200 flags). On a server
    before 3.6 the flags are read one by one (pipelined) and their data watches
    then armed in small steps in the background, a flag that changed in
    between being read again. A reconnect on the same session first delivers
    what the history log holds since the mirror's cursor (flagstaff's own
    writes, a few reads away), then re-reads everything (kazoo drops its watch
    callbacks when the connection drops, and the server the connection's
    watches), delivering the differences: afterwards the mirror holds what the
    server holds, deletions included. After a session expiry the mirror
    re-reads and delivers :class:`Reset`. Reconnection uses a bounded backoff
    (at most 0.5 s between attempts), so the store is back within a second or
    so of the server.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError, UnimplementedError
from kazoo.protocol.states import EventType, WatchedEvent, ZnodeStat

from flagstaff.runtime import Runtime
from flagstaff.stores._dispatch import InlineDelivery
from flagstaff.stores._history import HISTORY_LIMIT
from flagstaff.stores.base import Change, Disconnected, Record, Reset, Resumed, Watch, WatchEvent
from flagstaff.stores.zookeeper._wire import (
    HISTORY,
    HISTORY_PREFIX,
    TRANSIENT,
    Node,
    answers,
    collect,
    gather,
    history_entry,
    is_flag_name,
    sequence,
    unwatch_tree,
    watch_tree,
)

__all__ = ["Mirror", "Source", "Subscription"]

log = logging.getLogger("flagstaff.stores.zookeeper")

# Data watches armed per step of the mirror's task: small steps, so that after a reconnect
# the catch-up never waits behind a long queue of requests sent before the connection dropped.
_ARM_BATCH = 100
_REPLAY_LIMIT = 1000  # changes a mirror keeps to replay to late subscribers


class Source(Protocol):
    """What a mirror reads through: its :class:`~flagstaff.stores.zookeeper.ZooKeeperStore`."""

    _zk: KazooClient
    _runtime: Runtime
    _root: str
    _meta: str
    _multi_read: bool  # the mirror turns it off when the server has no multiRead
    _tree_watch: bool  # the mirror turns it off when the server has no addWatch (before 3.6)

    def _read_all(
        self, watch_children: Callable[[WatchedEvent], None] | None = None
    ) -> tuple[dict[str, Node], int]: ...
    def _remaining(self) -> float: ...
    def _path(self, name: str) -> str: ...
    def _send_multi_read(self, paths: list[str]) -> Any: ...
    def _forget_zxid_if_refused(self) -> None: ...


@dataclass(slots=True)
class _Subscriber:
    queue: InlineDelivery
    floor: int  # events at or before this zxid are already known to the subscriber
    told: bool = False  # sent Disconnected while joining: admitted with a Reset


# One candidate change found by a sync: (zxid, name, node or None for a delete).
_Candidate: TypeAlias = tuple[int, str, "Node | None"]


class Mirror:
    """The store's one set of ZooKeeper watches, fanned out to subscribers.

    What it watches: everything below the chroot with one tree watch (3.6+),
    else the chroot's children and every flag's data. ZooKeeper notices only
    mark things dirty (they arrive on kazoo's thread and must be quick); the
    mirror's task re-reads and delivers. Notices coalesce in the dirty set (and
    one-shot watches by themselves), so the history log (one
    entry per flagstaff write, made in the same transaction and so carrying
    the same zxid) is what delivers every intermediate change in order;
    reading the flags themselves catches writes made by other ZooKeeper
    clients. A change is delivered once: anything at or before the zxid
    already held for a flag (or its deletion) is skipped, so values never go
    backwards. The number of ZooKeeper watches is one (one per flag plus one
    before 3.6), however many subscribers there are.
    """

    def __init__(self, store: Source) -> None:
        self._store = store
        self._zk = store._zk
        self._runtime = store._runtime
        self._root = store._root
        self._hdir = f"{store._meta}/{HISTORY}"
        self._lock = self._runtime.lock()
        self._wake = self._runtime.event()
        self._nodes: dict[str, Node] = {}
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
        self._away_at: float | None = None  # when kazoo said the connection dropped (time.time())
        self._told = False  # subscribers were sent Disconnected: a Reset follows the next re-read
        self._synced = False
        self._synced_event = self._runtime.event()
        self._joining: list[_Subscriber] = []
        self._subscribers: list[_Subscriber] = []
        self._stopped = False
        # One persistent recursive watch on the chroot (3.6+), else the per-flag watches;
        # chosen once per store, on the first full read (see _register_tree).
        self._tree = store._tree_watch
        self._zk.add_listener(self._on_state)  # before the first check of the connection: no lost wake-up
        self._wake.set()
        self._task = self._runtime.spawn(self._run, name="flagstaff-zookeeper-mirror")

    def subscribe(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        queue = InlineDelivery(self._runtime, on_event)
        with self._lock:
            self._joining.append(_Subscriber(queue, since))
        self._wake.set()
        return Subscription(self, queue)

    def unsubscribe(self, queue: InlineDelivery) -> None:
        queue.stop()
        with self._lock:
            self._joining = [s for s in self._joining if s.queue is not queue]
            self._subscribers = [s for s in self._subscribers if s.queue is not queue]

    def stop(self) -> None:
        self._stopped = True
        self._zk.remove_listener(self._on_state)
        # The server keeps the tree watch until the session ends: the store closes it next.
        unwatch_tree(self._zk)
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

    def nodes_if_synced(self) -> Mapping[str, Node] | None:
        """The flags as the mirror holds them (a live view), or None before the first read
        or while a full re-read is due."""
        return self._nodes if self._synced and not self._full else None

    @property
    def watch_count(self) -> int:
        """ZooKeeper watches this mirror keeps armed (for leak checks)."""
        return 1 if self._tree else len(self._armed) + 1

    # Kazoo calls these on its own thread: record and wake, nothing more.

    def _on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            self._expired = True
            self._full = True
        elif state == KazooState.SUSPENDED:
            self._full = True  # kazoo forgets its watch callbacks when a connection drops
        if state == KazooState.CONNECTED:
            self._away_at = None
        elif self._away_at is None:
            self._away_at = time.time()
        self._wake.set()

    def _on_data(self, event: WatchedEvent) -> None:
        if event.type == EventType.NONE or self._stopped:
            return  # a connection notice; _on_state handles those
        with self._lock:
            name = event.path.rpartition("/")[2]
            self._armed.discard(name)
            self._dirty.add(name)
        self._wake.set()

    def _on_tree(self, event: WatchedEvent) -> None:
        """A notice of the tree watch: a flag created, changed or deleted marks it dirty (a
        deletion also the listing, which dates it); the chroot itself created or deleted marks
        the listing. Notices from flagstaff's own nodes (the history log) change no flag:
        every flagstaff write also changes its flag, whose notice wakes the mirror."""
        if self._stopped:
            return
        path = event.path
        if path == self._root:
            if event.type == EventType.CHANGED:
                return
            with self._lock:
                self._children_dirty = True
        else:
            name = path[len(self._root) + 1 :]
            if not path.startswith(self._root + "/") or not is_flag_name(name):
                return
            with self._lock:
                self._dirty.add(name)
                if event.type == EventType.DELETED:
                    self._children_dirty = True
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
                away_at = self._away_at
                if away_at is not None and self._synced and not self._told:
                    # Changes may be missed until the re-read after the reconnection.
                    self._told = True
                    self._publish(0, Disconnected("the ZooKeeper connection was lost", away_at))
                continue  # _on_state wakes us when the connection is back
            try:
                if self._full:
                    self._full_sync()
                    if self._told:
                        self._told = False
                        self._publish(0, Resumed("reconnected to ZooKeeper (same session)"))
                elif self._dirty or self._children_dirty:
                    self._incremental_sync()
                self._admit()
                if self._to_arm and not self._full:
                    self._arm_some()
                failures = 0
            except (*TRANSIENT, self._zk.handler.timeout_exception) as exc:
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
        if self._tree:
            # The watch first: every change from here on is notified, so none falls between
            # the reads below and the watch (a change both read and notified is read twice
            # and delivered once).
            self._register_tree()
        if self._synced and not expired:
            # Back on the same session: what flagstaff wrote meanwhile is in the log, a few
            # reads away. Deliver it before reading every flag (one request per 200 flags),
            # which only adds changes written by other ZooKeeper clients.
            self._catch_up_from_history()
        # History first: entries after this cursor are newer than what the reads below may miss.
        cursor, log_stat = self._history_cursor()
        try:
            nodes, pzxid = self._store._read_all(None if self._tree else self._on_children)
        except NoNodeError:
            if not self._tree:  # the tree watch notices the chroot's creation too
                self._watch_creation(self._root, self._on_children)
            if self._synced and not expired:
                self._wiped()
                return
            nodes, pzxid = {}, 0
        if not self._tree:
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

    def _register_tree(self) -> None:
        """Register the tree watch; on a server before 3.6, fall back for good to a watch per flag.

        Such a server also closes the connection: the re-read that follows the reconnection
        arms the per-flag watches.
        """
        try:
            watch_tree(self._zk, self._root, self._on_tree).get(timeout=self._store._remaining())
        except UnimplementedError:
            log.info("zookeeper server has no persistent watches (before 3.6): watching each flag")
            unwatch_tree(self._zk)
            self._tree = self._store._tree_watch = False

    def _incremental_sync(self) -> None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            children_dirty, self._children_dirty = self._children_dirty, False
        store, zk, timeout = self._store, self._zk, self._store._remaining()
        # Under the tree watch, reads arm nothing: the one watch covers every flag.
        on_data = None if self._tree else self._on_data
        # Round trip 1, pipelined: the dirty flags, the chroot's children, the history
        # log, in this order. ZooKeeper answers a session's requests in order, so the
        # log lists every flagstaff write that the reads saw.
        reading = [(n, zk.get_async(store._path(n), watch=on_data)) for n in dirty]
        listing = (
            zk.get_children_async(
                self._root, watch=None if self._tree else self._on_children, include_data=True
            )
            if children_dirty
            else None
        )
        # And, speculatively, the entries the cursor predicts next (one per dirty flag): most
        # changes are flagstaff's own writes, whose entries are then at hand without a second
        # round trip. Sent after the flag reads, so they see at least what those saw.
        ahead = [
            f"{HISTORY_PREFIX}{seq:010d}" for seq in range(self._cursor + 1, self._cursor + 1 + len(dirty))
        ]
        log_read = self._read_log(ahead)
        reads = collect(reading, timeout)
        candidates: list[_Candidate] = []
        unarmed: set[str] = set()
        if listing is not None:
            try:
                children, stat = listing.get(timeout=timeout)
                pzxid = stat.pzxid
            except NoNodeError:
                if not self._tree:
                    self._watch_creation(self._root, self._on_children)
                self._wiped()
                return
            listed = {c for c in children if is_flag_name(c)}
            with self._lock:
                # Flags listed that nothing reads or watches yet (under the tree watch: not held).
                if self._tree:
                    unarmed = {n for n in listed if n not in self._nodes and n not in reads}
                else:
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
        reading = [(n, zk.get_async(store._path(n), watch=on_data)) for n in unarmed]
        entries = [zk.get_async(f"{self._hdir}/{n}") for n in logged or () if n not in ahead]
        if reading:
            reads.update(collect(reading, timeout))
        if not self._tree:
            with self._lock:
                self._armed |= set(reads)
        results, missing = gather(entries, timeout)
        results += [fetched[n] for n in logged or () if n in fetched]
        # An entry counted by the stat (read before the entries fetched ahead) yet not found
        # ahead was pruned or renumbered: list the log, as for any other gap.
        missing = missing or any(n in ahead and n not in fetched for n in logged or ())
        if logged is None or missing:  # numbering jumped (a server restart renumbers): list the log
            history = self._catch_up_by_listing()
        else:
            history = self._history_candidates(results)
            if logged:
                self._cursor = sequence(logged[-1])
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
            return log_stat.get(timeout=timeout), dict(answers(speculated, timeout))

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
        logged = sorted((n for n in names if sequence(n) > self._cursor), key=sequence)
        results, _ = gather([self._zk.get_async(f"{self._hdir}/{n}") for n in logged], timeout)
        if logged:  # entries missing here were pruned already: the flag reads cover them
            self._cursor = sequence(logged[-1])
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
        truncated: dict[str, int] = {}
        for data, stat in results:
            entry = history_entry(data, stat)
            if entry is None:
                continue
            if entry.version is None:
                candidates.append((stat.czxid, entry.name, None))
            elif entry.after is None:
                truncated[entry.name] = stat.czxid  # too large to log: the flag's own read delivers it
            else:
                record = Record(entry.name, entry.after, entry.version)
                candidates.append((stat.czxid, entry.name, Node(record, stat.czxid)))
        if truncated:
            # Read now, so a put_many whose entries dropped their texts is still delivered in
            # one piece: a flag still at the entry's zxid joins the candidates; one written
            # since (or gone) is left to its own read, as before.
            timeout = self._store._remaining()
            reads = collect([(n, self._zk.get_async(self._store._path(n))) for n in truncated], timeout)
            later = set(truncated)
            for name, node in reads.items():
                if node.mzxid == truncated[name]:
                    candidates.append((node.mzxid, name, node))
                    later.discard(name)
            if later:
                with self._lock:
                    self._dirty |= later
                self._wake.set()
        return candidates

    def _history_cursor(self) -> tuple[int, tuple[int, int] | None]:
        """The newest history entry's sequence number (-1 if none) and the log's stat."""
        listing = self._list_log(self._store._remaining())
        if listing is None:
            return -1, None
        names, stat = listing
        return max((sequence(n) for n in names), default=-1), stat

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
        return [f"{HISTORY_PREFIX}{seq:010d}" for seq in range(self._cursor + 1, self._cursor + 1 + created)]

    def _watch_creation(self, path: str, watch: Callable[[WatchedEvent], None]) -> None:
        """``path`` does not exist: watch for its creation (and look again if it appeared meanwhile)."""
        stat = self._zk.exists_async(path, watch=watch).get(timeout=self._store._remaining())
        if stat is not None:
            with self._lock:
                self._children_dirty = True
            self._wake.set()

    def _apply(self, candidates: list[_Candidate]) -> None:
        """Take the candidates in zxid order, skip what is not newer, deliver the rest.

        The changes of one transaction (a ``put_many``) share a zxid: they are delivered
        together, in name order, at one revision, with ``Change.more`` counting down to
        the last of them.
        """
        candidates.sort(key=lambda c: (c[0], c[2] is None, c[1]))
        accepted: list[tuple[int, Change]] = []
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
            if not accepted or accepted[-1][0] != zxid:
                # One transaction, one revision (as load() reports it): a put_many's changes share it.
                self._revision = max(zxid, self._revision + 1)
            accepted.append((zxid, Change(name, node.record if node else None, self._revision)))
        left = collections.Counter(zxid for zxid, _ in accepted)
        for zxid, single in accepted:
            left[zxid] -= 1
            change = dataclasses.replace(single, more=left[zxid]) if left[zxid] else single
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
            if isinstance(event, Disconnected):
                # A watch not admitted yet was made before the loss too: tell it as well.
                for sub in self._joining:
                    sub.told = True
                subscribers += self._joining
        for sub in subscribers:
            if isinstance(event, Disconnected | Resumed):
                sub.queue.push(event)
            elif isinstance(event, Reset):
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
            if sub.told:
                sub.queue.push(Reset("reconnected to ZooKeeper"))
            elif sub.floor < self._log_base:
                sub.queue.push(Reset("changes before the watch's revision are no longer known"))
            else:
                for zxid, change in list(self._log):
                    if zxid > sub.floor:
                        sub.queue.push(change)
        with self._lock:
            self._subscribers += [sub for sub in joining if not sub.queue.stopped]


class Subscription:
    def __init__(self, mirror: Mirror, queue: InlineDelivery) -> None:
        self._mirror = mirror
        self._queue = queue

    def stop(self) -> None:
        self._mirror.unsubscribe(self._queue)
