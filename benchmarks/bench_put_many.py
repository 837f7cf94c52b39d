"""Atomic multi-flag writes: one ``put_many`` of 20 flags against 20 single compare-and-set puts.

For each store (memory, SQLite, file, and real ZooKeeper, etcd and Redis servers started on
loopback from the test fixtures), the median wall time of writing 20 flags, each conditional
on the version it holds: as one ``put_many`` (the row's value) and as 20 ``put`` calls one after
the other (the floor column: what the atomic write replaces). The second row per store is the
median time from the start of a ``put_many`` until a client following the store serves all 20
new documents (one snapshot swap). Bounded: a fixed number of samples per store.

Run alone: ``.venv/bin/python benchmarks/bench_put_many.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from flagstaff.client import Client, Options
from flagstaff.model import encode_document
from flagstaff.stores import Store, Write, open_store

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)

FLAGS = 20
NAMES = [f"many-{i:02d}" for i in range(FLAGS)]


def _doc(generation: int) -> str:
    return encode_document({"enabled": True, "description": f"generation {generation}"})


def measure(store: Store, samples: int) -> tuple[float, float, float]:
    """(median ms of a put_many of 20, median ms of 20 puts, median ms until a client serves it)."""
    versions = dict.fromkeys(NAMES, 0)
    many: list[float] = []
    single: list[float] = []
    seen: list[float] = []
    client = Client(store, Options(timeout=10))
    try:
        for g in range(samples):
            doc = _doc(2 * g)
            start = time.perf_counter()
            out = store.put_many([Write(n, doc, versions[n]) for n in NAMES])
            many.append(time.perf_counter() - start)
            versions = {r.name: r.version for r in out if r is not None}
            deadline = time.monotonic() + 10
            while client.snapshot.flags.get(NAMES[-1]) is None or (
                client.snapshot.flags[NAMES[-1]].value.get("description") != f"generation {2 * g}"
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the client never served the put_many")
                time.sleep(0.0005)
            seen.append(time.perf_counter() - start)
            doc = _doc(2 * g + 1)
            start = time.perf_counter()
            for n in NAMES:
                versions[n] = store.put(n, doc, expect=versions[n]).version
            single.append(time.perf_counter() - start)
    finally:
        client.close()
    return 1000 * statistics.median(many), 1000 * statistics.median(single), 1000 * statistics.median(seen)


@contextmanager
def _stores(tmp: Path, quick: bool) -> Iterator[list[tuple[str, Callable[[], Store]]]]:
    from tests._support.etcd_server import EtcdCluster
    from tests._support.redis_server import RedisServer
    from tests._support.zk_server import standalone

    zk = standalone(tmp / "zk")
    etcd = EtcdCluster(1)
    redis = RedisServer()
    try:
        yield [
            ("memory", lambda: open_store("memory://")),
            ("sqlite", lambda: open_store(f"sqlite:///{tmp}/many.db")),
            ("file", lambda: open_store(f"file://{tmp}/many.json")),
            ("zookeeper", lambda: open_store(f"zookeeper://{zk.hosts}/bench-many")),
            ("etcd", lambda: open_store(f"etcd://{etcd.hosts}/bench-many")),
            ("redis", lambda: open_store(f"redis://127.0.0.1:{redis.port}/0?prefix=bench-many")),
        ]
    finally:
        redis.close()
        etcd.close()
        zk.kill()


def run(quick: bool) -> list[Row]:
    samples = 10 if quick else 50
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-many-") as tmp, _stores(Path(tmp), quick) as stores:
        for name, make in stores:
            store = make()
            try:
                many, single, seen = measure(store, samples)
            finally:
                store.close()
            rows.append(
                Row("put_many", f"{name}: put_many of {FLAGS} (floor: {FLAGS} puts)", many, "ms", single, "")
            )
            rows.append(
                Row("put_many", f"{name}: put_many of {FLAGS} -> a client serves it", seen, "ms", None, "")
            )
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        floor = "" if row.floor is None else f"(floor {row.floor:8.2f})"
        print(f"{row.group:8} {row.name:52} {row.value:8.2f} {row.unit:3} {floor}")
