"""SQLite store: propagation latency to follower processes, write throughput, cold load.

Propagation: one writer (this process) and 4 follower processes watching the
same database file. The writer records the wall clock just before each
``put``; each follower records the wall clock when its watch callback runs.
The latency of a change is the difference (same machine, same clock), over
every change and every follower. The issue's target: median <= 100 ms.

Run alone: ``.venv/bin/python benchmarks/bench_sqlite.py [--quick]``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flagstaff.model import encode_document
from flagstaff.stores.sqlite import SQLiteStore

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)

FOLLOWERS = 4

_FOLLOWER = """
import json, sys, time
from flagstaff.stores.sqlite import SQLiteStore
store = SQLiteStore(sys.argv[1])
seen = {}
done = []
def on_event(event):
    if getattr(event, "record", None) is not None:
        if event.name == "stop":
            done.append(True)
        else:
            seen[json.loads(event.record.raw)["seq"]] = time.time()
store.watch(on_event, since=store.load().revision)
print("ready", flush=True)
deadline = time.monotonic() + 60
while not done and time.monotonic() < deadline:
    time.sleep(0.01)
store.close()
print(json.dumps(seen), flush=True)
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def propagation(db: str, changes: int) -> tuple[list[float], int]:
    """Latencies (seconds) of ``changes`` writes seen by FOLLOWERS processes."""
    writer = SQLiteStore(db)
    writer.put("stop", encode_document({"seq": -1}))
    procs = [
        subprocess.Popen([sys.executable, "-c", _FOLLOWER, db], stdout=subprocess.PIPE, text=True)
        for _ in range(FOLLOWERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("a follower did not start")
        rng = random.Random(1)
        sent: dict[int, float] = {}
        for seq in range(changes):
            # Spread writes over the poll period so the phase is random.
            time.sleep(rng.uniform(0.01, 0.04))
            sent[seq] = time.time()
            writer.put(f"flag-{seq % 10}", encode_document({"seq": seq, "enabled": seq % 2 == 0}))
        writer.put("stop", encode_document({"seq": -2}))
        latencies: list[float] = []
        missing = 0
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            seen = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
            missing += sum(1 for seq in sent if seq not in seen)
            latencies.extend(seen[seq] - sent[seq] for seq in sent if seq in seen)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
        writer.close()
    return latencies, missing


def write_throughput(db: str, writes: int) -> float:
    """Committed compare-and-set puts per second from one process."""
    store = SQLiteStore(db)
    record = store.put("hot", encode_document({"n": 0}))
    started = time.perf_counter()
    for n in range(writes):
        record = store.put("hot", encode_document({"n": n}), expect=record.version)
    elapsed = time.perf_counter() - started
    store.close()
    return writes / elapsed


def cold_load(db: str, flags: int) -> float:
    """Seconds for a new store object to load ``flags`` records (median of 3)."""
    store = SQLiteStore(db, namespace="bulk")
    store.put("flag-00000", encode_document({"enabled": True}))  # creates the schema
    store.close()
    # Fill in one transaction (the triggers still write history): setup, not measured.
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('bulk', ?, ?)",
            (
                (f"flag-{i:05d}", encode_document({"enabled": True, "percentage": i % 100}))
                for i in range(1, flags)
            ),
        )
    conn.close()
    times = []
    for _ in range(3):
        fresh = SQLiteStore(db, namespace="bulk")
        started = time.perf_counter()
        state = fresh.load()
        times.append(time.perf_counter() - started)
        if len(state.records) != flags:
            raise RuntimeError("cold load lost records")
        fresh.close()
    return statistics.median(times)


def idle_watch_cpu(db: str, seconds: float) -> float:
    """CPU used by one idle watch (polling data_version), in % of one core."""
    store = SQLiteStore(db)
    store.put("idle", encode_document({"enabled": True}))
    watch = store.watch(lambda event: None, since=store.load().revision)
    time.sleep(0.2)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    watch.stop()
    store.close()
    return 100 * cpu / wall


def run(quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="flagstaff-bench-") as tmp:
        db = str(Path(tmp) / "flags.db")
        latencies, missing = propagation(db, 40 if quick else 200)
        if missing:
            raise RuntimeError(f"{missing} changes never reached a follower")
        throughput = write_throughput(str(Path(tmp) / "write.db"), 100 if quick else 1000)
        load_s = cold_load(str(Path(tmp) / "bulk.db"), 2_000 if quick else 10_000)
        idle = idle_watch_cpu(str(Path(tmp) / "idle.db"), 1.0 if quick else 5.0)
    flags = "2k" if quick else "10k"
    return [
        Row("sqlite", f"propagation to {FOLLOWERS} processes, median", 1000 * statistics.median(latencies),
            "ms", None, "<= 100 ms"),
        Row("sqlite", f"propagation to {FOLLOWERS} processes, p99", 1000 * _percentile(latencies, 0.99),
            "ms", None, ""),
        Row("sqlite", "propagation, max", 1000 * max(latencies), "ms", None, ""),
        Row("sqlite", "compare-and-set writes (synchronous=FULL)", throughput, "writes/s", None, ""),
        Row("sqlite", f"cold load() of {flags} flags (store only)", 1000 * load_s, "ms", None, "<= 500 ms"),
        Row("sqlite", "CPU of an idle watch (25 ms data_version poll)", idle, "% core", None, ""),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row.group:8} {row.name:48} {row.value:10.2f} {row.unit:9} {row.target}")
