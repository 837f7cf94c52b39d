"""The client against every local store, by URL: following changes, faults, and
pre-fork workers that keep receiving changes made by another process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flagstaff
from flagstaff.client import State
from flagstaff.decision import Reason
from flagstaff.stores import Store, open_store
from tests._support.client import eventually, unique_memory_url

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["memory", "file", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind: str = request.param
    if kind == "memory":
        return unique_memory_url()
    if kind == "file":
        path = tmp_path / "flags.json"
        path.write_text("{}")
        return f"file://{path}"
    return f"sqlite:///{tmp_path / 'flags.db'}"


@pytest.fixture
def writer(url: str) -> Iterator[Store]:
    store = open_store(url)
    yield store
    store.close()


def test_client_follows_the_store(url: str, writer: Store, tmp_path: Path) -> None:
    writer.put("a", "on")
    writer.put("b", json.dumps({"users": ["ann"]}))
    with flagstaff.connect(url, cache=tmp_path / "cache.json") as client:
        assert client.status().state is State.LIVE
        assert client.is_enabled("a")
        assert client.is_enabled("b", {"user_name": "ann"})
        writer.put("a", "off")
        assert eventually(lambda: not client.is_enabled("a"))
        writer.delete("b")
        assert eventually(lambda: client.evaluate("b").reason is Reason.UNKNOWN_FLAG)

        def flip() -> None:
            time.sleep(0.1)
            writer.put("a", "on")

        task = client._runtime.spawn(flip)
        decision = client.wait_for_change("a", 10)
        task.join(10)
        assert decision is not None and decision.enabled


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("a forked worker did not finish in time")


@pytest.mark.parametrize("url", ["file", "sqlite"], indirect=True)
def test_pre_fork_workers_keep_receiving_changes(url: str, writer: Store) -> None:
    writer.put("f", "off")
    client = flagstaff.connect(url)
    assert client.status().state is State.LIVE
    workers = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: wait (bounded) for the parent's change
            code = 1
            try:
                os.close(read_end)
                seen = eventually(lambda: client.is_enabled("f"), 15)
                os.write(write_end, json.dumps({"seen": seen, "state": client.status().state.value}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        workers.append((pid, read_end))
    try:
        time.sleep(0.2)
        writer.put("f", "on")  # a change made in another process than the workers
        reports = []
        for pid, read_end in workers:
            assert _wait_child(pid, 30) == 0
            with os.fdopen(read_end, "rb") as pipe:
                reports.append(json.loads(pipe.read() or b"{}"))
    finally:
        client.close()
    assert reports == [{"seen": True, "state": "live"}] * 2


@pytest.mark.parametrize("url", ["file", "sqlite"], indirect=True)
def test_a_corrupted_flag_written_out_of_band_is_skipped(url: str, writer: Store, tmp_path: Path) -> None:
    writer.put("a", json.dumps({"users": ["ann"]}))
    writer.put("b", "on")
    with flagstaff.connect(url) as client:
        assert client.is_enabled("a", {"user_name": "ann"})
        if url.startswith("file:"):
            path = Path(url.removeprefix("file://"))
            path.write_text(json.dumps({"a": {"users": "ann", "percentag": 5}, "b": "off"}))  # a hand edit
        else:
            import sqlite3

            with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
                db.execute("UPDATE flagstaff_flags SET raw = ? WHERE name = ?", ("{not json", "a"))
                db.execute("UPDATE flagstaff_flags SET raw = ? WHERE name = ?", ("off", "b"))
            db.close()
        assert eventually(lambda: not client.is_enabled("b"))  # the good change got through
        assert client.is_enabled("a", {"user_name": "ann"})  # the bad one did not: last good kept
        status = client.status()
        assert set(status.invalid) == {"a"}
        assert status.state is State.LIVE


def test_unreachable_sqlite_store_at_start_serves_the_cache(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flags.db'}"
    cache = tmp_path / "cache.json"
    writer = open_store(url)
    writer.put("f", "on")
    with flagstaff.connect(url, cache=cache) as client:
        assert client.is_enabled("f")
    writer.close()
    for leftover in tmp_path.glob("flags.db*"):
        leftover.unlink()
    (tmp_path / "flags.db").mkdir()  # the database path is now unusable
    with flagstaff.connect(url, cache=cache, timeout=0.3) as client:
        status = client.status()
        assert status.state is State.CACHED
        assert status.last_error
        assert client.is_enabled("f")


def test_a_wiped_file_store_does_not_turn_flags_off(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"f": "on"}))
    url = f"file://{path}"
    cache = tmp_path / "cache.json"
    with flagstaff.connect(url, cache=cache) as client:
        assert client.is_enabled("f")
        for leftover in tmp_path.glob("*flags.json*"):
            leftover.unlink()  # the file (and its sidecar) vanish: empty and uninitialized
        assert eventually(lambda: client.status().state is State.STALE)
        assert client.is_enabled("f")
    with flagstaff.connect(url, cache=cache, timeout=0.3) as client:
        assert client.status().state is State.CACHED
        assert client.is_enabled("f")
