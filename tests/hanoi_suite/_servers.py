"""Throwaway servers for the compatibility tests: real processes on loopback,
random free ports, temporary directories, stopped afterwards. Never the
machine's own redis on 6379 (hanoi's tests ran FLUSHDB there)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if IN_CI:
            pytest.fail(f"{binary} is not installed (CI must install it)")
        pytest.skip(f"{binary} is not installed")
    return path


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a random loopback port; yields its redis:// URL."""
    binary = need("redis-server")
    with tempfile.TemporaryDirectory(prefix="flagstaff-redis-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port, proc, 10)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(proc)


@contextlib.contextmanager
def zookeeper_server(port: int | None = None) -> Iterator[tuple[str, int]]:
    """A standalone ZooKeeper (Debian's jars) on a loopback port (random unless
    given); yields ``("127.0.0.1:PORT", PORT)``."""
    java = need("java")
    if not os.path.isdir("/usr/share/zookeeper"):
        if IN_CI:
            pytest.fail("ZooKeeper is not installed (CI must install the zookeeper package)")
        pytest.skip("ZooKeeper is not installed")
    with tempfile.TemporaryDirectory(prefix="flagstaff-zk-") as tmp:
        port = port or free_port()
        cfg = os.path.join(tmp, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(
                f"tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={tmp}/data\nclientPort={port}\n"
                "clientPortAddress=127.0.0.1\nadmin.enableServer=false\nmaxSessionTimeout=20000\n"
                "minSessionTimeout=1000\n"
            )
        log4j = os.path.join(tmp, "log4j.properties")
        with open(log4j, "w") as f:
            f.write(
                "log4j.rootLogger=WARN, CONSOLE\n"
                "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
                "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
            )
        proc = subprocess.Popen(
            [
                java,
                "-Xmx256m",
                f"-Dlog4j.configuration=file:{log4j}",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                "/usr/share/java/*:/usr/share/zookeeper/*:/etc/zookeeper/conf",
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                cfg,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        try:
            _wait_port(port, proc, 60)
            yield f"127.0.0.1:{port}", port
        finally:
            _stop(proc)
