"""A real throwaway PostgreSQL server for tests, on a random loopback port with its own data dir.

``initdb`` into a temp dir, then ``postgres -D dir -p PORT -k dir -c listen_addresses=127.0.0.1``:
never the machine's own cluster on 5432. PostgreSQL refuses to run as root, so as root both
run as the ``postgres`` user (``setpriv``) in a dir that user owns. ``kill()`` and
``signal()`` reach the postmaster and every backend it forked (each backend is its own
process group, so a group signal would not do): a ``kill -9`` of the postmaster alone would
leave them serving, and a SIGSTOP of it alone would hang nothing.

The binaries are Debian's (``/usr/lib/postgresql/*/bin``, package ``postgresql``); missing,
they skip locally and fail under CI.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg
import pytest

from tests._support.etcd_server import free_port, wait_stopped

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USER = "flagstaff"  # the superuser initdb creates (trust auth on loopback: a test server)


def pg_bin() -> str:
    """The newest installed PostgreSQL's bin dir; skip (fail under CI) if there is none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    if not found:
        message = (
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return os.path.dirname(found[-1])


def _major(path: str) -> int:
    version = path.split("/")[4]
    return int(version) if version.isdigit() else 0


class PgServer:
    """One PostgreSQL server; ``close()`` stops it and removes its dir."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.tmp = tempfile.mkdtemp(prefix="flagstaff-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root, and there is no 'postgres' user to run PostgreSQL as")
            os.chown(self.tmp, pg.pw_uid, pg.pw_gid)
            self._as = ["setpriv", "--reuid", "postgres", "--regid", "postgres", "--init-groups", "--"]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path = os.path.join(self.tmp, "postgres.log")
        subprocess.run(
            [*self._as, f"{self.bin}/initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        """Start (again, on the same port and data); returns once it accepts connections."""
        with open(self._log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self._as, f"{self.bin}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.tmp,
                 "-c", "listen_addresses=127.0.0.1",
                 # A test server: no fsync (a kill -9 keeps what was written, the OS has it).
                 "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200",
                 "-c", "shared_buffers=16MB", "-c", "deadlock_timeout=200ms"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                self.admin().close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log_tail()}") from None
                time.sleep(0.05)

    def log_tail(self) -> str:
        with open(self._log_path, errors="replace") as f:
            return f.read()[-2000:]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, namespace: str, host_port: str | None = None) -> str:
        return f"postgresql://{USER}@{host_port or self.address}/postgres?namespace={namespace}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection (autocommit), straight to the server."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True, connect_timeout=3
        )

    def sql(self, query: str, *args: object) -> list[tuple[object, ...]]:
        """Run ``query`` as the superuser (what an operator does with psql); its rows, if any."""
        with self.admin() as conn:
            cur = conn.execute(query, args or None)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def _pids(self) -> list[int]:
        """The postmaster's pid and its children's (backends, background workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                    children.append(int(entry))
        return [self.proc.pid, *children]

    def _send(self, sig: signal.Signals) -> list[int]:
        pids = self._pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def kill(self) -> None:
        """``kill -9`` the server and its backends (a crash); ``start()`` brings it back with its data."""
        pids = self._send(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        deadline = time.monotonic() + 10  # until none holds the port or the shared memory
        while any(_running(pid) for pid in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> None:
        self.start()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server and every backend (SIGSTOP: a hung server, connections open)."""
        for pid in self._send(sig):
            if sig == signal.SIGSTOP:
                wait_stopped(pid)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._send(signal.SIGCONT)
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
