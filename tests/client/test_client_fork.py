"""A client survives os.fork(): the child restarts its watch and follows changes.

The child reports through a pipe and always leaves with ``os._exit`` so it
never runs the rest of the test session.
"""

from __future__ import annotations

import json
import os
import time

import pytest

import flagstaff
from flagstaff.client import State
from flagstaff.stores.memory import MemoryStore
from tests._support.client import eventually, unique_memory_url

pytestmark = pytest.mark.timeout(60)


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child did not finish in time")


def test_forked_child_restarts_the_watch() -> None:
    url = unique_memory_url()
    store = MemoryStore.from_url(url)
    store.put("f", "off")
    client = flagstaff.connect(url)
    assert client.status().state is State.LIVE
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a pre-fork server's worker
        code = 1
        try:
            os.close(read_end)
            # The memory store lives in this process now: a change made here can only
            # reach the client through a watch started in this process.
            writer = MemoryStore.from_url(url)
            writer.put("f", "on")
            writer.put("g", json.dumps({"users": ["ann"]}))
            seen = eventually(
                lambda: client.is_enabled("f") and client.is_enabled("g", {"user_name": "ann"}), 10
            )
            report = {"seen": seen, "state": client.status().state.value, "pid": os.getpid()}
            os.write(write_end, json.dumps(report).encode())
            client.close()
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        code = _wait_child(pid, 30)
        with os.fdopen(read_end, "rb") as pipe:
            report = json.loads(pipe.read() or b"{}")
    finally:
        client.close()
        store.close()
    assert code == 0
    assert report == {"seen": True, "state": "live", "pid": pid}


def test_parent_keeps_following_after_fork() -> None:
    url = unique_memory_url()
    store = MemoryStore.from_url(url)
    with flagstaff.connect(url) as client:
        pid = os.fork()
        if pid == 0:
            os._exit(0 if client.status().state is State.LIVE else 1)
        assert _wait_child(pid, 30) == 0
        store.put("f", "on")
        assert eventually(lambda: client.is_enabled("f"))
    store.close()
