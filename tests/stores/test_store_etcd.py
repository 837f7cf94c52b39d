"""The etcd store against a real etcd (single node per module), plus its fault tests."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from flagstaff.errors import StoreError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.stores import open_store
from flagstaff.stores.base import Change, Reset, Store, WatchEvent
from flagstaff.stores.etcd import EtcdStore
from flagstaff.testing import EventRecorder
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
from tests._support.etcd_server import EtcdCluster
from tests._support.network_faults import NetworkFaults, again_under_gevent, in_gevent_rerun
from tests._support.tcpproxy_er import TcpProxy

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1)
    yield cluster
    cluster.close()


class TestEtcdConformance(ReplayingStoreConformance):
    """The shared suite; stores reach etcd through a proxy so force_reset can cut them off."""

    contact_bound = 6.0  # 2 x the 3 s request timeout; the watchdog probes every 2 s (2 s timeout)
    resumes = True

    @pytest.fixture(autouse=True)
    def _server(self, etcd: EtcdCluster) -> Iterator[None]:
        self.etcd = etcd
        self.proxy = TcpProxy("127.0.0.1", etcd.nodes[0].client_port)
        yield
        self.proxy.close()

    def make_store(self, namespace: str) -> Store:
        return EtcdStore.from_url(f"etcd://{self.proxy.address}/{namespace}", store_runtime())

    def force_reset(self, store: Store) -> None:
        # Compact past what the watches have seen, then drop their connections: each one
        # resumes at a compacted revision, re-lists and delivers Reset.
        self.etcd.put("/unrelated/force-reset", "1")
        self.etcd.compact(self.etcd.put("/unrelated/force-reset", "2"))
        self.proxy.partition()
        self.proxy.heal()

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # What etcdctl put does: the key's value, nothing else.
        assert isinstance(store, EtcdStore)
        key = base64.b64encode(store._key(name).encode()).decode()
        self.etcd.call("kv/put", {"key": key, "value": base64.b64encode(data).decode()})

    def cut_off(self, store: Store) -> Callable[[], None]:
        self.proxy.partition()
        return self.proxy.heal

    def make_uncut_store(self, namespace: str) -> Store:
        return EtcdStore.from_url(self.etcd.url(namespace), store_runtime())

    def lose_history(self, store: Store) -> None:
        self.etcd.compact(self.etcd.put("/unrelated/lose-history", "1"))


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store(etcd: EtcdCluster, prefix: str) -> Iterator[EtcdStore]:
    s = EtcdStore.from_url(etcd.url(prefix), store_runtime())
    yield s
    s.close()


def test_open_store_by_url(etcd: EtcdCluster, prefix: str) -> None:
    s = open_store(etcd.url(prefix), runtime=store_runtime())
    try:
        assert isinstance(s, EtcdStore)
        assert s.url == etcd.url(prefix)
    finally:
        s.close()


def test_crud_cas_history(store: EtcdStore) -> None:
    check_crud_and_cas(store)


def test_marker_hidden_and_initialized(store: EtcdStore) -> None:
    check_marker(store)


def test_watch_order_and_silent_stop(etcd: EtcdCluster, store: EtcdStore, prefix: str) -> None:
    other = EtcdStore.from_url(etcd.url(prefix), store_runtime())
    try:
        check_watch_order(store, other)
    finally:
        other.close()


def test_revision_is_etcd_header_revision(etcd: EtcdCluster, store: EtcdStore) -> None:
    store.put("rev", doc(1))
    before = store.load().revision
    server_rev = etcd.put("/unrelated/key", "x")
    assert server_rev > before
    assert store.load().revision == server_rev


def test_out_of_band_keys(etcd: EtcdCluster, store: EtcdStore, prefix: str) -> None:
    # A flag written by any etcd client (etcdctl put /prefix/name '...') is a flag; nested keys are not.
    etcd.put(f"/{prefix}/plain", "1")
    etcd.put(f"/{prefix}/nested/deeper", "x")
    state = store.load()
    assert set(state.records) == {"plain"}
    assert state.records["plain"].raw == "1" and state.records["plain"].version == 1
    assert not state.initialized  # nothing went through flagstaff yet


def test_history_bounded(store: EtcdStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import flagstaff.stores.etcd as mod

    monkeypatch.setattr(mod, "HISTORY_LIMIT", 30)
    for i in range(mod._TRIM_EVERY):
        store.put(f"h{i % 3}", doc(i))
    entries = store.history(limit=1000)
    assert len(entries) == 30
    assert entries[0].after == doc(mod._TRIM_EVERY - 1)
    assert len(store.history("h0", limit=5)) == 5


def test_compaction_while_away_resets_and_relists(etcd: EtcdCluster, store: EtcdStore, prefix: str) -> None:
    store.put("c", doc(0))
    since = store.load().revision
    for i in range(1, 6):
        store.put("c", doc(i))
    compact_at = etcd.put("/unrelated/compact", "x")
    etcd.compact(compact_at)
    seen: list[WatchEvent] = []
    w = store.watch(seen.append, since)
    try:
        wait_until(lambda: bool(seen), 5)
        assert isinstance(seen[0], Reset) and "compact" in seen[0].reason
        store.put("c", doc(99))
        wait_until(lambda: any(isinstance(e, Change) and e.revision > compact_at for e in seen), 5)
    finally:
        w.stop()


def test_compaction_while_partitioned_follower_converges(etcd: EtcdCluster, prefix: str) -> None:
    proxy = TcpProxy("127.0.0.1", etcd.nodes[0].client_port)
    writer = EtcdStore.from_url(etcd.url(prefix), store_runtime())
    reader = EtcdStore.from_url(f"etcd://{proxy.address}/{prefix}", store_runtime())
    try:
        writer.put("k", doc(0))
        follower = Follower(reader)
        proxy.partition()
        for i in range(1, 20):
            writer.put("k", doc(i))
        etcd.compact(etcd.put("/unrelated/compact2", "x"))
        proxy.heal()
        took = wait_until(lambda: follower.snapshot().get("k") == doc(19), 5)
        assert took < 3.0
        assert follower.resets >= 1
        assert not follower.backwards
        follower.stop()
    finally:
        reader.close()
        writer.close()
        proxy.close()


class TestEtcdNetworkFaults(NetworkFaults):
    """The shared fault scenarios (network_faults.py) against etcd."""

    server_class = EtcdCluster
    store_class = EtcdStore.from_url
    heal_wait = 5.0
    hung_request_bound = 10.0  # bounded by the 3 s request timeout
    restart_wipes = False  # the node restarts on its data dir

    @pytest.fixture(autouse=True)
    def _server(self, etcd: EtcdCluster) -> None:
        self.server = etcd

    def via(self, prefix: str, address: str) -> str:
        return f"etcd://{address}/{prefix}"


@pytest.mark.slow
@in_gevent_rerun
def test_again_under_gevent() -> None:
    """Re-run this module's quick tests in a gevent-monkey-patched interpreter with the gevent runtime."""
    again_under_gevent(__file__)


def test_auth_and_no_secrets_in_logs(caplog: pytest.LogCaptureFixture, prefix: str) -> None:
    secret = "s3cr3t-Pa55word"
    cluster = EtcdCluster(1)
    try:
        cluster.call("auth/user/add", {"name": "root", "password": secret})
        cluster.call("auth/user/grant", {"user": "root", "role": "root"})
        cluster.call("auth/enable", {})
        caplog.set_level(logging.DEBUG, logger="flagstaff")
        good = EtcdStore.from_url(cluster.url(prefix, f"root:{secret}"), store_runtime())
        bad = EtcdStore.from_url(cluster.url(prefix, "root:wrong-" + secret), store_runtime())
        anonymous = EtcdStore.from_url(cluster.url(prefix), store_runtime())
        try:
            assert secret not in good.url
            good.put("a", doc(1))
            follower = Follower(good)
            good.put("a", doc(2))
            wait_until(lambda: follower.snapshot().get("a") == doc(2), 5)
            with pytest.raises(StoreError) as bad_exc:
                bad.get("a")
            assert secret not in str(bad_exc.value)
            with pytest.raises(StoreError):
                anonymous.get("a")
            cluster.nodes[0].kill()
            time.sleep(2.5)  # the watch and its watchdog log their failures
            follower.stop()
        finally:
            for s in (good, bad, anonymous):
                s.close()
        assert any(r.name.startswith("flagstaff") for r in caplog.records)
        assert all(secret not in r.getMessage() for r in caplog.records)
        assert secret not in caplog.text
    finally:
        cluster.close()


@pytest.mark.slow
def test_three_node_cluster_leader_stopped(prefix: str) -> None:
    cluster = EtcdCluster(3)
    writer = EtcdStore.from_url(cluster.url(prefix), store_runtime())
    readers = [EtcdStore.from_url(cluster.url(prefix), store_runtime()) for _ in range(3)]
    try:
        writer.put("lead", doc(0))
        followers = [Follower(r) for r in readers]
        leader = cluster.leader()
        errors: list[BaseException] = []
        cluster.nodes[leader].kill()
        # Readers evaluate from their snapshot throughout; the writer retries what etcd refuses.
        seq = 1
        deadline = time.monotonic() + 10
        while seq <= 20 and time.monotonic() < deadline:
            try:
                writer.put("lead", doc(seq))
                seq += 1
            except StoreUnavailable as exc:
                errors.append(exc)
                time.sleep(0.1)
            for f in followers:
                assert "lead" in f.snapshot()
        assert seq == 21, f"writes did not resume after the leader stopped: {errors[-1:]}"
        for f in followers:
            wait_until(lambda f=f: f.snapshot().get("lead") == doc(20), 5)  # type: ignore[misc]
            assert not f.backwards
            f.stop()
    finally:
        for r in readers:
            r.close()
        writer.close()
        cluster.close()


def test_wiped_prefix_resets_then_reinitializes(etcd: EtcdCluster, store: EtcdStore, prefix: str) -> None:
    store.put("keep", doc(1))
    follower = Follower(store)
    etcd.call("kv/deleterange", {"key": _b64(f"/{prefix}/"), "range_end": _b64(f"/{prefix}0")})
    wait_until(lambda: follower.resets >= 1, 3)
    state = store.load()
    assert not state.initialized and not state.records
    assert follower.snapshot() == {"keep": doc(1)}  # an empty, unmarked store is not believed
    store.put("new", doc(2))
    wait_until(lambda: follower.snapshot() == {"new": doc(2)}, 3)
    follower.stop()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_replaced_cluster_is_noticed_and_relisted(prefix: str) -> None:
    # A cluster rebuilt from scratch restarts its revisions below what the watch delivered:
    # the watchdog sees it, the watch re-lists (Reset) and follows the new cluster.
    cluster = EtcdCluster(1)
    try:
        store = EtcdStore.from_url(cluster.url(prefix))
        for i in range(30):
            store.put(f"old-{i % 3}", str(i))
        events: list[WatchEvent] = []
        watch = store.watch(events.append, store.load().revision)
        node = cluster.nodes[0]
        node.kill()
        shutil.rmtree(os.path.join(node.datadir, node.name))
        node.start()
        cluster.wait_ready()
        writer = EtcdStore.from_url(cluster.url(prefix))
        writer.put("fresh", "on")  # revision 2 or so, far below the 30-odd delivered
        # The outage itself is told too (Disconnected, then a Reset on reconnecting): look for
        # the re-list among the Resets, not as the first one.
        wait_until(lambda: any(isinstance(e, Reset) and "replaced" in e.reason for e in events), 10)
        writer.put("after", "25")
        wait_until(lambda: any(isinstance(e, Change) and e.name == "after" for e in events), 10)
        watch.stop()
        writer.close()
        store.close()
    finally:
        cluster.close()


def test_tls_to_the_gateway(prefix: str) -> None:
    # etcds:// speaks HTTPS, verified against the CA given; the watch stream too.
    cluster = EtcdCluster(1, tls=True)
    try:
        url = cluster.url(prefix)
        store = open_store(url, runtime=store_runtime())
        assert store.url.startswith("etcds://")
        events: list[WatchEvent] = []
        watch = store.watch(events.append, store.load().revision)
        store.put("secure", "on")
        wait_until(lambda: any(isinstance(e, Change) and e.name == "secure" for e in events), 10)
        watch.stop()
        store.close()
        # Not verified (no CA given: the system's authorities do not know ours): refused.
        unverified = open_store(url.partition("?")[0], runtime=store_runtime())
        with pytest.raises(StoreUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            unverified.get("secure")
        unverified.close()
        # Plain HTTP to a TLS port: refused too, never silently downgraded.
        plain = open_store(url.replace("etcds://", "etcd://").partition("?")[0], runtime=store_runtime())
        with pytest.raises(StoreError):
            plain.get("secure")
        plain.close()
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://127.0.0.1:2379/p?timout=3", r"unknown option 'timout'"),
        ("etcd://127.0.0.1:2379/p?timeout=soon", "timeout must be seconds"),
        ("etcd://127.0.0.1:2379/p?ca=/tmp/ca.pem", "need the etcds:// scheme"),
        ("etcds://127.0.0.1:2379/p?cert=/tmp/c.pem", "cert and key go together"),
        ("etcds://127.0.0.1:2379/p?ca=/nonexistent/ca.pem", "cannot load the TLS files"),
    ],
)
def test_url_options_are_checked(url: str, message: str) -> None:
    with pytest.raises(UnsupportedStoreURL, match=message):
        EtcdStore.from_url(url, store_runtime())


def test_url_timeout_is_used() -> None:
    store = EtcdStore.from_url("etcd://127.0.0.1:9/p?timeout=0.5", store_runtime())
    assert store._gw._timeout == 0.5
    store.close()


def test_tls_with_a_client_certificate(prefix: str) -> None:
    cluster = EtcdCluster(1, client_auth=True)
    try:
        store = open_store(cluster.url(prefix), runtime=store_runtime())
        assert store.put("mutual", "on").version == 1
        store.close()
        # The same CA, no client certificate: etcd refuses the handshake.
        anonymous = open_store(cluster.url(prefix).partition("&cert=")[0], runtime=store_runtime())
        with pytest.raises(StoreError):
            anonymous.get("mutual")
        anonymous.close()
    finally:
        cluster.close()


def test_a_probe_overtaken_by_the_stream_is_no_replaced_cluster(
    store: EtcdStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stream may deliver a newer revision while a probe is out; the probe's (older)
    # answer must not read as a cluster gone back in time.
    store.put("a", "on")
    events: list[WatchEvent] = []
    watch = store.watch(events.append, store.load().revision)
    probe = store._marker_revision

    def overtaken() -> tuple[int, int]:
        answer = probe()
        if not events:  # the first probe: three writes are delivered before its answer is seen
            for i in range(3):
                store.put("b", str(i))
            wait_until(lambda: len(events) >= 3, 5)
        return answer

    monkeypatch.setattr(store, "_marker_revision", overtaken)
    time.sleep(4.5)  # two probes
    assert len(events) >= 3 and not any(isinstance(e, Reset) for e in events)
    assert watch._rewound is False  # type: ignore[attr-defined]
    watch.stop()


def test_a_key_that_is_not_utf8_is_skipped_and_the_watch_goes_on(etcd: EtcdCluster, store: EtcdStore) -> None:
    # `etcdctl put` can write any key bytes; parsing one used to fail the whole range or watch reply.
    store.put("good", '"on"')
    recorder = EventRecorder()
    watch = store.watch(recorder, since=store.load().revision)
    bad_key = store._key("x").encode()[:-1] + b"x\xff"
    etcd.call(
        "kv/put", {"key": base64.b64encode(bad_key).decode(), "value": base64.b64encode(b'"on"').decode()}
    )
    store.put("good", '"off"')
    change = recorder.wait_for_change(lambda c: c.name == "good" and c.record is not None, 5)
    assert change.record is not None and change.record.raw == '"off"'
    assert set(store.load().records) == {"good"}
    watch.stop()


def test_load_pages_at_one_revision(
    etcd: EtcdCluster, store: EtcdStore, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A namespace is listed in pages (a whole 10,000-key reply used to outlast the request
    # timeout when many processes reloaded at once); every page reads at the first one's
    # revision, so a write landing between two pages is not half in the listing.
    import flagstaff.stores.etcd as etcd_module

    monkeypatch.setattr(etcd_module, "_LOAD_PAGE", 3)
    for i in range(8):
        store.put(f"f{i}", "on")
    # Keys sorting after the ".flagstaff/" meta range are the second listed range.
    for name in ("zz1", "zz2", "zz3", "zz4"):
        store.put(name, "off")
    calls: list[str] = []
    real_call = store._gw.call

    def call(path: str, body: dict[str, object], **kwargs: object) -> object:
        calls.append(path)
        if len(calls) == 2:  # between the first and the second page: another writer
            etcd.put(f"/{prefix}/f9", "on")
            etcd.put(f"/{prefix}/f0", "off")
        return real_call(path, body, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store._gw, "call", call)
    state = store.load()
    assert sorted(state.records) == sorted([f"f{i}" for i in range(8)] + ["zz1", "zz2", "zz3", "zz4"])
    assert state.records["f0"].raw == "on" and state.records["f0"].version == 1
    assert calls.count("kv/range") >= 3  # 8 flags in pages of 3, then the second range's pages
    monkeypatch.undo()
    again = store.load()
    assert "f9" in again.records and again.records["f0"].raw == "off"
    assert again.revision > state.revision
