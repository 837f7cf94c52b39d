"""benchmarks/bench_peers.py without the peers: its network guard, and the rows of a peer that
is not installed (`make test` has no peer SDK; the bench extra brings them)."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peers.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers_under_test", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_guard_refuses_non_loopback_and_counts_loopback(bench: ModuleType) -> None:
    originals = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with bench.no_network() as net:
            # TEST-NET-1 (RFC 5737): refused before any packet leaves, in the lookup or the connect.
            with pytest.raises(OSError, match="network refused"):
                socket.create_connection(("192.0.2.1", 80), timeout=1)
            raw = socket.socket()
            with pytest.raises(OSError, match="network refused"):
                raw.connect(("192.0.2.1", 80))
            raw.close()
            with socket.create_connection(server.getsockname(), timeout=5):
                pass
        assert any("192.0.2.1" in a for a in net.refused)
        assert any("127.0.0.1" in a for a in net.loopback)
        assert (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo) == originals
    finally:
        server.close()


def test_a_peer_not_installed_gets_rows_that_say_so(
    bench: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(tmp: Path) -> object:
        raise AssertionError("set up a peer that is not installed")

    monkeypatch.setattr(bench, "PEERS", [("Nothing", "flagstaff_no_such_sdk", "no-such-sdk", never)])
    report = bench.measure(quick=True)
    ours = [r for r in report.results if r.sdk == "flagstaff"]
    assert {r.case for r in ours} == set(bench.CASES) and all(r.ns and r.ns > 0 for r in ours)
    missing = [r for r in report.results if r.sdk == "Nothing"]
    assert [r.case for r in missing] == list(bench.CASES)
    assert all(r.ns is None and r.note == "not installed (pip install no-such-sdk)" for r in missing)
    assert not report.net.refused
    text = bench.table(report)
    assert "not installed (pip install no-such-sdk)" in text and "x flagstaff" in text
    rows = bench._rows(report)
    assert any(r.name == "Nothing: 10% rollout" and r.target.startswith("not installed") for r in rows)
