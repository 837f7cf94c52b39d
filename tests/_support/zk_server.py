"""Real ZooKeeper servers for the tests: standalone or a three-node ensemble on loopback.

Each server is a JVM running ``QuorumPeerMain`` from Debian's ``zookeeper``
package (jars in ``/usr/share/java``; ``ZOOKEEPER_CLASSPATH`` overrides), with
a temporary data directory, random free ports on 127.0.0.1, the admin server
off and every four-letter command allowed (the tests read ``srvr``/``wchs``).
A missing Java or ZooKeeper skips the tests, which ``tests/conftest.py`` turns
into a failure under CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

_JARS = ("/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar")


def classpath() -> str | None:
    """The JVM class path for a ZooKeeper server, or None if it is not installed."""
    override = os.environ.get("ZOOKEEPER_CLASSPATH")
    if override:
        return override
    if shutil.which("java") and Path(_JARS[0]).exists():
        return ":".join(j for j in _JARS if Path(j).exists())
    return None


def require_zookeeper() -> str:
    cp = classpath()
    if cp is None:
        pytest.skip("ZooKeeper is not installed (need java and /usr/share/java/zookeeper.jar)")
    return cp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def four_letter(port: int, word: str, timeout: float = 1.0) -> str:
    """Send a four-letter command; '' if the server does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


class ZooKeeperServer:
    """One ZooKeeper server process (standalone, or one member of an ensemble)."""

    def __init__(self, workdir: Path, *, myid: int = 1, client_port: int | None = None) -> None:
        self.classpath = require_zookeeper()
        self.workdir = workdir
        self.myid = myid
        self.port = client_port or free_port()
        self.peer_port = free_port()
        self.election_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def configure(self, peers: list[ZooKeeperServer] | None = None) -> None:
        lines = [
            "tickTime=200",
            "initLimit=20",
            "syncLimit=10",
            f"dataDir={self.data}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "admin.enableServer=false",
            "4lw.commands.whitelist=*",
            "minSessionTimeout=400",
            "maxSessionTimeout=60000",
            "maxClientCnxns=0",
            "preAllocSize=1024",
            "snapCount=100000",
            "forceSync=no",
        ]
        if peers:
            (self.data / "myid").write_text(str(self.myid))
            lines += [f"server.{p.myid}=127.0.0.1:{p.peer_port}:{p.election_port}" for p in peers]
            lines += ["standaloneEnabled=false", "reconfigEnabled=false", "cnxTimeout=500"]
        (self.workdir / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not (self.workdir / "zoo.cfg").exists():
            self.configure()
        logfile = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "java",
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                self.classpath,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(self.workdir / "zoo.cfg"),
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        logfile.close()

    def mode(self) -> str:
        """'standalone', 'leader', 'follower', or '' when not serving."""
        for line in four_letter(self.port, "srvr").splitlines():
            if line.startswith("Mode:"):
                return line.split(":", 1)[1].strip()
        return ""

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.workdir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ZooKeeper exited with {self.proc.returncode}:\n{log}")
            if self.mode():
                return
            time.sleep(0.05)
        raise TimeoutError(f"ZooKeeper on port {self.port} not serving after {timeout} s")

    def watch_count(self) -> int:
        """Watches the server holds (``wchs``)."""
        for line in four_letter(self.port, "wchs").splitlines():
            if "watches" in line:
                return int(line.rsplit(":", 1)[1].strip())
        return -1

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL after 5 s); data is kept for a restart."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def standalone(workdir: Path) -> ZooKeeperServer:
    server = ZooKeeperServer(workdir)
    server.configure()
    server.start()
    try:
        server.wait_serving()
    except BaseException:
        server.kill()
        raise
    return server


class Ensemble:
    """Three servers on loopback forming one quorum."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.servers = [ZooKeeperServer(workdir / f"s{i}", myid=i) for i in range(1, size + 1)]
        for s in self.servers:
            s.configure(self.servers)

    @property
    def hosts(self) -> str:
        return ",".join(s.hosts for s in self.servers)

    def start(self, timeout: float = 60.0) -> None:
        for s in self.servers:
            s.start()
        self.wait_quorum(timeout)

    def wait_quorum(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            modes = [s.mode() for s in self.servers if s.proc is not None and s.proc.poll() is None]
            if "leader" in modes and sum(m in ("leader", "follower") for m in modes) == len(modes):
                return
            time.sleep(0.1)
        raise TimeoutError("the ensemble did not elect a leader in time")

    def leader(self) -> ZooKeeperServer:
        for s in self.servers:
            if s.mode() == "leader":
                return s
        raise LookupError("no leader")

    def stop(self) -> None:
        for s in self.servers:
            s.kill()
