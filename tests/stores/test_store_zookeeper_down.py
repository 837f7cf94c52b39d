"""A ZooKeeper that is not there: one overall deadline, one error line, nothing on stdout."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("kazoo")

from flagstaff.errors import StoreUnavailable
from flagstaff.stores.zookeeper import ZooKeeperStore


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_load_keeps_to_one_timeout_and_kazoo_stays_quiet(caplog: pytest.LogCaptureFixture) -> None:
    # Waiting for the first sync and then reading had a timeout each: 2x the stated bound.
    store = ZooKeeperStore(f"zookeeper://127.0.0.1:{refused_port()}/flags?timeout=1")
    caplog.set_level(logging.WARNING)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable for 1 s"):
            store.load()
        elapsed = time.monotonic() - started
    finally:
        store.close()
    assert elapsed < 1.8, elapsed  # one deadline of 1 s (it was 2 s and more)
    assert [r for r in caplog.records if r.name.startswith("flagstaff.stores.zookeeper.kazoo")] == []


def test_kazoo_warnings_still_shown_under_debug(caplog: pytest.LogCaptureFixture) -> None:
    store = ZooKeeperStore(f"zookeeper://127.0.0.1:{refused_port()}/flags?timeout=0.5")
    caplog.set_level(logging.DEBUG, logger="flagstaff.stores.zookeeper.kazoo")
    try:
        with pytest.raises(StoreUnavailable):
            store.load()
    finally:
        store.close()
    assert any(r.name == "flagstaff.stores.zookeeper.kazoo" for r in caplog.records)


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_against_a_down_server_prints_one_line(as_json: bool) -> None:
    url = f"zookeeper://127.0.0.1:{refused_port()}/flags?timeout=1"
    argv = [sys.executable, "-m", "flagstaff", *(["--json"] if as_json else []), "--store", url, "list"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 5
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    if as_json:
        assert json.loads(lines[0])["exit"] == 5
    else:
        assert lines[0].startswith("flagstaff: error: loading flags: ZooKeeper at")
