"""ZooKeeper store: change propagation through a watch, beside the bare kazoo floor.

One writer, then 1, 10 and 50 subscriber processes (1 and 10 with ``quick``):
for each write, the time from the start of the write to the *last* process
seeing it (median, p99, max). The floor is measured in the same run with the
bare client: ``KazooClient.set`` and a kazoo ``DataWatch`` in every
subscriber. Also: the time for the subscribers to connect and hold a full
snapshot of 1,000 flags. A real standalone ZooKeeper is started on loopback
(the test fixtures in ``tests/_support/zk_server.py``).

Run: ``.venv/bin/python benchmarks/run.py --only zookeeper`` (or this file
directly: ``python benchmarks/bench_zookeeper.py [--quick]``).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from _fleet import Fleet, percentile  # noqa: E402
from _row import Row  # noqa: E402

GROUP = "zookeeper"
FLAG = "bench"
WARMUP = 3  # writes made before the measured ones, in both modes
SETTLE_PER_PROCESS = 0.1  # seconds of quiet after every subscriber is ready, per subscriber


# -- the subscriber processes -----------------------------------------------------------


def _subscribe(hosts: str, chroot: str, mode: str) -> None:
    """Child process: report every value of the bench flag as ``seq time`` lines."""
    out = sys.stdout
    lock = threading.Lock()

    def report(raw: str) -> None:
        now = time.time()
        try:
            seq = json.loads(raw)["seq"]
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            out.write(f"{seq} {now}\n")
            out.flush()

    if mode == "bare":
        from kazoo.client import KazooClient
        from kazoo.recipe.watchers import DataWatch

        zk = KazooClient(hosts)
        zk.start(30)

        def on_data(data: bytes | None, stat: object) -> None:
            if data:
                report(data.decode())

        DataWatch(zk, f"{chroot}/{FLAG}", on_data)
        count = len([c for c in zk.get_children(chroot) if not c.startswith(".")])
    else:
        from flagstaff.stores.base import WatchEvent
        from flagstaff.stores.zookeeper import ZooKeeperStore

        store = ZooKeeperStore.from_url(f"zookeeper://{hosts}{chroot}?timeout=30")
        state = store.load()
        count = len(state.records)

        def on_event(event: WatchEvent) -> None:
            record = getattr(event, "record", None)
            if record is not None and record.name == FLAG:
                report(record.raw)

        store.watch(on_event, since=state.revision)
    out.write(f"ready {count} {time.time()}\n")
    out.flush()
    sys.stdin.read()  # until the parent closes our stdin


def _propagation(hosts: str, n: int, mode: str, samples: int) -> tuple[list[float], float]:
    """Latencies (ms) write -> last of ``n`` processes; and seconds until all held 1,000 flags."""
    from kazoo.client import KazooClient

    from flagstaff.stores.base import Write
    from flagstaff.stores.zookeeper import ZooKeeperStore

    chroot = f"/bench-{uuid.uuid4().hex[:8]}"
    store = ZooKeeperStore.from_url(f"zookeeper://{hosts}{chroot}?timeout=30")
    store.put_many(
        [Write(f"flag-{i:04d}", json.dumps({"enabled": True, "percentage": i % 101})) for i in range(999)]
    )
    store.put(FLAG, json.dumps({"seq": 0}))
    zk = KazooClient(hosts)
    zk.start(30)
    started = time.monotonic()
    fleet = Fleet(n, [__file__, "--subscribe", hosts, chroot, mode])
    try:
        if not fleet.wait(lambda: len(fleet.ready) == n, 120):
            raise TimeoutError(f"{n} subscribers not ready")
        connect_all = time.monotonic() - started
        assert all(count == 1000 for count, _ in fleet.ready), fleet.ready
        fleet.wait(lambda: len(fleet.seen.get(0, [])) >= (n if mode == "bare" else 0), 10)
        # Steady state, the same for both modes: the store arms its per-flag data watches in
        # the background once the flags are served (a few seconds for 50 processes).
        time.sleep(SETTLE_PER_PROCESS * n)
        latencies = []
        for seq in range(1, WARMUP + samples + 1):
            raw = json.dumps({"seq": seq})
            t0 = time.time()
            if mode == "bare":
                zk.set(f"{chroot}/{FLAG}", raw.encode())
            else:
                store.put(FLAG, raw)
            if not fleet.wait(lambda seq=seq: len(fleet.seen.get(seq, [])) >= n, 10):
                raise TimeoutError(f"write {seq} did not reach all {n} subscribers")
            if seq > WARMUP:  # the first writes run cold code paths, in both modes alike
                latencies.append((max(fleet.seen[seq]) - t0) * 1000)
            time.sleep(0.01)
        return latencies, connect_all
    finally:
        fleet.close()
        zk.stop()
        zk.close()
        store.close()


def run(quick: bool) -> list[Row]:
    from tests._support.zk_server import standalone

    sizes = [1, 10] if quick else [1, 10, 50]
    samples = 20 if quick else 200  # a p99 of 60 samples is nearly their max: too noisy
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-zk-") as tmp:
        server = standalone(Path(tmp))
        try:
            for n in sizes:
                floor, _ = _propagation(server.hosts, n, "bare", samples)
                ours, connect = _propagation(server.hosts, n, "store", samples)
                for label, fn in (("median", statistics.median), ("p99", lambda v: percentile(v, 0.99))):
                    rows.append(
                        Row(
                            GROUP,
                            f"propagation {label}, {n} proc",
                            fn(ours),
                            "ms",
                            fn(floor),
                            "<= 1.5x floor",
                        )
                    )
                rows.append(Row(GROUP, f"propagation max, {n} proc", max(ours), "ms", max(floor), ""))
                rows.append(Row(GROUP, f"{n} proc connect + hold 1,000 flags", connect, "s", None, ""))
        finally:
            server.stop()
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--subscribe":
        _subscribe(*sys.argv[2:5])
    else:
        for row in run("--quick" in sys.argv):
            print(row)
