"""Real etcd servers for tests: one node or a three-node cluster, on loopback ports.

Each node runs ``/usr/bin/etcd`` (Debian's ``etcd-server``) in its own temp dir.
A missing binary skips locally and fails under CI (see ``conftest.py``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import IO, Any

import pytest

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Block until the kernel reports ``pid`` stopped (state T), so the test starts from a hung server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise RuntimeError(f"process {pid} did not stop")


def require_etcd() -> None:
    if not os.path.exists(ETCD):
        pytest.skip(f"etcd server binary not found at {ETCD} (apt-get install etcd-server)")


class ServerProcess:
    """One server process and its log file: ``kill -9``, signals, and a polite close.

    Shared by :class:`EtcdNode` and ``redis_server.RedisServer``; a subclass starts ``proc``.
    """

    proc: subprocess.Popen[bytes] | None
    _log: IO[bytes]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            wait_stopped(self.proc.pid)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class EtcdNode(ServerProcess):
    def __init__(  # noqa: PLR0913 (one etcd member's settings)
        self,
        name: str,
        client_port: int,
        peer_port: int,
        cluster: str,
        datadir: str,
        tls: bool = False,
        client_auth: bool = False,
    ) -> None:
        self.tls = tls
        self.client_auth = client_auth
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.cluster = cluster
        self.datadir = datadir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = open(os.path.join(datadir, f"{name}.log"), "ab")  # noqa: SIM115 (closed in close())

    @property
    def client_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self, *, new: bool = True) -> None:
        args = [
            ETCD,
            "--name", self.name,
            "--data-dir", os.path.join(self.datadir, self.name),
            "--listen-client-urls", f"{self.client_scheme}://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", f"{self.client_scheme}://127.0.0.1:{self.client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-cluster", self.cluster,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "warn",
        ]  # fmt: skip
        if self.tls:
            args += ["--cert-file", os.path.join(self.datadir, "server.pem"),
                     "--key-file", os.path.join(self.datadir, "server.key")]  # fmt: skip
        if self.client_auth:
            args += ["--client-cert-auth", "--trusted-ca-file", os.path.join(self.datadir, "ca.pem")]
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)


class EtcdCluster:
    """``size`` etcd nodes forming one cluster (size 1: a single server)."""

    def __init__(self, size: int = 1, *, tls: bool = False, client_auth: bool = False) -> None:
        """``tls``: clients speak HTTPS to a certificate for 127.0.0.1 signed by a CA made
        here (``self.ca``, a PEM file); ``client_auth``: they must also show a certificate
        from that CA (``self.client_cert``, ``self.client_key``)."""
        require_etcd()
        self.tmp = tempfile.mkdtemp(prefix="flagstaff-etcd-")
        self.tls = tls = tls or client_auth
        self.client_auth = client_auth
        self.ca = _make_certificates(self.tmp) if tls else None
        self.client_cert = os.path.join(self.tmp, "client.pem")
        self.client_key = os.path.join(self.tmp, "client.key")
        ports = [(free_port(), free_port()) for _ in range(size)]
        cluster = ",".join(f"n{i}=http://127.0.0.1:{peer}" for i, (_, peer) in enumerate(ports))
        self.nodes = [
            EtcdNode(f"n{i}", c, p, cluster, self.tmp, tls, client_auth) for i, (c, p) in enumerate(ports)
        ]
        for node in self.nodes:
            node.start()
        self.wait_ready()

    @property
    def port(self) -> int:
        """The first node's client port (a one-node cluster's only one)."""
        return self.nodes[0].client_port

    @property
    def hosts(self) -> str:
        return ",".join(n.endpoint for n in self.nodes)

    def url(self, prefix: str, auth: str = "") -> str:
        if self.tls:
            client = f"&cert={self.client_cert}&key={self.client_key}" if self.client_auth else ""
            return f"etcds://{auth + '@' if auth else ''}{self.hosts}/{prefix}?ca={self.ca}{client}"
        return f"etcd://{auth + '@' if auth else ''}{self.hosts}/{prefix}"

    def call(
        self, path: str, body: dict[str, Any], node: int = 0, token: str | None = None
    ) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.nodes[node].client_scheme}://{self.nodes[node].endpoint}/v3/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})},
        )
        context = ssl.create_default_context(cafile=self.ca) if self.ca else None
        if context is not None and self.client_auth:
            context.load_cert_chain(self.client_cert, self.client_key)
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            reply: dict[str, Any] = json.loads(resp.read())
            return reply

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        pending = [i for i, n in enumerate(self.nodes) if n.proc is not None and n.proc.poll() is None]
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                try:
                    self.call("kv/range", {"key": "eA=="}, node=i)
                    pending.remove(i)
                except (OSError, urllib.error.URLError):
                    pass
            time.sleep(0.05)
        if pending:
            raise RuntimeError(f"etcd nodes {pending} did not become ready within {timeout} s")

    def leader(self) -> int:
        """Index of the current leader node."""
        members = {
            m["ID"] if "ID" in m else m.get("id"): m for m in self.call("cluster/member/list", {})["members"]
        }
        for i, node in enumerate(self.nodes):
            if node.proc is None or node.proc.poll() is not None:
                continue
            with contextlib.suppress(OSError, urllib.error.URLError):
                status = self.call("maintenance/status", {}, node=i)
                if status.get("leader") == status["header"].get("member_id"):
                    return i
        raise RuntimeError(f"no leader among {len(members)} members")

    def put(self, key: str, value: str) -> int:
        reply = self.call("kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(reply["header"]["revision"])

    def compact(self, revision: int) -> None:
        self.call("kv/compaction", {"revision": str(revision), "physical": True})

    def kill(self, index: int = 0) -> None:
        self.nodes[index].kill()

    def signal(self, sig: signal.Signals, index: int = 0) -> None:
        self.nodes[index].signal(sig)

    def restart(self, index: int = 0) -> None:
        node = self.nodes[index]
        node.start(new=False)
        self.wait_ready()

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _make_certificates(directory: str) -> str:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl); returns the CA's path."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    cert, ext = os.path.join(directory, "server.pem"), os.path.join(directory, "san.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for cmd in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=flagstaff test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
        # A client certificate, for an etcd started with --client-cert-auth.
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", os.path.join(directory, "client.key"),
         "-out", os.path.join(directory, "client.csr"), "-subj", "/CN=flagstaff-test-client"],
        ["x509", "-req", "-in", os.path.join(directory, "client.csr"), "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-out", os.path.join(directory, "client.pem"), "-days", "2"],
    ):  # fmt: skip
        subprocess.run(["openssl", *cmd], check=True, capture_output=True, timeout=60)
    return ca
