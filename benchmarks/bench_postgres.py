"""PostgreSQL store: a compare-and-set write, change propagation through a watch, a load of 1,000
flags, each beside the bare psycopg floor measured in the same run.

- write: ``put(expect=version)`` (one statement, the triggers' bookkeeping, the NOTIFY), floor:
  the same ``UPDATE … WHERE version = … RETURNING`` on a table without triggers;
- propagation: from the start of a write to the watch's callback in another store object
  (median, p99), floor: psycopg ``NOTIFY`` on one connection to ``notifies()`` on another;
- load: ``load()`` of 1,000 flags, floor: ``SELECT name, raw, version`` of the same rows.

A real server is started on loopback from the test fixture (``tests/_support/pg_server.py``);
every loop is bounded. Run: ``.venv/bin/python benchmarks/run.py --only bench_postgres``.
"""

from __future__ import annotations

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

from _fleet import percentile  # noqa: E402
from _row import Row  # noqa: E402

WAIT = 10.0  # seconds one change may take to arrive before the run fails


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def run(quick: bool = False) -> list[Row]:
    from flagstaff.stores.base import Change, WatchEvent, Write
    from flagstaff.stores.postgres import PostgresStore
    from tests._support.pg_server import PgServer

    n = 50 if quick else 300
    server = PgServer()
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    writer = PostgresStore.from_url(server.url(namespace))
    reader = PostgresStore.from_url(server.url(namespace))
    admin = server.admin()
    listener = server.admin()
    rows: list[Row] = []
    try:
        # -- write ------------------------------------------------------------------------
        record = writer.put("w", "on")

        def put() -> None:
            nonlocal record
            record = writer.put("w", "on", expect=record.version)

        writes = _timed(put, n)
        admin.execute("CREATE TABLE bare (name text PRIMARY KEY, raw bytea, version bigint)")
        admin.execute("INSERT INTO bare VALUES ('w', 'on', 1)")
        version = 1

        def bare_put() -> None:
            nonlocal version
            version = admin.execute(
                "UPDATE bare SET raw = %b, version = version + 1 WHERE name = 'w' AND version = %s "
                "RETURNING version",
                (b"on", version),
            ).fetchall()[0][0]

        bare_writes = _timed(bare_put, n)
        rows.append(
            Row("postgres", "put(expect=v), median", statistics.median(writes), "ms",
                statistics.median(bare_writes), "")
        )  # fmt: skip

        # -- propagation --------------------------------------------------------------------
        arrived = threading.Event()
        wanted = [""]

        def on_event(event: WatchEvent) -> None:
            if isinstance(event, Change) and event.record is not None and event.record.raw == wanted[0]:
                arrived.set()

        watch = reader.watch(on_event, reader.load().revision)
        time.sleep(0.5)  # listening

        def propagate() -> None:
            arrived.clear()
            wanted[0] = f'{{"seq": {uuid.uuid4().hex!r}}}'.replace("'", '"')
            writer.put("p", wanted[0])
            if not arrived.wait(WAIT):
                raise RuntimeError("a change did not reach the watch")

        latencies = _timed(propagate, n)
        watch.stop()
        listener.execute("LISTEN bench")
        got = threading.Event()

        def follow() -> None:
            for _ in listener.notifies(stop_after=n):
                got.set()

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        time.sleep(0.2)

        def notify() -> None:
            got.clear()
            admin.execute("NOTIFY bench, 'x'")
            if not got.wait(WAIT):
                raise RuntimeError("a notice did not arrive")

        bare_latencies = _timed(notify, n)
        thread.join(WAIT)
        rows.append(
            Row("postgres", "write -> watch callback, median", statistics.median(latencies), "ms",
                statistics.median(bare_latencies), "")
        )  # fmt: skip
        rows.append(
            Row("postgres", "write -> watch callback, p99", percentile(latencies, 0.99), "ms",
                percentile(bare_latencies, 0.99), "")
        )  # fmt: skip

        # -- load ---------------------------------------------------------------------------
        for start in range(0, 1000, 100):
            writer.put_many([Write(f"f{i}", '{"percentage": 10}') for i in range(start, start + 100)])
        loads = _timed(writer.load, 10 if quick else 30)
        bare_loads = _timed(
            lambda: admin.execute(
                "SELECT name, raw, version FROM flagstaff_flags WHERE namespace = %s", (namespace,)
            ).fetchall(),
            10 if quick else 30,
        )
        rows.append(
            Row("postgres", "load() of 1,000 flags, median", statistics.median(loads), "ms",
                statistics.median(bare_loads), "")
        )  # fmt: skip
    finally:
        listener.close()
        admin.close()
        reader.close()
        writer.close()
        server.close()
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
