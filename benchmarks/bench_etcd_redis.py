"""etcd and Redis stores: change propagation through a watch, beside the bare-client floor.

One writer, then 1, 10 and 50 subscriber processes (1 and 10 with ``quick``):
for each write, the time from the start of the write to the *last* process
seeing it (median, p99, max). The floor is measured in the same run with the
bare clients and no flagstaff code on the path:

- etcd: a raw ``kv/put`` and a raw ``/v3/watch`` stream on the key, over the
  same JSON gateway the store speaks (``flagstaff.stores._etcdv3``; see
  docs/fleet.md for why the gateway rather than a gRPC client);
- Redis: redis-py ``PUBLISH`` and a redis-py pub/sub subscriber.

Also: the time for the subscribers to connect and hold a full snapshot of
1,000 flags. Real servers are started on loopback from the test fixtures
(``tests/_support/etcd_server.py``, ``tests/_support/redis_server.py``); every loop is bounded.

Run: ``.venv/bin/python benchmarks/run.py --only bench_etcd_redis`` (or this
file directly: ``python benchmarks/bench_etcd_redis.py [--quick] [etcd|redis]``).
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from _fleet import Fleet, percentile  # noqa: E402
from _row import Row  # noqa: E402

FLAG = "bench"
WARMUP = 3  # writes made before the measured ones, in both modes
FLAGS = 1000
WAIT = 10.0  # seconds a write may take to reach every subscriber before the run fails


# -- the subscriber processes -----------------------------------------------------------


def _subscribe(kind: str, address: str, namespace: str, mode: str) -> None:
    """Child process: report every value of the bench flag as ``seq time`` lines."""
    out = sys.stdout
    lock = threading.Lock()

    def report(raw: str | bytes) -> None:
        now = time.time()
        try:
            seq = json.loads(raw)["seq"]
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            out.write(f"{seq} {now}\n")
            out.flush()

    if mode == "bare":
        count = (
            _bare_etcd(address, namespace, report)
            if kind == "etcd"
            else _bare_redis(address, namespace, report)
        )
    else:
        from flagstaff.stores import open_store
        from flagstaff.stores.base import WatchEvent

        store = open_store(_url(kind, address, namespace))
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


def _bare_etcd(address: str, prefix: str, report: Callable[[bytes], None]) -> int:
    from flagstaff.runtime import ThreadRuntime
    from flagstaff.stores._etcdv3 import Gateway, KeyValue, b64, prefix_end

    host, _, port = address.rpartition(":")
    gw = Gateway([(host, int(port))], ThreadRuntime(), timeout=30)
    root = f"/{prefix}/"
    reply = gw.call("kv/range", {"key": b64(root), "range_end": prefix_end(root), "keys_only": True})
    count = sum(1 for kv in reply.get("kvs", []) if "/." not in KeyValue.parse(kv).key)
    messages = iter(gw.open_watch({"key": b64(root + FLAG)}))
    next(messages)  # {"created": true}: the watch is in place before we say ready

    def follow() -> None:
        for message in messages:
            for event in message.get("result", {}).get("events", []):
                report(KeyValue.parse(event["kv"]).value)

    threading.Thread(target=follow, daemon=True).start()
    return count


def _bare_redis(address: str, prefix: str, report: Callable[[str], None]) -> int:
    import redis

    host, _, port = address.rpartition(":")
    client = redis.Redis(host=host, port=int(port), decode_responses=True)
    pubsub = client.pubsub()
    pubsub.subscribe(f"{prefix}:floor")
    pubsub.get_message(timeout=30)  # the subscription is confirmed before we say ready

    def follow() -> None:
        # Holds ``client`` too: collecting it would close the pool, and the subscription with it.
        assert client is not None
        for message in pubsub.listen():
            if message["type"] == "message":
                report(message["data"])

    threading.Thread(target=follow, daemon=True).start()
    return int(client.hlen(f"{prefix}:flags"))


# -- the writer ---------------------------------------------------------------------------


def _url(kind: str, address: str, namespace: str) -> str:
    if kind == "etcd":
        return f"etcd://{address}/{namespace}"
    return f"redis://{address}/0?prefix={namespace}"


def _bare_writer(kind: str, address: str, namespace: str) -> tuple[Callable[[str], None], Callable[[], None]]:
    """A function writing one raw value with the bare client, and one closing it."""
    host, _, port = address.rpartition(":")
    if kind == "etcd":
        from flagstaff.runtime import ThreadRuntime
        from flagstaff.stores._etcdv3 import Gateway, b64

        gw = Gateway([(host, int(port))], ThreadRuntime(), timeout=30)
        key = b64(f"/{namespace}/{FLAG}")

        def put(raw: str) -> None:
            gw.call("kv/put", {"key": key, "value": b64(raw)})

        return put, gw.close
    import redis

    client = redis.Redis(host=host, port=int(port))

    def publish(raw: str) -> None:
        client.publish(f"{namespace}:floor", raw)

    return publish, client.close


def _propagation(kind: str, address: str, n: int, mode: str, samples: int) -> tuple[list[float], float]:
    """Latencies (ms) write -> last of ``n`` processes; and seconds until all held 1,000 flags."""
    from flagstaff.stores import open_store

    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    store: Any = open_store(_url(kind, address, namespace))
    for i in range(FLAGS - 1):
        store.put(f"flag-{i:04d}", json.dumps({"enabled": True, "percentage": i % 101}))
    store.put(FLAG, json.dumps({"seq": 0}))
    bare_write, bare_close = _bare_writer(kind, address, namespace)
    started = time.monotonic()
    fleet = Fleet(n, [__file__, "--subscribe", kind, address, namespace, mode])
    try:
        if not fleet.wait(lambda: len(fleet.ready) == n, 120):
            raise TimeoutError(f"{n} {kind} subscribers not ready")
        connect_all = time.monotonic() - started
        assert all(count == FLAGS for count, _ in fleet.ready), fleet.ready
        latencies = []
        for seq in range(1, WARMUP + samples + 1):
            raw = json.dumps({"seq": seq})
            t0 = time.time()
            if mode == "bare":
                bare_write(raw)
            else:
                store.put(FLAG, raw)
            if not fleet.wait(lambda seq=seq: len(fleet.seen.get(seq, [])) >= n, WAIT):
                raise TimeoutError(f"{kind} write {seq} did not reach all {n} subscribers")
            if seq > WARMUP:  # the first writes run cold code paths, in both modes alike
                latencies.append((max(fleet.seen[seq]) - t0) * 1000)
            time.sleep(0.01)
        return latencies, connect_all
    finally:
        fleet.close()
        bare_close()
        store.close()


def _rows(kind: str, address: str, sizes: list[int], samples: int) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        floor, _ = _propagation(kind, address, n, "bare", samples)
        ours, connect = _propagation(kind, address, n, "store", samples)
        for label, fn in (("median", statistics.median), ("p99", lambda v: percentile(v, 0.99))):
            rows.append(
                Row(kind, f"propagation {label}, {n} proc", fn(ours), "ms", fn(floor), "<= 1.5x floor")
            )
        rows.append(Row(kind, f"propagation max, {n} proc", max(ours), "ms", max(floor), ""))
        rows.append(Row(kind, f"{n} proc connect + hold 1,000 flags", connect, "s", None, ""))
    return rows


def run(quick: bool, kinds: tuple[str, ...] = ("etcd", "redis")) -> list[Row]:
    from tests._support.etcd_server import EtcdCluster
    from tests._support.redis_server import RedisServer

    sizes = [1, 10] if quick else [1, 10, 50]
    samples = 20 if quick else 200  # a p99 of 60 samples is nearly their max: too noisy
    rows: list[Row] = []
    if "etcd" in kinds:
        cluster = EtcdCluster(1)
        try:
            rows += _rows("etcd", cluster.hosts, sizes, samples)
        finally:
            cluster.close()
    if "redis" in kinds:
        server = RedisServer()
        try:
            rows += _rows("redis", f"127.0.0.1:{server.port}", sizes, samples)
        finally:
            server.close()
    return rows


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--subscribe":
        _subscribe(*sys.argv[2:6])
    else:
        chosen = tuple(k for k in ("etcd", "redis") if k in sys.argv[1:]) or ("etcd", "redis")
        for row in run("--quick" in sys.argv, chosen):
            print(row)
