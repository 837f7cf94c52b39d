"""Health tells the truth: a client cut off from its store turns stale within the store's
stated bound and live again once it is back; /healthz and the Prometheus metrics say so.

Networked stores run against real servers reached through a loopback TCP proxy, which
partitions (drops connections, refuses new ones) or blackholes (forwards nothing).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.testclient import TestClient

import flagstaff.metrics
from flagstaff.client import Client, Options, State
from flagstaff.http.app import Settings, create_app
from flagstaff.stores.base import Store
from flagstaff.stores.etcd import EtcdStore
from flagstaff.stores.file import FileStore
from flagstaff.stores.redis import RedisStore
from flagstaff.stores.sqlite import SQLiteStore
from flagstaff.stores.zookeeper import ZooKeeperStore
from flagstaff.testing import wait_until
from tests._support.etcd_server import EtcdCluster
from tests._support.redis_server import RedisServer
from tests._support.tcpproxy_er import TcpProxy
from tests._support.tcpproxy_zk import TcpProxy as ZkProxy
from tests._support.zk_server import ZooKeeperServer, standalone

pytestmark = pytest.mark.timeout(120)

# The bounds stated in docs/stores.md (seconds from losing the backend to "stale").
REDIS_BOUND = 6.0
ETCD_BOUND = 6.0
ZOOKEEPER_BOUND = 10.0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def etcd_cluster() -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(1)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = standalone(tmp_path_factory.mktemp("zk"))
    yield server
    server.stop()


def _follow(store: Store) -> Client:
    client = Client(store, Options(timeout=10))
    assert client.status().state is State.LIVE
    return client


def _goes_stale(client: Client, bound: float) -> None:
    wait_until(lambda: client.status().state is State.STALE, bound, message=lambda: repr(client.status()))
    status = client.status()
    assert status.last_error is not None and "lost contact" in status.last_error
    assert status.age is not None and status.age >= 0


def _comes_back(client: Client, write: Callable[[], object], name: str) -> None:
    """Live again after recovery, and following changes (a write made after it is seen)."""
    wait_until(lambda: client.status().state is State.LIVE, 20, message=lambda: repr(client.status()))
    status = client.status()
    assert status.age == 0 and status.last_error is None
    write()
    wait_until(lambda: client.is_enabled(name), 10)


def test_redis_partition_then_recovery(redis_server: RedisServer) -> None:
    proxy = TcpProxy("127.0.0.1", redis_server.port)
    url = redis_server.url("health-p", host_port=proxy.address)
    store, writer = RedisStore.from_url(url), RedisStore.from_url(redis_server.url("health-p"))
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.partition()
        _goes_stale(client, REDIS_BOUND)
        time.sleep(0.2)
        assert client.status().age >= 0.2  # type: ignore[operator]  # grows while cut off, not 0
        assert client.is_enabled("a")  # the flags held are still served
        writer.put("b", "on")  # missed by the watch while cut off
        proxy.heal()
        wait_until(lambda: client.is_enabled("b"), 20)
        _comes_back(client, lambda: writer.put("c", "on"), "c")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_redis_silent_network_is_noticed_within_the_bound(redis_server: RedisServer) -> None:
    # A blackhole: the connection stays open and nothing comes back (no reset, no error).
    proxy = TcpProxy("127.0.0.1", redis_server.port)
    store = RedisStore.from_url(redis_server.url("health-b", host_port=proxy.address))
    writer = RedisStore.from_url(redis_server.url("health-b"))
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.blackhole()
        _goes_stale(client, REDIS_BOUND)
        proxy.heal()
        proxy.partition()  # drop the held connections so the store reconnects afresh
        proxy.heal()
        _comes_back(client, lambda: writer.put("b", "on"), "b")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_etcd_partition_then_recovery(etcd_cluster: EtcdCluster) -> None:
    proxy = TcpProxy("127.0.0.1", etcd_cluster.nodes[0].client_port)
    store = EtcdStore.from_url(f"etcd://{proxy.address}/health-e")
    writer = EtcdStore.from_url(etcd_cluster.url("health-e"))
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.partition()
        _goes_stale(client, ETCD_BOUND)
        proxy.heal()
        _comes_back(client, lambda: writer.put("b", "on"), "b")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_etcd_silent_network_is_noticed_within_the_bound(etcd_cluster: EtcdCluster) -> None:
    proxy = TcpProxy("127.0.0.1", etcd_cluster.nodes[0].client_port)
    store = EtcdStore.from_url(f"etcd://{proxy.address}/health-eb")
    writer = EtcdStore.from_url(etcd_cluster.url("health-eb"))
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.blackhole()
        _goes_stale(client, ETCD_BOUND)
        proxy.heal()
        proxy.partition()
        proxy.heal()
        _comes_back(client, lambda: writer.put("b", "on"), "b")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_zookeeper_partition_then_recovery(zookeeper: ZooKeeperServer) -> None:
    proxy = ZkProxy(zookeeper.port)
    store = ZooKeeperStore.from_url(f"zookeeper://{proxy.address}/health-z")
    writer = ZooKeeperStore.from_url(f"zookeeper://{zookeeper.hosts}/health-z")
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.partition()
        _goes_stale(client, ZOOKEEPER_BOUND)
        proxy.heal()
        _comes_back(client, lambda: writer.put("b", "on"), "b")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_zookeeper_silent_network_is_noticed_within_the_bound(zookeeper: ZooKeeperServer) -> None:
    proxy = TcpProxy("127.0.0.1", zookeeper.port)
    store = ZooKeeperStore.from_url(f"zookeeper://{proxy.address}/health-zb")
    writer = ZooKeeperStore.from_url(f"zookeeper://{zookeeper.hosts}/health-zb")
    writer.put("a", "on")
    client = _follow(store)
    try:
        proxy.blackhole()
        _goes_stale(client, ZOOKEEPER_BOUND)
        proxy.heal()
        proxy.partition()
        proxy.heal()
        _comes_back(client, lambda: writer.put("b", "on"), "b")
    finally:
        client.close()
        store.close()
        writer.close()
        proxy.close()


def test_sqlite_unreadable_then_back(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/db/flags.db")
    store.put("a", "on")
    client = _follow(store)
    try:
        (tmp_path / "db").rename(tmp_path / "away")
        _goes_stale(client, 2.0)
        (tmp_path / "away").rename(tmp_path / "db")
        _comes_back(client, lambda: store.put("b", "on"), "b")
    finally:
        client.close()
        store.close()


def test_file_store_with_a_broken_file_is_not_live_without_an_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"a": "on"}))
    store = FileStore.from_url(f"file://{path}?poll=0.02")
    client = _follow(store)
    try:
        path.write_text('{"a": "on", "b": ')  # a hand edit saved half-way
        _goes_stale(client, 2.0)
        status = client.status()
        assert status.last_error is not None and str(path) in status.last_error
        assert client.is_enabled("a")  # the last good content is still served
        path.write_text(json.dumps({"a": "on", "b": "on"}))
        _comes_back(client, lambda: store.put("c", "on"), "c")
        assert client.is_enabled("b")
    finally:
        client.close()
        store.close()


# ------------------------------------------------------------------ /healthz and metrics


def test_healthz_reports_stale_with_its_age_and_reason(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path}/db/flags.db"
    app = create_app(url, token_db=str(tmp_path / "tokens.db"), settings=Settings(stale_days=30))
    state = app.state.flagstaff
    try:
        http = TestClient(app)
        live = http.get("/healthz")
        assert live.status_code == 200
        assert live.json()["state"] == "live" and live.json()["age"] == 0
        (tmp_path / "db").rename(tmp_path / "away")
        wait_until(lambda: state.client.status().state is State.STALE, 2.0)
        time.sleep(0.1)
        stale = http.get("/healthz")
        assert stale.status_code == 503
        body = stale.json()
        assert body["state"] == "stale" and body["status"] == "degraded"
        assert body["age"] >= 0.1
        assert "lost contact" in body["last_error"]
        metrics = http.get("/metrics").text
        assert 'flagstaff_store_state{state="stale"} 1' in metrics
        assert "flagstaff_client_evaluations_total" in metrics
        (tmp_path / "away").rename(tmp_path / "db")
        wait_until(lambda: http.get("/healthz").status_code == 200, 20)
    finally:
        state.close()


def test_evaluation_counts(tmp_path: Path) -> None:
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/flags.db")
    store.put("a", "on")
    store.put("p", json.dumps({"percentage": 50}))
    client = _follow(store)
    try:
        assert client.evaluations.total == 0
        client.is_enabled("a")
        client.is_enabled("p", {"user_id": "1"})
        client.evaluate("missing")
        client.is_enabled("missing")
        client.variant("a")
        client.is_enabled("p", object())  # not a context: off, counted as an error
        client.all({"user_id": "1"})  # one per flag
        counts = client.evaluations
        assert (counts.total, counts.unknown, counts.errors) == (6 + 2, 2, 1)
    finally:
        client.close()
        store.close()


def test_register_exposes_state_age_invalid_and_counts(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/db/flags.db")
    store.put("a", "on")
    store.put("bad", json.dumps({"percentage": "lots"}))  # one invalid document
    client = _follow(store)
    other = _follow(SQLiteStore.from_url(f"sqlite:///{tmp_path}/other.db"))
    registry = CollectorRegistry()
    try:
        flagstaff.metrics.register(client, registry)
        flagstaff.metrics.register(other, registry)  # a second client joins the same collector
        for _ in range(3):
            client.is_enabled("a")
        client.is_enabled("nope")

        def value(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, {"store": client.store_url, **labels})

        assert value("flagstaff_store_state", state="live") == 1
        assert value("flagstaff_store_state", state="stale") == 0
        assert value("flagstaff_data_age_seconds") == 0
        assert value("flagstaff_invalid_flags") == 1
        assert value("flagstaff_client_evaluations_total") == 4
        assert value("flagstaff_client_unknown_flag_evaluations_total") == 1
        assert registry.get_sample_value("flagstaff_flags", {"store": other.store_url}) == 0
        text = generate_latest(registry).decode()
        assert "# TYPE flagstaff_client_evaluations_total counter" in text

        (tmp_path / "db").rename(tmp_path / "away")
        wait_until(lambda: client.status().state is State.STALE, 2.0)
        time.sleep(0.1)
        assert value("flagstaff_store_state", state="stale") == 1
        assert (value("flagstaff_data_age_seconds") or 0) >= 0.1
        (tmp_path / "away").rename(tmp_path / "db")
    finally:
        client.close()
        other.close()
        store.close()


def test_register_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'flagstaff\[prometheus\]'"):
        flagstaff.metrics.register(object())  # type: ignore[arg-type]


def test_cli_watch_says_when_it_loses_the_store_and_carries_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flagstaff.cli import EXIT, main

    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path}/db/flags.db"
    store = SQLiteStore.from_url(url)
    store.put("a", "on")

    def outage_then_write() -> None:
        time.sleep(0.5)
        (tmp_path / "db").rename(tmp_path / "away")
        time.sleep(0.5)
        (tmp_path / "away").rename(tmp_path / "db")
        time.sleep(0.3)
        store.put("b", "on")

    thread = threading.Thread(target=outage_then_write)
    thread.start()
    code = main(["--store", url, "watch", "--count", "1", "--timeout", "20"])
    thread.join(5)
    store.close()
    assert code == EXIT.OK
    captured = capsys.readouterr()
    assert "lost contact with the store" in captured.err
    assert "  b  v1" in captured.out  # the change after the outage is printed
