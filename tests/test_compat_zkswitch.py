"""The ZooKeeper experiment switch against a real ZooKeeper, under threads and
gevent: fresh values through watches, the ``<`` rule, and a watcher that keeps
retrying until ZooKeeper appears."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import gevent
import pytest
from kazoo.client import KazooClient

from flagstaff.compat import zkswitch
from flagstaff.compat.zkswitch import DataWatcher, Switchboard, selected_for_experiment
from flagstaff.runtime import GeventRuntime, Runtime, ThreadRuntime
from hanoi_suite._servers import free_port, zookeeper_server

PATH = "/experiments/show_new_homepage"


@pytest.fixture(scope="module")
def zk_hosts() -> Iterator[str]:
    with zookeeper_server() as (hosts, _):
        yield hosts


@pytest.fixture
def writer(zk_hosts: str) -> Iterator[KazooClient]:
    """Any ZooKeeper client writing the node, as in the seed."""
    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=15)
    if client.exists("/experiments"):
        client.delete("/experiments", recursive=True)
    yield client
    client.stop()
    client.close()


def wait_for(check: Callable[[], bool], runtime: Runtime, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        runtime.sleep(0.02)
    return check()


@pytest.mark.parametrize("runtime", [ThreadRuntime(), GeventRuntime()], ids=["threads", "gevent"])
def test_watcher_follows_the_node(zk_hosts: str, writer: KazooClient, runtime: Runtime) -> None:
    board = Switchboard(zk_hosts, runtime=runtime)
    try:
        watcher = board.watcher(PATH)
        assert wait_for(lambda: watcher.wait(0), runtime)
        assert watcher.get_data() == (None, None)  # no node yet
        assert not selected_for_experiment(100, watcher)

        writer.create(PATH, b"1", makepath=True)  # the seed: 1 means 1% of users
        assert wait_for(lambda: watcher.get_data()[0] == "1", runtime)
        value, stat = watcher.get_data()
        assert value == "1" and stat.version == 0
        assert selected_for_experiment(100, watcher)  # 100 % 100 = 0 < 1
        assert not selected_for_experiment(101, watcher)  # 1 < 1 is false (the seed's <= said yes)
        assert sum(selected_for_experiment(u, watcher) for u in range(10_000)) == 100

        writer.set(PATH, b"50")
        assert wait_for(lambda: watcher.get_data()[0] == "50", runtime)
        assert watcher.get_data()[1].version == 1
        assert sum(selected_for_experiment(u, watcher) for u in range(1000)) == 500

        writer.set(PATH, b"off")  # a flagstaff document works too
        assert wait_for(lambda: watcher.get_data()[0] == "off", runtime)
        assert not selected_for_experiment(100, watcher)

        writer.set(PATH, b'{"users": ["7"], "percentage": 10}')
        assert wait_for(lambda: "users" in (watcher.get_data()[0] or ""), runtime)
        assert selected_for_experiment(7, watcher) and selected_for_experiment(205, watcher)
        assert not selected_for_experiment(215, watcher)

        writer.delete(PATH)
        assert wait_for(lambda: watcher.get_data() == (None, None), runtime)
        assert not selected_for_experiment(100, watcher)
    finally:
        board.close()


def test_invalid_value_selects_nobody(zk_hosts: str, writer: KazooClient) -> None:
    writer.create(PATH, b"banana", makepath=True)
    board = Switchboard(zk_hosts, runtime=ThreadRuntime())
    try:
        watcher = board.watcher(PATH)
        assert wait_for(lambda: watcher.get_data()[0] == "banana", board.runtime)
        assert not any(selected_for_experiment(u, watcher) for u in range(100))
    finally:
        board.close()


def test_module_level_api_as_in_the_seed(zk_hosts: str, writer: KazooClient) -> None:
    writer.create(PATH, b"1", makepath=True)
    board = zkswitch.configure(zk_hosts, runtime=ThreadRuntime())
    try:
        watcher = DataWatcher(PATH)
        assert wait_for(lambda: watcher.get_data()[0] == "1", board.runtime)
        value, znode = watcher.get_data()
        assert (value, znode.version) == ("1", 0)
        assert wait_for(lambda: selected_for_experiment(300, PATH), board.runtime)
        assert not selected_for_experiment(301, PATH)
        watcher.close()
    finally:
        board.close()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [ThreadRuntime(), GeventRuntime()], ids=["threads", "gevent"])
def test_watcher_keeps_retrying_until_zookeeper_appears(runtime: Runtime) -> None:
    port = free_port()
    board = Switchboard(f"127.0.0.1:{port}", runtime=runtime, timeout=1.0)
    try:
        watcher = board.watcher(PATH)
        assert wait_for(lambda: watcher.last_error is not None, runtime)
        assert watcher.get_data() == (None, None)
        with zookeeper_server(port) as (hosts, _):
            client = KazooClient(hosts=hosts)
            client.start(timeout=15)
            client.create(PATH, b"5", makepath=True)
            try:
                assert wait_for(lambda: watcher.get_data()[0] == "5", runtime, timeout=30)
                assert watcher.last_error is None
            finally:
                client.stop()
                client.close()
    finally:
        board.close()
    if runtime.name == "gevent":
        gevent.sleep(0)
