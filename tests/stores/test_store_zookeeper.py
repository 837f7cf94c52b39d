"""The ZooKeeper store against a real standalone ZooKeeper on loopback.

One server per module (a JVM takes a second or two to start); each test gets
its own chroot. The conformance suite runs first, then what is particular to
ZooKeeper: raw values written by other clients (the first seed's ``1``),
transactions, digest ACLs, the 1 MB node limit, secrets kept out of logs.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, KazooState, WatchedEvent

from flagstaff.errors import ConflictError, StoreError, StoreUnavailable, UnsupportedStoreURL, ValidationError
from flagstaff.model import decode_document
from flagstaff.stores import open_store
from flagstaff.stores.base import Reset, Store, Write
from flagstaff.stores.zookeeper import MAX_ZNODE_BYTES, ZooKeeperStore
from flagstaff.stores.zookeeper._wire import AddWatch
from flagstaff.testing import EventRecorder, wait_until
from flagstaff.testing.conformance import ResumingStoreConformance, document
from tests._support.tcpproxy_zk import TcpProxy
from tests._support.zk_server import ZooKeeperServer, standalone

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = standalone(tmp_path_factory.mktemp("zk"))
    yield server
    server.stop()


@pytest.fixture
def kazoo(zk_server: ZooKeeperServer) -> Iterator[KazooClient]:
    """A bare kazoo client: what another program (or zkCli.sh) would do."""
    client = KazooClient(zk_server.hosts)
    client.start(10)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def chroot() -> str:
    return f"/t-{uuid.uuid4().hex[:12]}"


def _check_runtime(store: ZooKeeperStore) -> None:
    """Under the gevent run (test_store_zookeeper_gevent.py), prove gevent is what runs."""
    if os.environ.get("FLAGSTAFF_EXPECT_RUNTIME") == "gevent":
        assert store._runtime.name == "gevent"
        assert type(store._zk.handler).__name__ == "SequentialGeventHandler"


def expire_session(store: ZooKeeperStore, hosts: str) -> None:
    """Expire the store's session the way a server does: close it from another connection."""
    session_id, password = store._zk.client_id
    thief = KazooClient(hosts, client_id=(session_id, password))
    thief.start(10)
    thief.stop()
    thief.close()


class TestZooKeeperStore(ResumingStoreConformance):
    """The shared suite; stores reach ZooKeeper through a proxy so cut_off can partition them."""

    replays_changes = True
    contact_bound = 10.0  # the session timeout: kazoo reads a silent connection as dropped within 2/3 of it
    resumes = True  # on the same session; an expired one is a Reset (test_session_expiry_*)

    @pytest.fixture(autouse=True)
    def _server(self, zk_server: ZooKeeperServer) -> Iterator[None]:
        self.server = zk_server
        self.base = f"/conf-{uuid.uuid4().hex[:8]}"
        self.proxy = TcpProxy(zk_server.port)
        yield
        self.proxy.close()

    def make_store(self, namespace: str) -> Store:
        store = ZooKeeperStore.from_url(f"zookeeper://{self.proxy.address}{self.base}/{namespace}")
        _check_runtime(store)
        return store

    def force_reset(self, store: Store) -> None:
        assert isinstance(store, ZooKeeperStore)
        expire_session(store, self.server.hosts)

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # What zkCli.sh set does: the node's data, nothing else.
        assert isinstance(store, ZooKeeperStore)
        client = KazooClient(self.server.hosts)
        client.start(10)
        try:
            client.set(store._path(name), data)
        finally:
            client.stop()
            client.close()

    def cut_off(self, store: Store) -> Callable[[], None]:
        self.proxy.partition()
        return self.proxy.heal

    def make_uncut_store(self, namespace: str) -> Store:
        store = ZooKeeperStore.from_url(f"zookeeper://{self.server.hosts}{self.base}/{namespace}")
        _check_runtime(store)
        return store


# -- the first seed: values written by any ZooKeeper client -----------------------------


def test_bare_kazoo_set_is_delivered_raw(zk_server: ZooKeeperServer, kazoo: KazooClient) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}/experiments-{uuid.uuid4().hex[:6]}")
    _check_runtime(store)
    root = store.url.rpartition("/")[2]
    kazoo.ensure_path(f"/{root}")
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    kazoo.create(f"/{root}/show_new_homepage", b"1")
    change = recorder.wait_for_change(lambda c: c.name == "show_new_homepage", 5)
    assert change.record is not None
    assert (change.record.raw, change.record.version) == ("1", 1)
    kazoo.set(f"/{root}/show_new_homepage", b"on")
    change = recorder.wait_for_change(lambda c: c.record is not None and c.record.raw == "on", 5)
    assert change.record is not None and change.record.version == 2
    state = store.load()
    assert {n: r.raw for n, r in state.records.items()} == {"show_new_homepage": "on"}
    # Nothing written through flagstaff: the namespace carries no marker.
    assert state.initialized is False
    kazoo.delete(f"/{root}/show_new_homepage")
    gone = recorder.wait_for_change(lambda c: c.record is None, 5)
    assert gone.name == "show_new_homepage"
    assert gone.revision == store.load().revision
    store.close()


def test_invalid_document_written_out_of_band_is_delivered_raw(
    zk_server: ZooKeeperServer, kazoo: KazooClient, chroot: str
) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    good = store.put("good", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    kazoo.set(f"{chroot}/good", b"{broken")
    kazoo.create(f"{chroot}/binary", b"\xff\xfe\x00")
    recorder.wait_for_changes(2, 5)
    by_name = {c.name: c.record for c in recorder.changes()}
    assert by_name["good"] is not None and by_name["good"].raw == "{broken"
    assert by_name["good"].version == good.version + 1
    # Bytes that are not UTF-8 are kept (not replaced by U+FFFD) and refused as a document.
    assert by_name["binary"] is not None
    assert by_name["binary"].raw.encode("utf-8", "surrogateescape") == b"\xff\xfe\x00"
    with pytest.raises(ValidationError, match="byte 0xff"):
        decode_document(by_name["binary"].raw)
    store.close()


def test_mixed_writers_deliver_every_change_once_in_order(
    zk_server: ZooKeeperServer, kazoo: KazooClient, chroot: str
) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put("a", document(0))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    kazoo.create(f"{chroot}/b", b"0")
    for i in range(1, 21):
        store.put("a", document(i))
        kazoo.set(f"{chroot}/b", str(i).encode())
    wait_until(lambda: _last_raw(recorder, "a") == document(20), 5)
    wait_until(lambda: _last_raw(recorder, "b") == "20", 5)
    revisions = [c.revision for c in recorder.changes()]
    assert revisions == sorted(set(revisions))
    # Every flagstaff write to "a" arrives (the history log carries what watches coalesce)...
    a_versions = [c.record.version for c in recorder.changes() if c.name == "a" and c.record]
    assert a_versions == list(range(2, 22))
    # ... and out-of-band writes to "b" may coalesce, but never go backwards.
    b_values = [int(c.record.raw) for c in recorder.changes() if c.name == "b" and c.record]
    assert b_values == sorted(set(b_values))
    store.close()


@pytest.mark.parametrize("multi_read", [True, False], ids=["multiRead", "pipelined"])
def test_every_change_arrives_in_order_after_the_history_was_pruned(
    zk_server: ZooKeeperServer, chroot: str, monkeypatch: pytest.MonkeyPatch, multi_read: bool
) -> None:
    # Pruning deletes old entries, which raises the log's cversion but not the counter
    # that numbers new entries: the mirror must find new entries by name, not by cversion.
    url = f"zookeeper://{zk_server.hosts}{chroot}"
    writer = ZooKeeperStore.from_url(url)
    for start in range(0, 1300, 260):
        writer.put_many([Write(f"bulk{i}", "on") for i in range(start, start + 260)])
    writer.put("a", document(0))
    store = ZooKeeperStore.from_url(url)
    store._multi_read = multi_read  # False: as on a server before 3.6 (log read one by one)
    assert len(store.history(limit=5000)) <= 1000 + 100  # pruned
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    mirror = store._ensure_mirror()
    wait_until(lambda: not mirror._to_arm, 10)
    sync, slowed = mirror._incremental_sync, threading.Event()

    def slow_sync() -> None:  # the first notice waits while 30 writes land: watches coalesce
        if not slowed.is_set():
            slowed.set()
            time.sleep(0.5)
        sync()

    monkeypatch.setattr(mirror, "_incremental_sync", slow_sync)
    for i in range(1, 31):  # only the log carries each of these versions
        writer.put("a", document(i))
    wait_until(lambda: _last_raw(recorder, "a") == document(30), 10)
    a_versions = [c.record.version for c in recorder.changes() if c.name == "a" and c.record]
    assert a_versions == list(range(2, 32))
    assert slowed.is_set()
    store.close()
    writer.close()


def test_reads_fall_back_when_the_server_has_no_multi_read(
    zk_server: ZooKeeperServer, chroot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kazoo.exceptions import UnimplementedError

    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put_many([Write(f"f{i}", str(i)) for i in range(50)])
    fast = store.load()

    def refuse(names: list[str], timeout: float) -> None:
        raise UnimplementedError()  # what a 3.5 server answers to opcode 22

    monkeypatch.setattr(store, "_multi_read_many", refuse)
    slow = store.load()
    assert store._multi_read is False
    assert dict(slow.records) == dict(fast.records) and len(slow.records) == 50
    assert slow.records["f7"].raw == "7"
    store.close()


def test_the_handler_is_chosen_by_the_runtime_s_kind_of_task() -> None:
    from kazoo.handlers.gevent import SequentialGeventHandler

    from flagstaff.runtime import GeventRuntime, ThreadRuntime
    from flagstaff.stores.zookeeper._wire import PollHandler, handler_for

    assert isinstance(handler_for(GeventRuntime()), SequentialGeventHandler)
    assert isinstance(handler_for(ThreadRuntime()), PollHandler)


def test_poll_handler_select_reports_ready_objects() -> None:
    import socket

    from flagstaff.stores.zookeeper._wire import PollHandler

    handler = PollHandler()
    a, b = socket.socketpair()
    try:
        assert handler.select([a], [], [], 0.01) == ([], [], [])  # nothing to read yet
        assert handler.select([a], [b], [], 0.01) == ([], [b], [])  # b can be written to
        b.send(b"x")
        assert handler.select([a, a.fileno()], [], [], 1.0) == ([a, a.fileno()], [], [])
        b.close()
        a.recv(1)
        assert handler.select([a], [], [], 1.0) == ([a], [], [])  # a hang-up reads as ready
        with pytest.raises(ValueError):
            handler.select([a], [], [], -1)
    finally:
        a.close()


def test_put_many_over_one_transaction_is_refused_whole(zk_server: ZooKeeperServer, chroot: str) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    big = document(0) + " " * 600_000  # each under the node limit, both together over it
    with pytest.raises(StoreError, match="smaller batches"):
        store.put_many([Write("a", big), Write("b", big)])
    assert store.get("a") is None and store.get("b") is None
    records = store.put_many(
        [Write("a", big), Write("c", "on")]
    )  # under the limit: the history drops the texts
    assert records[0] is not None and records[0].version == 1 and store.get("a") is not None
    store.close()


def test_unconditional_delete_wins_a_race_with_a_writer(
    zk_server: ZooKeeperServer, chroot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"zookeeper://{zk_server.hosts}{chroot}"
    store, other = ZooKeeperStore.from_url(url), ZooKeeperStore.from_url(url)
    other.put("f", "on")  # written by the other store: ``store`` has to read it before deleting
    read, raced = store._read_many, threading.Event()

    def read_then_race(names: list[str], timeout: float) -> object:
        olds = read(names, timeout)
        if not raced.is_set():  # someone writes between our read and our transaction
            raced.set()
            other.put("f", "off")
        return olds

    monkeypatch.setattr(store, "_read_many", read_then_race)
    store.delete("f")  # retried, not a ConflictError
    assert raced.is_set() and other.get("f") is None
    store.close()
    other.close()


def test_a_repeated_write_is_one_transaction(
    zk_server: ZooKeeperServer, chroot: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"zookeeper://{zk_server.hosts}{chroot}"
    store, other = ZooKeeperStore.from_url(url), ZooKeeperStore.from_url(url)
    store.put("f", "1")
    reads: list[list[str]] = []
    read = store._read_many

    def counting(names: list[str], timeout: float) -> object:
        reads.append(list(names))
        return read(names, timeout)

    monkeypatch.setattr(store, "_read_many", counting)
    assert store.put("f", "2").version == 2
    assert reads == []  # the version came from the store's own last write
    other.put("f", "3")  # overtakes what ``store`` remembers
    assert store.put("f", "4").version == 4
    assert reads == [["f"]]  # the transaction failed on the version: one read, one retry
    entry = store.history("f", limit=1)[0]
    assert (entry.before, entry.after, entry.version) == ("3", "4", 4)
    store.close()
    other.close()


def _last_raw(recorder: EventRecorder, name: str) -> str | None:
    changes = [c for c in recorder.changes() if c.name == name]
    return changes[-1].record.raw if changes and changes[-1].record else None


# -- transactions, limits -------------------------------------------------------------


def test_put_many_is_all_or_nothing(zk_server: ZooKeeperServer, chroot: str) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put("a", document(1))
    written = store.put_many([Write("a", document(2), 1), Write("b", document(3), 0)])
    assert [r.version for r in written if r is not None] == [2, 1]
    before = store.load()
    with pytest.raises(ConflictError) as info:
        store.put_many([Write("a", document(4), 1), Write("c", document(5))])
    assert info.value.name == "a"
    after = store.load()
    assert after.revision == before.revision
    assert dict(after.records) == dict(before.records)
    store.close()


def test_documents_over_the_node_limit_are_refused_and_the_watch_lives(
    zk_server: ZooKeeperServer, chroot: str
) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    users = ",".join(f'"user-{i:07d}"' for i in range(80_000))  # ~1.1 MB
    too_big = '{"enabled": true, "users": [' + users + "]}"
    assert len(too_big.encode()) > MAX_ZNODE_BYTES
    with pytest.raises(StoreError, match="node limit"):
        store.put("big", too_big)
    # Just under the limit is fine, and reaches the watch (history keeps no copy of the text).
    near = '{"enabled": true, "users": [' + users[: MAX_ZNODE_BYTES - 100] + "]}"
    near = near[: MAX_ZNODE_BYTES - 10]
    record = store.put("near", near)
    change = recorder.wait_for_change(lambda c: c.name == "near", 5)
    assert change.record == record
    assert store.history("near")[0].after is None
    small = store.put("small", document(1))
    assert recorder.wait_for_change(lambda c: c.name == "small", 5).record == small
    assert store.get("big") is None
    store.close()


# -- credentials -------------------------------------------------------------------------


def test_digest_acl_readers_read_and_cannot_write(zk_server: ZooKeeperServer, chroot: str) -> None:
    hosts = zk_server.hosts
    writer = ZooKeeperStore.from_url(f"zookeeper://admin:s3cret-w@{hosts}{chroot}?readers=app:s3cret-r")
    record = writer.put("alpha", document(1))
    reader = ZooKeeperStore.from_url(f"zookeeper://app:s3cret-r@{hosts}{chroot}")
    assert reader.get("alpha") == record
    recorder = EventRecorder()
    reader.watch(recorder, since=reader.load().revision)
    with pytest.raises(StoreError, match="permission") as info:
        reader.put("alpha", document(2))
    assert "s3cret" not in str(info.value)
    writer.put("alpha", document(3))
    assert recorder.wait_for_change(lambda c: c.name == "alpha", 5).record == writer.get("alpha")
    # Without credentials (or with wrong ones) the flags cannot be read at all.
    stranger = ZooKeeperStore.from_url(f"zookeeper://app:wrong@{hosts}{chroot}?timeout=2")
    with pytest.raises(StoreError, match="permission"):
        stranger.get("alpha")
    read_only = open_store(f"zookeeper://admin:s3cret-w@{hosts}{chroot}?readonly=1")
    with pytest.raises(StoreError, match="read-only"):
        read_only.delete("alpha")
    with pytest.raises(UnsupportedStoreURL, match="open_store"):  # not silently ignored
        ZooKeeperStore.from_url(f"zookeeper://admin:s3cret-w@{hosts}{chroot}?readonly=1")
    for store in (writer, reader, stranger, read_only):
        store.close()


def test_world_readable_by_default_with_credentials(
    zk_server: ZooKeeperServer, kazoo: KazooClient, chroot: str
) -> None:
    writer = ZooKeeperStore.from_url(f"zookeeper://admin:pw@{zk_server.hosts}{chroot}")
    writer.put("alpha", document(1))
    acl, _ = kazoo.get_acls(f"{chroot}/alpha")
    # ZooKeeper masks digests when reading ACLs back: check the scheme, user and permissions.
    assert any(a.id.scheme == "digest" and a.id.id.startswith("admin:") and a.perms == 31 for a in acl)
    assert any(a.id.scheme == "world" and a.perms == 1 for a in acl)  # read only
    assert kazoo.get(f"{chroot}/alpha")[0] == document(1).encode()
    writer.close()


def test_url_shows_every_host_and_option_but_no_password() -> None:
    # The one redactor (stores/_url.py) masks what this store masked before it: the writer's
    # password and the readers' list; the ensemble and the other options read as given.
    store = ZooKeeperStore.from_url(
        "zookeeper://admin:pw@127.0.0.1:1,127.0.0.1:2/flags?readers=app:rd&timeout=1"
    )
    assert store.url == "zookeeper://admin:***@127.0.0.1:1,127.0.0.1:2/flags?readers=***&timeout=1"
    store.close()


def test_secrets_never_reach_logs_urls_or_errors(
    zk_server: ZooKeeperServer, chroot: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"zookeeper://admin:hunter2-pw@{zk_server.hosts}{chroot}?readers=app:hunter2-rd&timeout=1"
    store = open_store(url)
    assert isinstance(store, ZooKeeperStore)
    store.put("alpha", document(1))
    assert "hunter2" not in store.url and "hunter2" not in repr(store)
    store.close()
    down = ZooKeeperStore.from_url("zookeeper://admin:hunter2-pw@127.0.0.1:1/x?timeout=0.5")
    with pytest.raises(StoreUnavailable) as info:
        down.load()
    down.close()
    assert "hunter2" not in str(info.value)
    assert caplog.records, "nothing was logged at DEBUG: the check would prove nothing"
    assert not [r for r in caplog.records if "hunter2" in r.getMessage()]


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["zookeeper://127.0.0.1:2181", "zookeeper://127.0.0.1:2181/", "zookeeper:///flags", "zookeeper://a@h/x"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(UnsupportedStoreURL):
        ZooKeeperStore.from_url(url)


def test_flag_names_that_are_not_znode_names_are_refused(zk_server: ZooKeeperServer, chroot: str) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    for name in ("a/b", ".flagstaff", ""):
        with pytest.raises(ValidationError):
            store.put(name, document(1))
    assert store.get(".flagstaff") is None
    store.put("ok", document(1))
    assert set(store.load().records) == {"ok"}
    store.close()


def test_construction_does_not_block_while_the_server_is_away(tmp_path: Path) -> None:
    t0 = time.monotonic()
    store = ZooKeeperStore.from_url("zookeeper://127.0.0.1:1/flags?timeout=0.5")
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(StoreUnavailable):
        store.put("a", document(1))
    store.close()
    store.close()


# -- session expiry ------------------------------------------------------------------------


def test_session_expiry_resets_and_the_watch_carries_on(zk_server: ZooKeeperServer, chroot: str) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    other = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put("a", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    expire_session(store, zk_server.hosts)
    other.put("b", document(2))  # made while the session is gone
    assert isinstance(recorder.wait_for_reset(5), Reset)
    assert store.load().records["b"].raw == document(2)
    c = other.put("c", document(3))
    assert recorder.wait_for_change(lambda ch: ch.name == "c", 5).record == c
    store.close()
    other.close()


@pytest.mark.slow
@pytest.mark.parametrize("tree_watch", [True, False], ids=["tree-watch", "per-flag-watches"])
def test_repeated_session_expiry_leaks_nothing(
    zk_server: ZooKeeperServer, chroot: str, tree_watch: bool
) -> None:
    import tracemalloc

    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store._tree_watch = tree_watch  # False: as on a server before 3.6 (no addWatch)
    other = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    for i in range(20):
        store.put(f"f{i}", document(i))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    wait_until(lambda: store._mirror is not None and store._mirror._synced, 5)

    def kazoo_watchers() -> int:
        zk = store._zk
        return sum(map(len, zk._data_watchers.values())) + sum(map(len, zk._child_watchers.values()))

    def expire_and_resync(round_: int) -> None:
        resets = len(recorder.resets())
        expire_session(store, zk_server.hosts)
        wait_until(lambda: len(recorder.resets()) > resets, 10, message=f"no Reset in round {round_}")
        record = other.put("f0", document(1000 + round_))
        wait_until(
            lambda: recorder.changes() and recorder.changes()[-1].record == record,
            5,
            message=f"round {round_}: the watch did not carry on",
        )

    for i in range(5):  # warm up: first-time allocations, thread pools
        expire_and_resync(i)
    threads = threading.active_count()
    watchers = kazoo_watchers()
    tracemalloc.start()
    first = tracemalloc.take_snapshot()
    for i in range(5, 50):
        expire_and_resync(i)
        recorder.clear()
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(first, "filename"))
    tracemalloc.stop()
    assert threading.active_count() <= threads
    assert kazoo_watchers() <= watchers
    expected = 1 if tree_watch else 20 + 1  # one persistent watch, or one per flag and the listing's
    assert store._mirror is not None and store._mirror.watch_count == expected
    # Server side: the store's watches plus the other client's (no mirror there), no more.
    assert zk_server.watch_count() <= expected + 2
    assert grown < 2_000_000, f"memory grew by {grown} bytes over 45 expiries"
    store.close()
    other.close()


def test_the_steps_of_one_operation_share_its_timeout(zk_server: ZooKeeperServer, chroot: str) -> None:
    # A write is several requests (layout, read, transaction): together they keep to ``timeout``,
    # rather than each waiting the whole of it.
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}?timeout=5")
    seen: list[float] = []

    def steps() -> int:
        seen.append(store._remaining())
        time.sleep(0.3)
        seen.append(store._remaining())
        return 1

    try:
        assert store._call("testing", steps) == 1
        assert 4.0 < seen[0] <= 5.0
        assert seen[1] <= seen[0] - 0.25
        assert store._remaining() == 5.0  # outside an operation: the whole timeout
    finally:
        store.close()


def test_a_put_many_too_large_for_its_history_texts_still_arrives_whole(
    zk_server: ZooKeeperServer, chroot: str
) -> None:
    url = f"zookeeper://{zk_server.hosts}{chroot}"
    writer, reader = ZooKeeperStore.from_url(url), ZooKeeperStore.from_url(url)
    try:
        writer.put("c", document(0))
        recorder = EventRecorder()
        reader.watch(recorder, since=reader.load().revision)
        big = document(1, blob="x" * 400_000)  # two of them: the entries drop their texts
        out = writer.put_many([Write("a", big), Write("b", big), Write("c", document(2))])
        assert all(e.after is None for e in writer.history(limit=3) if e.name in "ab")
        changes = recorder.wait_for_changes(3, 10)
        assert [(c.name, c.more) for c in changes] == [("a", 2), ("b", 1), ("c", 0)]
        assert [c.record for c in changes] == out
        assert len({c.revision for c in changes}) == 1
    finally:
        reader.close()
        writer.close()


# -- the tree watch (a persistent recursive watch on the chroot, ZooKeeper 3.6+) ------------


def _count_requests(store: ZooKeeperStore) -> collections.Counter[str]:
    """Count the requests the store's kazoo client sends from now on, by kind; a read that
    arms a one-shot watch counts as ``<kind>+watch``."""
    counts: collections.Counter[str] = collections.Counter()
    zk = store._zk
    send = zk._call

    def counting(request: object, async_object: object) -> object:
        kind = type(request).__name__
        counts[kind + ("+watch" if getattr(request, "watcher", None) is not None else "")] += 1
        return send(request, async_object)

    zk._call = counting  # every kazoo call goes through _call
    return counts


def _kazoo_watchers(store: ZooKeeperStore) -> int:
    """One-shot watches the store's kazoo client holds."""
    zk = store._zk
    return sum(map(len, zk._data_watchers.values())) + sum(map(len, zk._child_watchers.values()))


def _settled(store: ZooKeeperStore) -> bool:
    """The mirror has read everything, armed its watches and admitted its subscribers (one
    still joining when the connection drops is sent Reset rather than the changes)."""
    mirror = store._mirror
    return (
        mirror is not None
        and mirror._synced
        and not mirror._full
        and not mirror._to_arm
        and not mirror._joining
    )


@pytest.mark.parametrize("tree_watch", [True, False], ids=["tree-watch", "per-flag-watches"])
def test_a_reconnect_registers_one_watch_not_one_per_flag(
    zk_server: ZooKeeperServer, chroot: str, kazoo: KazooClient, tree_watch: bool
) -> None:
    flags = 400
    writer = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    writer.put_many([Write(f"f{i}", document(i)) for i in range(flags)])
    proxy = TcpProxy(zk_server.port)
    store = ZooKeeperStore.from_url(f"zookeeper://{proxy.address}{chroot}")
    store._tree_watch = tree_watch  # False: as on a server before 3.6 (no addWatch)
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    wait_until(lambda: _settled(store), 10)
    session = store._zk.client_id
    sent = _count_requests(store)

    proxy.partition()  # the connection drops; the session lives on (10 s)
    wait_until(lambda: store._zk.state != KazooState.CONNECTED, 10)
    # Written meanwhile by another ZooKeeper client, so in no history log: only the re-read
    # after the reconnection finds them.
    kazoo.set(f"{chroot}/f1", document(1001).encode())
    kazoo.create(f"{chroot}/new", document(1002).encode())
    kazoo.delete(f"{chroot}/f2")
    proxy.heal()
    changes = recorder.wait_for_changes(3, 10)
    assert {(c.name, c.record.raw if c.record else None) for c in changes} == {
        ("f1", document(1001)),
        ("new", document(1002)),
        ("f2", None),
    }
    wait_until(lambda: _settled(store), 10)
    assert store._zk.client_id == session  # a reconnection, not a new session

    watching = sum(n for kind, n in sent.items() if kind.endswith("+watch"))
    if tree_watch:
        # One registration and the re-read: a multiRead per 200 flags and a few listings.
        assert sent["AddWatch"] == 1 and watching == 0, sent
        assert sum(sent.values()) <= 15, sent
        assert _kazoo_watchers(store) == 0 and store._mirror is not None and store._mirror.watch_count == 1
    else:
        # A watch per flag, armed again. The last batch leaves _to_arm before it is sent, so
        # wait for its requests rather than read the count at once.
        def armed() -> int:
            return sum(n for kind, n in sent.items() if kind.endswith("+watch"))

        wait_until(lambda: armed() >= flags, 10, message=lambda: repr(sent))
        assert sent["AddWatch"] == 0, sent
    # And the watch carries on after the reconnection.
    kazoo.set(f"{chroot}/f3", document(1003).encode())
    assert recorder.wait_for_change(lambda c: c.name == "f3", 5).record.raw == document(1003)  # type: ignore[union-attr]
    store.close()
    writer.close()
    proxy.close()


@pytest.mark.parametrize("tree_watch", [True, False], ids=["tree-watch", "per-flag-watches"])
def test_changes_by_other_clients_arrive_through_the_watch(
    zk_server: ZooKeeperServer, chroot: str, kazoo: KazooClient, tree_watch: bool
) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store._tree_watch = tree_watch
    store.put("a", document(1))
    store.put("b", document(2))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    wait_until(lambda: _settled(store), 10)
    # A plain ZooKeeper client: nothing in flagstaff's history log announces these.
    kazoo.set(f"{chroot}/a", document(3).encode())
    kazoo.create(f"{chroot}/c", document(4).encode())
    kazoo.delete(f"{chroot}/b")
    changes = recorder.wait_for_changes(3, 10)
    assert {(c.name, c.record.raw if c.record else None) for c in changes} == {
        ("a", document(3)),
        ("c", document(4)),
        ("b", None),
    }
    if tree_watch:
        # No one-shot watch anywhere: the persistent watch alone delivered them.
        assert _kazoo_watchers(store) == 0
    else:
        assert _kazoo_watchers(store) >= 2  # a data watch per flag and the listing's
    store.close()


def test_notices_of_the_history_log_mark_no_flag(zk_server: ZooKeeperServer, chroot: str) -> None:
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put("a", document(1))
    store.load()
    wait_until(lambda: _settled(store), 10)
    mirror = store._mirror
    assert mirror is not None and mirror._tree
    for path in (f"{chroot}/.flagstaff/history/h-0000000001", f"{chroot}/.flagstaff", f"{chroot}/a/b"):
        mirror._on_tree(WatchedEvent(EventType.CREATED, KazooState.CONNECTED, path))
    assert not mirror._dirty and not mirror._children_dirty
    mirror._on_tree(WatchedEvent(EventType.DELETED, KazooState.CONNECTED, f"{chroot}/a"))
    assert mirror._dirty == {"a"} and mirror._children_dirty  # (the task may take them any moment)
    store.close()


def test_a_server_without_persistent_watches_gets_a_watch_per_flag(
    zk_server: ZooKeeperServer, chroot: str, kazoo: KazooClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server before 3.6 answers addWatch as any request it does not know: UnimplementedError,
    # then it closes the connection (the session lives on). This server does the same with an
    # opcode it does not know either.
    monkeypatch.setattr(AddWatch, "type", 999)
    store = ZooKeeperStore.from_url(f"zookeeper://{zk_server.hosts}{chroot}")
    store.put("a", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    wait_until(lambda: not store._tree_watch and _settled(store), 10)
    assert store._mirror is not None and store._mirror.watch_count == 1 + 1
    kazoo.set(f"{chroot}/a", document(2).encode())
    assert recorder.wait_for_change(lambda c: c.name == "a", 5).record.raw == document(2)  # type: ignore[union-attr]
    store.close()
