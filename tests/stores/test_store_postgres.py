"""The PostgreSQL store against a real server (one per module, started by initdb), plus its fault tests."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from flagstaff.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    ValidationError,
    WriteOutcomeUnknown,
)
from flagstaff.model import decode_document
from flagstaff.stores import open_store
from flagstaff.stores.base import Change, Disconnected, Reset, Resumed, Store, WatchEvent, Write
from flagstaff.stores.postgres import PostgresStore
from flagstaff.testing import EventRecorder
from flagstaff.testing.conformance import ReplayingStoreConformance, document
from tests._support.er_checks import Follower, doc, store_runtime, wait_until
from tests._support.netfault import FaultProxy
from tests._support.network_faults import NetworkFaults, again_under_gevent, in_gevent_rerun
from tests._support.pg_server import PgServer
from tests._support.tcpproxy_er import TcpProxy

pytestmark = pytest.mark.timeout(120)

CONTACT_BOUND = 6.0  # docs/stores.md: at once on a broken connection, 1 s heartbeat + 3 s timeout when silent


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    s = PgServer()
    yield s
    s.close()


def terminate_watches(server: PgServer) -> int:
    """``pg_terminate_backend`` every watch connection (as an operator or a failover would)."""
    rows = server.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'flagstaff-watch'"
    )
    return len(rows)


class TestPostgresConformance(ReplayingStoreConformance):
    """The shared suite; stores reach the server through a proxy so cut_off can partition them."""

    contact_bound = CONTACT_BOUND
    resumes = True

    @pytest.fixture(autouse=True)
    def _server(self, server: PgServer) -> Iterator[None]:
        self.server = server
        self.proxy = TcpProxy("127.0.0.1", server.port)
        yield
        self.proxy.close()

    def make_store(self, namespace: str) -> Store:
        return PostgresStore.from_url(
            self.server.url(namespace, host_port=self.proxy.address), store_runtime()
        )

    def cut_off(self, store: Store) -> Callable[[], None]:
        self.proxy.partition()
        return self.proxy.heal

    def make_uncut_store(self, namespace: str) -> Store:
        return PostgresStore.from_url(self.server.url(namespace), store_runtime())

    def lose_history(self, store: Store) -> None:
        # The change rows the watch would catch up from, gone (trimmed, deleted by hand).
        assert isinstance(store, PostgresStore)
        self.server.sql("DELETE FROM flagstaff_changes WHERE namespace = %s", store.namespace)

    def force_reset(self, store: Store) -> None:
        # A change whose row is lost (the namespace's revision moves with no change row), then
        # the watches dropped: their catch-up finds the gap in the chain.
        assert isinstance(store, PostgresStore)
        self.server.sql(
            "UPDATE flagstaff_namespaces SET revision = nextval('flagstaff_revision') WHERE namespace = %s",
            store.namespace,
        )
        wait_until(lambda: terminate_watches(self.server) > 0, 5)

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # What an UPDATE in psql does: the triggers version it, record it and notify.
        assert isinstance(store, PostgresStore)
        self.server.sql(
            "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES (%s, %s, %s) "
            "ON CONFLICT (namespace, name) DO UPDATE SET raw = EXCLUDED.raw",
            store.namespace,
            name,
            data,
        )


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(server: PgServer, namespace: str) -> Iterator[PostgresStore]:
    s = PostgresStore.from_url(server.url(namespace), store_runtime())
    yield s
    s.close()


def test_open_store_by_both_schemes(server: PgServer, namespace: str) -> None:
    for scheme in ("postgresql", "postgres"):
        url = server.url(namespace).replace("postgresql://", f"{scheme}://")
        s = open_store(url, runtime=store_runtime())
        try:
            assert isinstance(s, PostgresStore) and s.namespace == namespace
            s.put(f"via-{scheme}", doc(1))
        finally:
            s.close()
    rows = server.sql("SELECT name FROM flagstaff_flags WHERE namespace = %s ORDER BY name", namespace)
    assert rows == [("via-postgres",), ("via-postgresql",)]


def test_bad_url_options_and_password_masked() -> None:
    with pytest.raises(StoreError, match="timeout"):
        PostgresStore.from_url("postgresql://u@127.0.0.1:1/db?timeout=-1")
    with pytest.raises(StoreError, match="namespace"):
        PostgresStore.from_url("postgresql://u@127.0.0.1:1/db?namespace=" + "x" * 201)
    s = PostgresStore.from_url("postgres://app:s3cret@127.0.0.1:1/db?namespace=n&sslmode=disable&password=p2")
    try:
        assert "s3cret" not in s.url and "p2" not in s.url
        with pytest.raises(StoreUnavailable) as info:  # nothing listens on port 1
            s.get("x")
        assert "s3cret" not in str(info.value)
    finally:
        s.close()


def test_put_many_is_all_or_nothing_and_watched_as_one_group(store: PostgresStore) -> None:
    store.put("a", doc(1))
    store.put("b", doc(2))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    before = store.load()
    with pytest.raises(ConflictError) as info:
        store.put_many([Write("a", doc(3), expect=1), Write("b", doc(4), expect=7)])
    assert info.value.name == "b"
    with pytest.raises(NotFoundError):
        store.put_many([Write("a", doc(3)), Write("zzz", None)])
    with pytest.raises(StoreError, match="twice"):
        store.put_many([Write("a", doc(3)), Write("a", doc(4))])
    assert store.load() == before  # nothing changed, not even the revision
    out = store.put_many(
        [Write("a", doc(5), expect=1), Write("c", doc(6), expect=0), Write("b", None)], author="al"
    )
    assert [r.version if r else None for r in out] == [2, 1, None]
    changes = recorder.wait_for_changes(3, 5)
    assert [(c.name, c.more) for c in changes] == [("a", 2), ("c", 1), ("b", 0)]
    assert [c.revision for c in changes] == sorted({c.revision for c in changes})
    assert changes[-1].revision == store.load().revision
    assert [e.author for e in store.history(limit=3)] == ["al", "al", "al"]
    assert store.put_many([]) == []


def test_concurrent_put_many_and_put_do_not_deadlock(
    store: PostgresStore, server: PgServer, namespace: str
) -> None:
    other = PostgresStore.from_url(server.url(namespace), store_runtime())
    errors: list[BaseException] = []

    def many() -> None:
        try:
            for i in range(30):
                other.put_many([Write(f"n{j}", doc(i)) for j in (3, 1, 2)])
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=many)
    t.start()
    for i in range(30):
        store.put(f"n{i % 3 + 1}", doc(100 + i))
    t.join(60)
    other.close()
    assert errors == [] and not t.is_alive()
    assert len(store.load().records) == 3


def test_a_value_that_is_not_utf8_is_one_bad_document(server: PgServer, store: PostgresStore) -> None:
    store.put("good", doc(1))
    follower = Follower(store)
    server.sql(
        "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES (%s, 'broken', %s)",
        store.namespace,
        b"\xff\xfe\x00 not utf-8",
    )
    state = store.load()
    assert state.records["good"].raw == doc(1)
    assert state.records["broken"].raw.encode("utf-8", "surrogateescape") == b"\xff\xfe\x00 not utf-8"
    with pytest.raises(ValidationError, match="byte 0xff at offset 0"):
        decode_document(state.records["broken"].raw)
    wait_until(lambda: "broken" in follower.snapshot(), 5)  # the watch delivered it, and goes on
    store.put("good", doc(2))
    wait_until(lambda: follower.snapshot().get("good") == doc(2), 5)
    follower.stop()


def test_hand_edit_in_sql_is_versioned_recorded_and_watched(server: PgServer, store: PostgresStore) -> None:
    store.put("h", doc(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    # Two rows in one statement: one transaction, delivered as one group.
    store.put("i", doc(2))
    server.sql(
        "UPDATE flagstaff_flags SET raw = convert_to(%s, 'UTF8') WHERE namespace = %s",
        doc(9),
        store.namespace,
    )
    changes = recorder.wait_for_changes(3, 5)
    assert [c.more for c in changes[1:]] == [1, 0]
    assert {c.name for c in changes[1:]} == {"h", "i"}
    h = store.get("h")
    assert h is not None and h.version == 2 and h.raw == doc(9)
    newest = store.history("h", limit=1)[0]
    assert (newest.before, newest.after, newest.author) == (doc(1), doc(9), None)


def test_watch_survives_terminated_backend_catches_up_and_resumes(
    server: PgServer, store: PostgresStore
) -> None:
    store.put("k", doc(0))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    wait_until(lambda: terminate_watches(server) > 0, 5)
    for i in range(1, 6):
        store.put("k", doc(i))  # some land while the watch reconnects: read back by revision
    change = recorder.wait_for_change(lambda c: c.record is not None and c.record.raw == doc(5), 5)
    wait_until(lambda: any(isinstance(e, Resumed) for e in recorder.events), 5)
    events = recorder.events
    lost = next(i for i, e in enumerate(events) if isinstance(e, Disconnected))
    assert not any(isinstance(e, Reset) for e in events[lost:])  # nothing was missed
    assert change.revision == store.load().revision


def test_watch_survives_a_server_restart(namespace: str) -> None:
    server = PgServer()
    writer = PostgresStore.from_url(server.url(namespace), store_runtime())
    reader = PostgresStore.from_url(server.url(namespace), store_runtime())
    try:
        writer.put("x", doc(0))
        follower = Follower(reader)
        events: list[WatchEvent] = []
        reader.watch(events.append, reader.load().revision)
        server.kill()
        with pytest.raises(StoreUnavailable):
            writer.put("x", doc(1))
        lost = wait_until(lambda: any(isinstance(e, Disconnected) for e in events), CONTACT_BOUND)
        assert lost < CONTACT_BOUND
        assert follower.snapshot() == {"x": doc(0)}
        server.start()
        assert writer.load().initialized  # the data survived the crash
        writer.put("x", doc(2))
        took = wait_until(lambda: follower.snapshot().get("x") == doc(2), 5)
        assert took <= 2.0 and not follower.backwards
        # The data survived with its change rows: the watch caught up and missed nothing.
        wait_until(lambda: any(isinstance(e, Resumed) for e in events), 5)
        assert not any(isinstance(e, Reset) for e in events)
        follower.stop()
    finally:
        reader.close()
        writer.close()
        server.close()


def test_disconnected_within_bound_on_a_silent_network(server: PgServer, namespace: str) -> None:
    proxy = TcpProxy("127.0.0.1", server.port)
    writer = PostgresStore.from_url(server.url(namespace), store_runtime())
    reader = PostgresStore.from_url(server.url(namespace, host_port=proxy.address), store_runtime())
    try:
        writer.put("s", doc(0))
        recorder = EventRecorder()
        reader.watch(recorder, since=reader.load().revision)
        time.sleep(0.3)
        proxy.blackhole()  # connections stay open and carry nothing
        start = time.monotonic()
        wait_until(lambda: any(isinstance(e, Disconnected) for e in recorder.events), CONTACT_BOUND)
        took = time.monotonic() - start
        writer.put("s", doc(1))
        proxy.heal()
        change = recorder.wait_for_change(lambda c: c.record is not None and c.record.raw == doc(1), 10)
        wait_until(lambda: any(isinstance(e, Resumed) for e in recorder.events), 5)
        events = recorder.events
        assert events.index(change) < next(i for i, e in enumerate(events) if isinstance(e, Resumed))
        print(
            f"\npostgres: Disconnected {took:.2f} s after the network went silent (bound {CONTACT_BOUND} s)"
        )
    finally:
        reader.close()
        writer.close()
        proxy.close()


def test_wiped_tables_read_as_uninitialized_and_reset(server: PgServer, store: PostgresStore) -> None:
    store.put("keep", doc(1))
    follower = Follower(store)
    before = store.load().revision
    server.sql(
        "DELETE FROM flagstaff_namespaces WHERE namespace = %s; ", store.namespace
    )  # the marker gone: as after a restore of an old dump
    server.sql("ALTER TABLE flagstaff_flags DISABLE TRIGGER USER")
    try:
        server.sql("DELETE FROM flagstaff_flags WHERE namespace = %s", store.namespace)
    finally:
        server.sql("ALTER TABLE flagstaff_flags ENABLE TRIGGER USER")
    state = store.load()
    assert not state.initialized and not state.records
    wait_until(lambda: follower.resets >= 1, 5)
    assert follower.snapshot() == {"keep": doc(1)}  # an empty, unmarked store is not believed
    store.put("new", doc(2))
    after = store.load()
    assert after.initialized and after.revision > before  # the sequence never goes back
    wait_until(lambda: follower.snapshot() == {"new": doc(2)}, 5)
    follower.stop()


def test_watch_from_before_trimmed_history_resets(server: PgServer, store: PostgresStore) -> None:
    store.put("t", doc(0))
    old = store.load().revision
    for i in range(1, 4):
        store.put("t", doc(i))
    server.sql(
        "DELETE FROM flagstaff_changes WHERE namespace = %s AND revision <= %s", store.namespace, old + 1
    )
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, old)
    try:
        wait_until(lambda: bool(seen), 3)
        assert isinstance(seen[0], Reset)
        store.put("t", doc(9))
        wait_until(
            lambda: any(isinstance(e, Change) and e.record and e.record.raw == doc(9) for e in seen), 3
        )
    finally:
        w.stop()


def test_watch_from_an_old_revision_replays(store: PostgresStore) -> None:
    store.put("r", doc(1))
    old = store.load().revision
    store.put("r", doc(2))
    store.delete("r")
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, old)
    try:
        wait_until(lambda: len(seen) >= 2, 3)
        first, second = seen[0], seen[1]
        assert isinstance(first, Change) and first.record is not None and first.record.raw == doc(2)
        assert isinstance(second, Change) and second.record is None
    finally:
        w.stop()


def test_namespace_is_a_parameter_not_sql(server: PgServer) -> None:
    ns = "x'); DROP TABLE flagstaff_flags; --"
    s = PostgresStore.from_url(
        server.url("ok").replace("namespace=ok", "namespace=" + ns.replace(" ", "%20"))
    )
    try:
        s.put("a", document(1))
        assert s.load().records["a"].raw == document(1)
        assert server.sql("SELECT count(*) FROM flagstaff_flags WHERE namespace = %s", ns) == [(1,)]
    finally:
        s.close()


class TestPostgresNetworkFaults(NetworkFaults):
    """The shared fault scenarios (network_faults.py) against PostgreSQL."""

    server_class = PgServer
    store_class = PostgresStore.from_url
    heal_wait = 6.0
    hung_request_bound = 6.0  # the 3 s request timeout (the watchdog shuts the socket)
    restart_wipes = False  # the data dir survives a kill -9

    @pytest.fixture(autouse=True)
    def _server(self, server: PgServer) -> None:
        self.server = server

    def via(self, prefix: str, address: str) -> str:
        return self.server.url(prefix, host_port=address)


@pytest.mark.slow
@in_gevent_rerun
def test_again_under_gevent() -> None:
    """Re-run this module's quick tests in a gevent-monkey-patched interpreter with the gevent runtime."""
    again_under_gevent(__file__)


def test_sigstop_then_writes_go_through(namespace: str) -> None:
    # Beyond the shared scenario: the store's own connection was the one hung; it recovers.
    server = PgServer()
    s = PostgresStore.from_url(server.url(namespace), store_runtime())
    try:
        s.put("a", doc(1))
        server.signal(signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable):
                s.put("a", doc(2))
        finally:
            server.signal(signal.SIGCONT)
        wait_until(lambda: _put_ok(s, "a", doc(3)), 10, step=0.1)
        record = s.get("a")
        assert record is not None and record.raw == doc(3)
    finally:
        s.close()
        server.close()


def _put_ok(store: Store, name: str, raw: str) -> bool:
    try:
        store.put(name, raw)
    except StoreUnavailable:
        return False
    return True


def test_forked_child_opens_its_own_connection(store: PostgresStore) -> None:
    store.put("f", doc(1))  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: a new connection; the parent's is left alone
        code = 1
        try:
            store.put("f", doc(2))
            record = store.get("f")
            code = 0 if record is not None and record.raw == doc(2) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    record = store.get("f")  # the parent's connection still works
    assert record is not None and (record.raw, record.version) == (doc(2), 2)


def test_put_many_lost_answer_before_and_after_commit(server: PgServer, namespace: str) -> None:
    # Cut before COMMIT went out: the server rolls the transaction back, so nothing is written
    # and the error says so; cut after it: the outcome is unknown, and it was in fact applied.
    proxy = FaultProxy(server.address)
    store = PostgresStore.from_url(server.url(namespace, host_port=proxy.address), store_runtime())
    direct = PostgresStore.from_url(server.url(namespace), store_runtime())
    try:
        store.put("m", doc(0))
        marker = uuid.uuid4().hex
        fired = proxy.drop_reply_after(marker.encode())
        with pytest.raises(StoreUnavailable) as info:
            store.put_many([Write("m", doc(1), expect=1), Write("n", f'{{"d": "{marker}"}}')])
        assert fired.is_set()
        assert not isinstance(info.value, WriteOutcomeUnknown) and "nothing was written" in str(info.value)
        assert direct.get("n") is None and direct.get("m") == store.get("m")
        fired = proxy.drop_reply_after(b"COMMIT")
        with pytest.raises(WriteOutcomeUnknown, match="outcome unknown"):
            store.put_many([Write("m", doc(2), expect=1), Write("n", doc(3), expect=0)])
        assert fired.is_set()
        m, n = direct.get("m"), direct.get("n")
        assert m is not None and n is not None and (m.raw, n.raw) == (doc(2), doc(3))
    finally:
        store.close()
        direct.close()
        proxy.close()
