"""The Redis store against a real redis-server (one per module), plus its fault tests."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from flagstaff.errors import StoreError, StoreUnavailable, ValidationError
from flagstaff.model import decode_document
from flagstaff.stores import open_store
from flagstaff.stores.base import Change, Reset, Store, WatchEvent
from flagstaff.stores.redis import RedisStore
from flagstaff.testing.conformance import ReplayingStoreConformance
from tests._support.er_checks import (
    Follower,
    check_crud_and_cas,
    check_marker,
    check_watch_order,
    doc,
    store_runtime,
    wait_until,
)
from tests._support.network_faults import NetworkFaults, again_under_gevent, in_gevent_rerun
from tests._support.redis_server import RedisServer
from tests._support.tcpproxy_er import TcpProxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer()
    yield s
    s.close()


class TestRedisConformance(ReplayingStoreConformance):
    """The shared suite; stores reach Redis through a proxy so cut_off can partition them."""

    contact_bound = 6.0  # 2 x the 3 s socket timeout; a silent pub/sub connection is given up after 3 s
    resumes = True

    @pytest.fixture(autouse=True)
    def _server(self, server: RedisServer) -> Iterator[None]:
        self.server = server
        self.proxy = TcpProxy("127.0.0.1", server.port)
        yield
        self.proxy.close()

    def make_store(self, namespace: str) -> Store:
        return RedisStore.from_url(self.server.url(namespace, host_port=self.proxy.address), store_runtime())

    def cut_off(self, store: Store) -> Callable[[], None]:
        self.proxy.partition()
        return self.proxy.heal

    def make_uncut_store(self, namespace: str) -> Store:
        return RedisStore.from_url(self.server.url(namespace), store_runtime())

    def lose_history(self, store: Store) -> None:
        # The history list the watch would replay the missed notices from, gone.
        assert isinstance(store, RedisStore)
        self.server.admin().delete(store._history)

    def force_reset(self, store: Store) -> None:
        # A change whose notice is lost: the counter moves with no notice and no history entry,
        # and the subscribers are cut off (CLIENT KILL TYPE pubsub).
        assert isinstance(store, RedisStore)
        admin = self.server.admin()
        admin.incr(store._revision)
        admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # What redis-cli HSET does, with the counters moved the way a careful hand would.
        assert isinstance(store, RedisStore)
        admin = self.server.admin()
        admin.hset(store._flags, name, data)
        admin.hincrby(store._versions, name, 1)
        admin.incr(store._revision)
        admin.close()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(server: RedisServer, prefix: str) -> Iterator[RedisStore]:
    s = RedisStore.from_url(server.url(prefix), store_runtime())
    yield s
    s.close()


def test_open_store_by_url(server: RedisServer, prefix: str) -> None:
    s = open_store(server.url(prefix, db=3), runtime=store_runtime())
    try:
        assert isinstance(s, RedisStore)
        s.put("on_db3", doc(1))
        admin3 = redis.Redis(port=server.port, db=3, decode_responses=True)
        assert admin3.hget(f"{prefix}:flags", "on_db3") == doc(1)
        assert server.admin().hget(f"{prefix}:flags", "on_db3") is None  # db 0 untouched
    finally:
        s.close()


def test_crud_cas_history(store: RedisStore) -> None:
    check_crud_and_cas(store)


def test_marker_hidden_and_initialized(store: RedisStore) -> None:
    check_marker(store)


def test_watch_order_and_silent_stop(server: RedisServer, store: RedisStore, prefix: str) -> None:
    other = RedisStore.from_url(server.url(prefix), store_runtime())
    try:
        check_watch_order(store, other)
    finally:
        other.close()


def test_prefixes_are_isolated(server: RedisServer, store: RedisStore) -> None:
    other = RedisStore.from_url(server.url(f"other-{uuid.uuid4().hex[:6]}"), store_runtime())
    try:
        store.put("same", doc(1))
        assert other.get("same") is None
        assert other.load().records == {}
    finally:
        other.close()


def test_history_is_capped(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import flagstaff.stores.redis as mod

    monkeypatch.setattr(mod, "HISTORY_LIMIT", 10)
    for i in range(25):
        store.put(f"h{i % 2}", doc(i))
    entries = store.history(limit=100)
    assert len(entries) == 10
    assert entries[0].after == doc(24) and entries[0].before == doc(22)
    assert [e.name for e in store.history("h1", limit=3)] == ["h1"] * 3


def test_lost_notifications_client_kill_pubsub(server: RedisServer, store: RedisStore, prefix: str) -> None:
    writer = RedisStore.from_url(server.url(prefix), store_runtime())
    try:
        writer.put("k", doc(0))
        follower = Follower(store)
        time.sleep(0.3)  # subscribed
        admin = server.admin()
        for i in range(1, 30):
            if i % 5 == 0:
                admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            writer.put("k", doc(i))
        took = wait_until(lambda: follower.snapshot().get("k") == doc(29), 5)
        assert took <= 3.0
        assert not follower.backwards
        follower.stop()
    finally:
        writer.close()


def test_silently_lost_notice_is_reconciled(server: RedisServer, store: RedisStore, prefix: str) -> None:
    # A change that bumped the revision without any notice (as if the notice was dropped).
    store.put("q", doc(0))
    follower = Follower(store)
    admin = server.admin()
    admin.hset(f"{prefix}:flags", "q", doc(5))
    admin.incr(f"{prefix}:revision")
    took = wait_until(lambda: follower.snapshot().get("q") == doc(5), 5)
    assert took <= 3.0 and follower.resets >= 1
    follower.stop()


def test_flushall_reads_as_uninitialized_and_recovers(
    server: RedisServer, store: RedisStore, prefix: str
) -> None:
    store.put("keep", doc(1))
    follower = Follower(store)
    before = store.load().revision
    server.admin().flushall()
    state = store.load()
    assert not state.initialized and not state.records
    wait_until(lambda: follower.resets >= 1, 4)
    assert follower.snapshot() == {"keep": doc(1)}  # an empty, unmarked store is not believed
    rec = store.put("new", doc(2))
    assert rec.version == 1
    after = store.load()
    assert after.initialized and after.revision > before  # revisions never go backwards across a wipe
    wait_until(lambda: follower.snapshot() == {"new": doc(2)}, 4)
    follower.stop()


class TestRedisNetworkFaults(NetworkFaults):
    """The shared fault scenarios (network_faults.py) against Redis."""

    server_class = RedisServer
    store_class = RedisStore.from_url
    heal_wait = 6.0
    hung_request_bound = 6.0  # bounded by the 3 s socket timeout
    restart_wipes = True  # --save '': the server comes back empty

    @pytest.fixture(autouse=True)
    def _server(self, server: RedisServer) -> None:
        self.server = server

    def via(self, prefix: str, address: str) -> str:
        return self.server.url(prefix, host_port=address)


@pytest.mark.slow
@in_gevent_rerun
def test_again_under_gevent() -> None:
    """Re-run this module's quick tests in a gevent-monkey-patched interpreter with the gevent runtime."""
    again_under_gevent(__file__)


def test_password_and_no_secrets_in_logs(caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    secret = "s3cr3t-R3dis-pa55"
    server = RedisServer(password=secret)
    caplog.set_level(logging.DEBUG, logger="flagstaff")
    good = RedisStore.from_url(server.url(prefix), store_runtime())
    bad = RedisStore.from_url(server.url(prefix).replace(secret, "wrong-" + secret), store_runtime())
    try:
        assert secret not in good.url
        good.put("a", doc(1))
        follower = Follower(good)
        good.put("a", doc(2))
        wait_until(lambda: follower.snapshot().get("a") == doc(2), 5)
        with pytest.raises(StoreError) as bad_exc:
            bad.get("a")
        assert secret not in str(bad_exc.value)
        assert "credentials" in str(bad_exc.value)
        assert not isinstance(bad_exc.value, StoreUnavailable)  # a configuration error, not an outage
        seen: list[WatchEvent] = []
        bad_watch = bad.watch(seen.append, 0)
        server.kill()
        time.sleep(2.0)  # watches log their failures
        bad_watch.stop()
        follower.stop()
    finally:
        good.close()
        bad.close()
        server.close()
    assert any(r.name.startswith("flagstaff") for r in caplog.records)
    assert secret not in caplog.text


def test_watch_from_old_revision_replays_history(store: RedisStore) -> None:
    store.put("r", doc(1))
    old = store.load().revision
    store.put("r", doc(2))
    store.delete("r")
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, old)
    try:
        wait_until(lambda: len(seen) >= 2, 3)
        assert all(isinstance(e, Change) for e in seen)  # pub/sub cannot replay; the history list does
        first, second = seen[0], seen[1]
        assert isinstance(first, Change) and first.record is not None and first.record.raw == doc(2)
        assert isinstance(second, Change) and second.record is None and second.revision == first.revision + 1
    finally:
        w.stop()


def test_watch_from_before_trimmed_history_resets(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import flagstaff.stores.redis as mod

    monkeypatch.setattr(mod, "HISTORY_LIMIT", 3)
    store.put("t", doc(0))
    old = store.load().revision
    for i in range(1, 6):
        store.put("t", doc(i))
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, old)
    try:
        wait_until(lambda: bool(seen), 3)
        assert isinstance(seen[0], Reset)
    finally:
        w.stop()


def test_out_of_band_document_is_read(server: RedisServer, store: RedisStore, prefix: str) -> None:
    # What `redis-cli HSET NAME:flags some_flag '...'` leaves: a document without a version.
    server.admin().hset(f"{prefix}:flags", "oob", "not json at all")
    state = store.load()
    assert state.records["oob"].raw == "not json at all" and state.records["oob"].version == 1
    assert store.put("oob", doc(1), expect=1).version == 2


def test_a_value_that_is_not_utf8_is_one_bad_document(
    server: RedisServer, store: RedisStore, prefix: str
) -> None:
    # `redis-cli HSET` can store any bytes; one bad value must not fail the whole load.
    store.put("good", doc(1))
    raw = redis.Redis(port=server.port, password=server.password)  # bytes in, bytes out
    raw.hset(f"{prefix}:flags", "broken", b"\xff\xfe not utf-8")
    raw.close()
    state = store.load()
    assert state.records["good"].raw == doc(1)
    # Delivered as text with its bytes kept (not replaced by U+FFFD); validation refuses it.
    assert state.records["broken"].raw.encode("utf-8", "surrogateescape") == b"\xff\xfe not utf-8"
    with pytest.raises(ValidationError, match="byte 0xff at offset 0"):
        decode_document(state.records["broken"].raw)


def test_a_flag_name_that_is_not_utf8_is_skipped(server: RedisServer, store: RedisStore, prefix: str) -> None:
    store.put("good", doc(1))
    raw = redis.Redis(port=server.port, password=server.password)
    raw.hset(f"{prefix}:flags", b"x\xff", doc(2))
    raw.close()
    assert set(store.load().records) == {"good"}  # no flag can have that name; nothing fails


def test_a_password_in_the_query_is_masked_too() -> None:
    store = RedisStore.from_url("rediss://app:pw1@127.0.0.1:1/0?password=pw2&prefix=p", store_runtime())
    try:
        assert "pw1" not in store.url and "pw2" not in store.url
        assert store.url.startswith("rediss://app:***@127.0.0.1:1/0?") and "prefix=p" in store.url
    finally:
        store.close()
    tls = open_store("rediss://127.0.0.1:1/0")  # registered: connect() and --store take it
    assert isinstance(tls, RedisStore)
    tls.close()


def test_a_value_edited_by_hand_is_seen_within_the_content_interval(
    server: RedisServer, store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `redis-cli HSET NAME:flags f '...'` bumps no revision and publishes no notice: before the
    # content check, the follower kept the old value until something else reloaded it.
    import flagstaff.stores.redis as redis_module

    monkeypatch.setattr(redis_module, "CONTENT_INTERVAL", 0.5)
    admin = server.admin()
    admin.config_set("notify-keyspace-events", "")  # the periodic check alone
    store.put("hand", doc(0))
    store.put("kept", doc(0))
    follower = Follower(store)
    time.sleep(0.3)  # subscribed, baseline taken
    admin.hset(f"{prefix}:flags", "hand", doc(7))
    took = wait_until(lambda: follower.snapshot().get("hand") == doc(7), 5)
    assert took <= 0.5 + 1.5 and follower.resets == 1
    admin.hset(f"{prefix}:flags", "added_by_hand", doc(1))
    admin.hdel(f"{prefix}:flags", "kept")
    wait_until(lambda: "added_by_hand" in follower.snapshot() and "kept" not in follower.snapshot(), 5)
    resets = follower.resets
    time.sleep(1.2)  # the same edits, still unexplained, do not reset again and again
    assert follower.resets == resets
    # Written through flagstaff again: recorded, no reset for it.
    store.put("hand", doc(8))
    wait_until(lambda: follower.snapshot().get("hand") == doc(8), 5)
    time.sleep(1.2)
    assert follower.resets == resets
    follower.stop()


def test_with_keyspace_notifications_a_hand_edit_is_seen_at_once(
    server: RedisServer, store: RedisStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flagstaff.stores.redis as redis_module

    monkeypatch.setattr(redis_module, "CONTENT_INTERVAL", 600.0)  # only the notification can tell
    admin = server.admin()
    admin.config_set("notify-keyspace-events", "Kh")
    try:
        store.put("hand", doc(0))
        follower = Follower(store)
        time.sleep(0.3)
        for i in range(1, 11):  # flagstaff's own writes change the key too: never a reset
            store.put("hand", doc(i))
        wait_until(lambda: follower.snapshot().get("hand") == doc(10), 5)
        time.sleep(0.5)
        assert follower.resets == 0
        admin.hset(f"{prefix}:flags", "hand", doc(99))
        took = wait_until(lambda: follower.snapshot().get("hand") == doc(99), 5)
        assert took <= 1.0 and follower.resets == 1
        follower.stop()
    finally:
        admin.config_set("notify-keyspace-events", "")
