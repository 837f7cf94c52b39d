"""A real ``redis-server`` for tests, on a random loopback port with its own temp dir.

Never the machine's own Redis on 6379. A missing binary skips locally and
fails under CI (see ``conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest
import redis

from tests._support.etcd_server import ServerProcess, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer(ServerProcess):
    def __init__(self, password: str | None = None, *, persist: bool = False) -> None:
        if not os.path.exists(REDIS_SERVER):
            pytest.skip(f"redis-server not found at {REDIS_SERVER} (apt-get install redis-server)")
        self.tmp = tempfile.mkdtemp(prefix="flagstaff-redis-")
        self.port = free_port()
        self.password = password
        self.persist = persist  # an append-only file fsynced on every write: a kill -9 loses nothing
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(os.path.join(self.tmp, "redis.log"), "ab")  # noqa: SIM115 (closed in close())
        self.start()

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--dir", self.tmp,
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin().ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def admin(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2, decode_responses=True)

    def url(self, prefix: str, db: int = 0, host_port: str | None = None) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{host_port or f'127.0.0.1:{self.port}'}/{db}?prefix={prefix}"

    def restart(self) -> None:
        """Start again on the same port (after ``kill``); ``--save ''``: it comes back empty."""
        self.start()

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.tmp, ignore_errors=True)


MACHINE_REDIS_PORT = 6379


def forbid_machine_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every redis-py connection to port 6379 (the machine's own Redis) fail.

    The compatibility tests run code written for hanoi, whose default was
    localhost:6379 and whose tests ran FLUSHDB there.
    """
    connect = redis.connection.Connection._connect

    def guarded(self: redis.connection.Connection) -> object:
        if int(self.port) == MACHINE_REDIS_PORT:
            raise redis.ConnectionError("tests must not connect to the machine's Redis on 6379")
        return connect(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", guarded)
