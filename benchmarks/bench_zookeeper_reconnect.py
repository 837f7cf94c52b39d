"""ZooKeeper store: what one follower of 10,000 flags spends to recover from a dropped connection.

One process holds a store watching ``--flags`` flags (a real standalone ZooKeeper on
loopback, from ``tests/_support/zk_server.py``). Each round drops the store's
connection (its socket shut down: kazoo reconnects at once, on the same session),
writes one flag with a plain kazoo client, and waits until the store has delivered
that write and has nothing left to arm. Reported per round (median of ``--rounds``):
the process's CPU seconds (``time.process_time``: every thread, kazoo's included),
the wall time, and the requests the store sent, those arming a one-shot watch
apart. Modes: ``tree`` (one persistent recursive watch, ZooKeeper 3.6+) and
``per-flag`` (a data watch per flag: the fallback for servers before 3.6, and what
every server got before the tree watch).

Run: ``.venv/bin/python benchmarks/run.py --only bench_zookeeper_reconnect [--quick]`` (2,000
flags with ``--quick``), or this file directly with ``[--flags 10000] [--rounds 3] [--modes ...]``.
"""

from __future__ import annotations

import argparse
import collections
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from _row import Row  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402

from flagstaff.stores.zookeeper import ZooKeeperStore  # noqa: E402
from flagstaff.testing import EventRecorder, wait_until  # noqa: E402
from flagstaff.testing.conformance import document  # noqa: E402
from tests._support.zk_server import standalone  # noqa: E402

GROUP = "zookeeper"
CHUNK = 500  # flags created per kazoo transaction
MODES = {"tree": "tree watch", "per-flag": "a watch per flag"}


def _count_requests(store: ZooKeeperStore) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    zk = store._zk
    send = zk._call

    def counting(request: Any, async_object: Any) -> Any:
        counts["watching" if getattr(request, "watcher", None) is not None else "plain"] += 1
        counts[type(request).__name__] += 1
        return send(request, async_object)

    zk._call = counting
    return counts


def _settled(store: ZooKeeperStore) -> bool:
    mirror = store._mirror
    # (a subscriber still joining when the connection drops would be sent Reset, not the change)
    return (
        mirror is not None
        and mirror._synced
        and not mirror._full
        and not mirror._to_arm
        and not mirror._joining
    )


def _round(
    store: ZooKeeperStore, kazoo: KazooClient, chroot: str, recorder: EventRecorder, seq: int
) -> dict[str, float]:
    sent = _count_requests(store)
    cpu, wall = time.process_time(), time.monotonic()
    store._zk._connection._socket.shutdown(socket.SHUT_RDWR)  # kazoo reconnects on the same session
    wait_until(lambda: not store._zk.connected, 10)
    kazoo.set(f"{chroot}/f0", document(seq).encode())
    wait_until(lambda: any(c.record and c.record.raw == document(seq) for c in recorder.changes()), 60)
    wait_until(lambda: _settled(store), 60)
    figures = {"cpu": time.process_time() - cpu, "wall": time.monotonic() - wall}
    figures.update({k: float(v) for k, v in sent.items()})
    return figures


def measure(flags: int, rounds: int, modes: list[str]) -> dict[str, dict[str, float]]:
    """Per mode, the median of each figure over ``rounds`` reconnections."""
    medians: dict[str, dict[str, float]] = {}
    server = standalone(Path(tempfile.mkdtemp(prefix="bench-zk-reconnect-")))
    try:
        kazoo = KazooClient(server.hosts)
        kazoo.start(10)
        chroot = f"/bench-{uuid.uuid4().hex[:8]}"
        kazoo.ensure_path(chroot)
        for start in range(0, flags, CHUNK):
            tx = kazoo.transaction()
            for i in range(start, min(start + CHUNK, flags)):
                tx.create(f"{chroot}/f{i}", document(i).encode())
            tx.commit()
        seq = 100_000
        for mode in modes:
            store = ZooKeeperStore.from_url(f"zookeeper://{server.hosts}{chroot}?timeout=60")
            store._tree_watch = mode == "tree"
            recorder = EventRecorder()
            store.watch(recorder, since=store.load().revision)
            wait_until(lambda s=store: _settled(s), 120)  # type: ignore[misc]
            results = []
            for _ in range(rounds):
                seq += 1
                results.append(_round(store, kazoo, chroot, recorder, seq))
                recorder.clear()
            keys = sorted({k for r in results for k in r} - {"cpu", "wall"})
            medians[mode] = {
                k: statistics.median(r.get(k, 0.0) for r in results) for k in ["cpu", "wall", *keys]
            }
            store.close()
        kazoo.stop()
        kazoo.close()
    finally:
        server.stop()
    return medians


def run(quick: bool) -> list[Row]:
    flags = 2_000 if quick else 10_000
    rows: list[Row] = []
    for mode, med in measure(flags, 2 if quick else 3, list(MODES)).items():
        what = f"reconnect, {flags:,} flags, {MODES[mode]}"
        rows.append(Row(GROUP, f"{what}: CPU", med["cpu"], "s", None, ""))
        rows.append(
            Row(GROUP, f"{what}: requests", med["plain"] + med.get("watching", 0.0), "requests", None, "")
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="tree,per-flag", help="comma-separated: tree, per-flag")
    args = parser.parse_args()
    for mode, med in measure(args.flags, args.rounds, args.modes.split(",")).items():
        counts = ", ".join(f"{k} {v:.0f}" for k, v in med.items() if k not in ("cpu", "wall"))
        print(
            f"{mode:9} {args.flags} flags: reconnect CPU {med['cpu']:.3f} s, wall {med['wall']:.3f} s "
            f"(median of {args.rounds}); requests: {counts}"
        )


if __name__ == "__main__":
    main()
