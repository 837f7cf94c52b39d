"""The ZooKeeper experiment switch against a real ZooKeeper, under threads and
gevent: fresh values through watches, the ``<`` rule, and a watcher that keeps
retrying until ZooKeeper appears."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gevent
import pytest
from kazoo.client import KazooClient

from flagstaff.compat import zkswitch
from flagstaff.compat.zkswitch import DataWatcher, Switchboard, selected_for_experiment
from flagstaff.runtime import GeventRuntime, Runtime, ThreadRuntime
from tests._support.zk_server import ZooKeeperServer, free_port, standalone

PATH = "/experiments/show_new_homepage"


@pytest.fixture(scope="module")
def zk_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = standalone(tmp_path_factory.mktemp("zk"))
    try:
        yield server.hosts
    finally:
        server.stop()


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
def test_watcher_keeps_retrying_until_zookeeper_appears(runtime: Runtime, tmp_path: Path) -> None:
    port = free_port()
    board = Switchboard(f"127.0.0.1:{port}", runtime=runtime, timeout=1.0)
    try:
        watcher = board.watcher(PATH)
        assert wait_for(lambda: watcher.last_error is not None, runtime)
        assert watcher.get_data() == (None, None)
        server = ZooKeeperServer(tmp_path, client_port=port)
        server.configure()
        server.start()
        try:
            server.wait_serving()
            client = KazooClient(hosts=server.hosts)
            client.start(timeout=15)
            client.create(PATH, b"5", makepath=True)
            try:
                assert wait_for(lambda: watcher.get_data()[0] == "5", runtime, timeout=30)
                assert watcher.last_error is None
            finally:
                client.stop()
                client.close()
        finally:
            server.stop()
    finally:
        board.close()
    if runtime.name == "gevent":
        gevent.sleep(0)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", [ThreadRuntime(), GeventRuntime()], ids=["threads", "gevent"])
def test_watcher_keeps_the_last_value_while_zookeeper_is_down(runtime: Runtime, tmp_path: Path) -> None:
    """The seed: "if the ZK read fails the greenlet will keep retrying"; meanwhile the
    last value keeps serving, and changes made after ZooKeeper comes back arrive."""
    server = standalone(tmp_path)
    board = Switchboard(server.hosts, runtime=runtime, timeout=2.0)
    try:
        writer = KazooClient(hosts=server.hosts)
        writer.start(timeout=15)
        writer.create(PATH, b"5", makepath=True)
        writer.stop()
        writer.close()
        watcher = board.watcher(PATH)
        assert wait_for(lambda: watcher.get_data()[0] == "5", runtime)
        server.stop()
        runtime.sleep(3)  # the session is lost; kazoo reconnects, the watcher waits on it
        assert watcher.get_data()[0] == "5"  # the last value, while ZooKeeper is away
        assert selected_for_experiment(104, watcher) and not selected_for_experiment(105, watcher)
        server.start()
        server.wait_serving()
        writer = KazooClient(hosts=server.hosts)
        writer.start(timeout=15)
        try:
            writer.set(PATH, b"7")
            assert wait_for(lambda: watcher.get_data()[0] == "7", runtime, timeout=60)
            assert selected_for_experiment(106, watcher)
        finally:
            writer.stop()
            writer.close()
    finally:
        board.close()
        server.stop()
    if runtime.name == "gevent":
        gevent.sleep(0)


MONKEY_PATCHED = r"""
from gevent import monkey
monkey.patch_all()
import json, sys, time
from kazoo.client import KazooClient
from flagstaff.compat import zkswitch

hosts, path = sys.argv[1], sys.argv[2]
board = zkswitch.configure(hosts)  # the default runtime: gevent, as the process is patched
watcher = zkswitch.DataWatcher(path)
shared = board.watcher(path)  # the one selected_for_experiment(user_id, path) reads
writer = KazooClient(hosts=hosts)
writer.start(timeout=15)
seen = []
for value in (b"1", b"30"):
    if writer.exists(path):
        writer.set(path, value)
    else:
        writer.create(path, value, makepath=True)
    deadline = time.monotonic() + 30
    current = lambda: {watcher.get_data()[0], shared.get_data()[0]}
    while current() != {value.decode()} and time.monotonic() < deadline:
        time.sleep(0.02)  # a patched sleep: the watcher's greenlet runs meanwhile
    seen.append([watcher.get_data()[0], sum(zkswitch.selected_for_experiment(u, path) for u in range(1000))])
writer.stop()
writer.close()
watcher.close()
board.close()
print(json.dumps({"runtime": board.runtime.name, "seen": seen}))
"""


def test_under_a_monkey_patched_gevent_process(zk_hosts: str, writer: KazooClient) -> None:
    """As the seed ran it: every socket patched, the watcher a greenlet."""
    proc = subprocess.run(
        [sys.executable, "-c", MONKEY_PATCHED, zk_hosts, PATH + "_patched"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"runtime": "gevent", "seen": [["1", 10], ["30", 300]]}


def test_golden_cases_through_the_switch(zk_hosts: str, writer: KazooClient) -> None:
    """tests/golden/compat.json's modulo100 cases, with the node holding the seed's bare
    "1" and then the golden document itself."""
    data = json.loads((Path(__file__).parents[1] / "golden" / "compat.json").read_text("utf-8"))
    cases = [c for c in data["cases"] if c["flag"] == "show_new_homepage_mod"]
    assert cases
    board = Switchboard(zk_hosts, runtime=ThreadRuntime())
    try:
        watcher = board.watcher(PATH)
        for raw in (b"1", json.dumps(data["flags"]["show_new_homepage_mod"]).encode()):
            if writer.exists(PATH):
                writer.set(PATH, raw)
            else:
                writer.create(PATH, raw, makepath=True)
            assert wait_for(lambda raw=raw: watcher.get_data()[0] == raw.decode(), board.runtime)
            for case in cases:
                user_id = int(case["context"]["user_id"])
                assert selected_for_experiment(user_id, watcher) is case["expect"]["enabled"], case["note"]
    finally:
        board.close()
