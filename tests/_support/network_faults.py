"""Network-fault tests shared by the etcd and Redis stores (not a test module itself).

A backend's test module subclasses :class:`NetworkFaults` (``TestEtcdNetworkFaults``,
``TestRedisNetworkFaults``) and says only where its server is: an autouse fixture sets
``self.server`` to the module's server, ``server_class`` makes a fresh one for the tests
that kill or stop it, ``store_class`` opens a store, and ``via`` names the module server's
URL reached through a proxy. The scenarios, their assertions and their time bounds are
written here once; a bound that differs between backends is a class attribute the
subclass sets, with the reason beside it.

The scenarios, each with a follower (:class:`er_checks.Follower`, a client in miniature)
that must converge and never see a value go backwards:

- a partition during which 50 flags change and 5 are deleted, healed after 0.5 s;
- a blackholed connection: open, but carrying nothing, for 1 s;
- ``kill -9`` of the server and a restart on the same port (slow);
- a hung server (SIGSTOP): requests fail within the backend's timeout, and the follower
  catches up once it runs again.

:func:`again_under_gevent` re-runs a module's quick tests in a gevent-monkey-patched
interpreter with the gevent runtime, for both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import ClassVar, Protocol

import pytest

from flagstaff.errors import StoreUnavailable
from flagstaff.runtime import Runtime
from flagstaff.stores.base import Store
from tests._support.er_checks import Follower, doc, expected_after, mutate_many, store_runtime, wait_until
from tests._support.tcpproxy_er import TcpProxy


class FaultServer(Protocol):
    """What the scenarios do to a server: ``EtcdCluster`` (one node) and ``RedisServer``."""

    @property
    def port(self) -> int: ...

    def url(self, prefix: str) -> str: ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...

    def signal(self, sig: signal.Signals) -> None: ...

    def close(self) -> None: ...


class NetworkFaults:
    """The shared fault scenarios; a subclass per backend supplies the hooks below."""

    server: FaultServer  # the module's server, set by the subclass's autouse fixture
    server_class: ClassVar[Callable[[], FaultServer]]  # a fresh single server, closed by the test
    store_class: ClassVar[Callable[[str, Runtime], Store]]  # ``XStore.from_url``
    # Seconds the test waits for a follower after a partition heals or a hung server resumes.
    heal_wait: ClassVar[float]
    # Seconds within which a request to a hung (SIGSTOPped) server must fail.
    hung_request_bound: ClassVar[float]
    # Whether a restarted server comes back empty (no persistence): the store reads as
    # uninitialized; otherwise it comes back with its data.
    restart_wipes: ClassVar[bool]

    def via(self, prefix: str, address: str) -> str:
        """The module server's store URL for ``prefix``, reached through ``address`` (host:port)."""
        raise NotImplementedError

    @pytest.fixture
    def prefix(self) -> str:
        return f"t-{uuid.uuid4().hex[:10]}"

    def open(self, url: str) -> Store:
        return type(self).store_class(url, store_runtime())

    def test_partition_50_changes_5_deletes(self, prefix: str) -> None:
        proxy = TcpProxy("127.0.0.1", self.server.port)
        writer = self.open(self.server.url(prefix))
        reader = self.open(self.via(prefix, proxy.address))
        names = [f"p{i}" for i in range(50)]
        try:
            mutate_many(writer, 0, names, [])
            follower = Follower(reader)
            wait_until(lambda: len(follower.snapshot()) == 50, 5)
            proxy.partition()
            mutate_many(writer, 1000, names, names[:5])
            time.sleep(0.5)
            proxy.heal()
            expected = expected_after(names, names[:5], 1000)
            took = wait_until(lambda: follower.snapshot() == expected, self.heal_wait)
            assert took <= 2.0, f"converged {took:.2f} s after healing"
            assert not follower.backwards
            follower.stop()
        finally:
            reader.close()
            writer.close()
            proxy.close()

    def test_blackhole_partition(self, prefix: str) -> None:
        # The connection stays open but carries nothing: the store's watchdog (etcd) or its
        # silent-connection timeout (Redis) notices, and the follower catches up once healed.
        proxy = TcpProxy("127.0.0.1", self.server.port)
        writer = self.open(self.server.url(prefix))
        reader = self.open(self.via(prefix, proxy.address))
        try:
            writer.put("b", doc(0))
            follower = Follower(reader)
            time.sleep(0.3)  # watching
            proxy.blackhole()
            writer.put("b", doc(1))
            time.sleep(1.0)
            proxy.heal()
            wait_until(lambda: follower.snapshot().get("b") == doc(1), 8)
            assert not follower.backwards
            follower.stop()
        finally:
            reader.close()
            writer.close()
            proxy.close()

    @pytest.mark.slow
    def test_kill9_and_restart_converges(self, prefix: str) -> None:
        server = type(self).server_class()
        writer = self.open(server.url(prefix))
        reader = self.open(server.url(prefix))
        try:
            writer.put("x", doc(0))
            follower = Follower(reader)
            server.kill()
            with pytest.raises(StoreUnavailable):
                writer.put("x", doc(1))
            assert follower.snapshot() == {"x": doc(0)}  # last known values stay
            time.sleep(3.0)
            server.restart()  # same port
            assert writer.load().initialized is not self.restart_wipes
            writer.put("x", doc(2))
            took = wait_until(lambda: follower.snapshot().get("x") == doc(2), 5)
            assert took <= 2.0
            assert not follower.backwards
            follower.stop()
        finally:
            reader.close()
            writer.close()
            server.close()

    def test_sigstop_hung_server(self, prefix: str) -> None:
        server = type(self).server_class()
        writer = self.open(server.url(prefix))
        reader = self.open(server.url(prefix))
        try:
            writer.put("s", doc(0))
            follower = Follower(reader)
            server.signal(signal.SIGSTOP)
            try:
                start = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    writer.get("s")
                assert time.monotonic() - start < self.hung_request_bound
            finally:
                server.signal(signal.SIGCONT)
            writer.put("s", doc(1))
            took = wait_until(lambda: follower.snapshot().get("s") == doc(1), self.heal_wait)
            assert took <= 2.0
            follower.stop()
        finally:
            reader.close()
            writer.close()
            server.close()


def again_under_gevent(module: str) -> None:
    """Run ``module``'s quick tests (``-m "not slow"``) again under gevent; fail with its output."""
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import sys, pytest\n"
        "sys.exit(pytest.main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "FLAGSTAFF_TEST_RUNTIME": "gevent"}
    proc = subprocess.run(
        [sys.executable, "-c", code, "-q", "-p", "no:cacheprovider", "-m", "not slow", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


# The skip marker the re-run test carries: inside the re-run it must not start another one.
in_gevent_rerun = pytest.mark.skipif(
    os.environ.get("FLAGSTAFF_TEST_RUNTIME") == "gevent", reason="this is the gevent re-run"
)
