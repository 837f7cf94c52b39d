"""The fleet stores behind one small face, for tests that run the same scenario on each.

A :class:`Backend` starts a real server (ZooKeeper, etcd, Redis or PostgreSQL) on
loopback from the fixtures in ``zk_server.py``, ``etcd_server.py``,
``redis_server.py`` and ``pg_server.py``, names a store URL for a namespace, kills
and restarts the server, wipes a namespace, and writes a value with the backend's
own command line tool (``zkCli.sh``, ``etcdctl``, ``redis-cli``, ``psql``) the way an
operator would.
A missing tool skips locally and fails under CI (``conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests._support.etcd_server import EtcdCluster
from tests._support.pg_server import PgServer, pg_bin
from tests._support.redis_server import RedisServer
from tests._support.zk_server import ZooKeeperServer, standalone

KINDS = ("zookeeper", "etcd", "redis", "postgres")

ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")


def _tool(path: str | None, what: str, package: str) -> str:
    if not path or not os.path.exists(path):
        pytest.skip(f"{what} not found (apt-get install {package})")
    return path


class Backend:
    """One real server of ``kind`` in a temp dir; ``close()`` stops it and removes the dir."""

    def __init__(self, kind: str, *, persist: bool = True) -> None:
        self.kind = kind
        self._tmp = tempfile.mkdtemp(prefix=f"flagstaff-{kind}-")
        self._zk: ZooKeeperServer | None = None
        self._etcd: EtcdCluster | None = None
        self._redis: RedisServer | None = None
        self._pg: PgServer | None = None
        if kind == "zookeeper":
            self._zk = standalone(Path(self._tmp))
        elif kind == "etcd":
            self._etcd = EtcdCluster(1)
        elif kind == "postgres":
            self._pg = PgServer()  # its data dir outlives a kill -9: persistent either way
        else:
            # Persistence on (fsync every write), so a killed server comes back with its data.
            self._redis = RedisServer(persist=persist)

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the client port (what a proxy forwards to)."""
        if self._zk is not None:
            return self._zk.hosts
        if self._etcd is not None:
            return self._etcd.hosts
        if self._pg is not None:
            return self._pg.address
        assert self._redis is not None
        return f"127.0.0.1:{self._redis.port}"

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def url(self, namespace: str, address: str | None = None) -> str:
        """The store URL of ``namespace``, through ``address`` (a proxy) if given."""
        where = address or self.address
        if self.kind == "zookeeper":
            return f"zookeeper://{where}/{namespace}"
        if self.kind == "etcd":
            return f"etcd://{where}/{namespace}"
        if self._pg is not None:
            return self._pg.url(namespace, where)
        return f"redis://{where}/0?prefix={namespace}"

    def kill(self) -> None:
        """``kill -9`` the server."""
        if self._zk is not None:
            self._zk.kill()
        elif self._etcd is not None:
            self._etcd.nodes[0].kill()
        elif self._pg is not None:
            self._pg.kill()
        else:
            assert self._redis is not None
            self._redis.kill()

    def restart(self) -> None:
        """Start the killed server again on the same port and data; returns once it serves."""
        if self._zk is not None:
            self._zk.start()
            self._zk.wait_serving(60)
        elif self._etcd is not None:
            self._etcd.restart(0)
        elif self._pg is not None:
            self._pg.start()
        else:
            assert self._redis is not None
            self._redis.start()

    def wipe(self, namespace: str) -> None:
        """Remove everything in ``namespace`` behind flagstaff's back (Redis: ``FLUSHALL``)."""
        if self._zk is not None:
            # ZooKeeper has no atomic wipe (a recursive delete is one deletion per node, each
            # a legitimate change): the server comes back empty instead, its data lost.
            self._zk.kill()
            shutil.rmtree(self._zk.data)
            self._zk.data.mkdir()
            self._zk.start()
            self._zk.wait_serving(60)
        elif self._etcd is not None:
            self.cli("del", "--prefix", f"/{namespace}/")
        elif self._pg is not None:
            # Every namespace, as FLUSHALL does; TRUNCATE fires no row triggers: nothing recorded.
            self.cli("TRUNCATE flagstaff_flags, flagstaff_changes, flagstaff_namespaces")
        else:
            self.cli("FLUSHALL")  # our own server on a random port, never the machine's

    def cli_set(self, namespace: str, name: str, text: str) -> None:
        """Write ``text`` as flag ``name`` with the backend's command line tool."""
        if self.kind == "zookeeper":
            self.cli("set", f"/{namespace}/{name}", text)
        elif self.kind == "etcd":
            self.cli("put", f"/{namespace}/{name}", text)
        elif self.kind == "postgres":
            # As docs/stores.md shows operators: the triggers version, record and notify it.
            self.cli(
                "INSERT INTO flagstaff_flags (namespace, name, raw) "
                f"VALUES ({_sql(namespace)}, {_sql(name)}, convert_to({_sql(text)}, 'UTF8')) "
                "ON CONFLICT (namespace, name) DO UPDATE SET raw = EXCLUDED.raw"
            )
        else:
            # As docs/stores.md tells operators: set the field, then bump the revision counter
            # (a bare HSET is read by the next load, but no watch can notice it).
            self.cli("HSET", f"{namespace}:flags", name, text)
            self.cli("INCR", f"{namespace}:revision")

    def cli_create(self, namespace: str, name: str, text: str) -> None:
        """Create ``namespace`` (if need be) and flag ``name`` holding ``text``, by command line tool."""
        if self.kind == "zookeeper":
            self.cli("create", f"/{namespace}", "")
            self.cli("create", f"/{namespace}/{name}", text)
        else:
            self.cli_set(namespace, name, text)

    def cli(self, *args: str) -> str:
        """Run ``zkCli.sh``, ``etcdctl``, ``redis-cli`` or ``psql -c`` against the server; its output."""
        return run_cli(self.kind, self.address, *args)

    def close(self) -> None:
        if self._zk is not None:
            self._zk.stop()
        if self._etcd is not None:
            self._etcd.close()
        if self._redis is not None:
            self._redis.close()
        if self._pg is not None:
            self._pg.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def run_cli(kind: str, address: str, *args: str) -> str:
    """Run the command line tool of ``kind`` against the server at ``address``; its output."""
    port = address.rpartition(":")[2]
    if kind == "zookeeper":
        argv = [_tool(ZKCLI, "zkCli.sh", "zookeeper"), "-server", address, *args]
    elif kind == "etcd":
        argv = [_tool(shutil.which("etcdctl"), "etcdctl", "etcd-client"), "--endpoints", address, *args]
    elif kind == "postgres":
        psql = _tool(f"{pg_bin()}/psql", "psql", "postgresql")
        argv = [
            psql,
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "flagstaff",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
        ]
        argv += [a for arg in args for a in ("-c", arg)]
    else:
        argv = [_tool(shutil.which("redis-cli"), "redis-cli", "redis-tools"), "-p", port, *args]
    env = {**os.environ, "ETCDCTL_API": "3"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, f"{argv[0]} {args} failed: {proc.stdout[-1000:]} {proc.stderr[-1000:]}"
    return proc.stdout


def bulk_load(backend: Backend, namespace: str, docs: dict[str, str]) -> None:
    """Write many flags fast (a few requests per thousand), then one write through flagstaff
    (which sets the ``initialized`` marker). Versions start at 1, as for any new flag."""
    from flagstaff.stores import Write, open_store
    from flagstaff.stores.zookeeper import ZooKeeperStore

    names = sorted(docs)
    store = open_store(backend.url(namespace))
    try:
        if isinstance(store, ZooKeeperStore):
            for start in range(0, len(names), 500):
                store.put_many([Write(n, docs[n]) for n in names[start : start + 500]])
        elif backend.kind == "etcd":
            from tests._support.etcd_server import _b64

            assert backend._etcd is not None
            for start in range(0, len(names), 100):  # etcd allows 128 operations per transaction
                ops = [
                    {"request_put": {"key": _b64(f"/{namespace}/{n}"), "value": _b64(docs[n])}}
                    for n in names[start : start + 100]
                ]
                backend._etcd.call("kv/txn", {"success": ops})
        elif backend._pg is not None:
            store.load()  # sets up the tables
            with backend._pg.admin() as conn, conn.cursor() as cur:
                # No triggers (replica role): a bulk load, not 10,000 recorded changes.
                cur.execute("SET session_replication_role = replica")
                with cur.copy("COPY flagstaff_flags (namespace, name, raw) FROM STDIN") as copy:
                    for n in names:
                        copy.write_row((namespace, n, docs[n].encode()))
        else:
            assert backend._redis is not None
            admin = backend._redis.admin()
            for start in range(0, len(names), 1000):
                chunk = names[start : start + 1000]
                admin.hset(f"{namespace}:flags", mapping={n: docs[n] for n in chunk})
                admin.hset(f"{namespace}:versions", mapping=dict.fromkeys(chunk, 1))
            admin.close()
        store.put("bulk-done", "on")
    finally:
        store.close()


def _sql(text: str) -> str:
    """``text`` as an SQL string literal (standard_conforming_strings: only quotes double)."""
    return "'" + text.replace("'", "''") + "'"
