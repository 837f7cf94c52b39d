"""The HTTP server under load, on loopback: evaluate and write throughput, event fan-out.

The server is ``flagstaff serve`` in its own process (one uvicorn worker, SQLite
store, request logging off); the load comes from this process with asyncio and
httpx2, so client and server share the machine's two cores, as they would on a
small host. Every loop is bounded by a request count.

* evaluate: ``POST /api/v1/evaluate`` for one flag, 16 requests in flight;
  requests/s over the run and per-request latency (p50, p99).
* write: ``PUT /api/v1/flags/{name}`` one after another (writes serialize in the
  store anyway); requests/s and latency.
* fan-out: 200 open ``/api/v1/events`` streams; for each change the time from
  just before the PUT is sent to each stream receiving the event (same clock),
  over every change and stream: p50 and p99. Target from issue 5: p99 < 200 ms.

Run alone: ``.venv/bin/python benchmarks/bench_http.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from flagstaff.http.tokens import Permission, TokenStore

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)

CONCURRENCY = 16
STREAMS = 200


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    """``flagstaff serve`` on a free loopback port, with a write token."""

    def __init__(self, tmp: str) -> None:
        store = f"sqlite:///{tmp}/bench.db"
        token_db = f"{tmp}/bench.db.tokens"
        tokens = TokenStore(token_db)
        self.token = tokens.create("bench", Permission.WRITE)[1]
        tokens.close()
        env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flagstaff", "--store", store, "serve", "--port", "0",
             "--token-db", token_db, "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = line.split()[1]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"{self.url}/healthz").raise_for_status()
                return
            except httpx2.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def _evaluate(client: httpx2.AsyncClient, total: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    body = {"flag": "checkout", "context": {"user_id": "alice"}}
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            response = await client.post("/api/v1/evaluate", json=body)
            latencies.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return total / (time.perf_counter() - started), latencies


async def _writes(client: httpx2.AsyncClient, total: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(total):
        start = time.perf_counter()
        response = await client.put("/api/v1/flags/written", json={"document": {"percentage": i % 100}})
        latencies.append(time.perf_counter() - start)
        assert response.status_code in (200, 201), response.text
    return total / (time.perf_counter() - started), latencies


async def _fanout(url: str, headers: dict[str, str], changes: int) -> list[float]:
    limits = httpx2.Limits(max_connections=STREAMS + 10, max_keepalive_connections=STREAMS + 10)
    timeout = httpx2.Timeout(30.0)
    received: dict[int, list[float]] = {i: [] for i in range(changes)}
    ready = 0
    all_ready = asyncio.Event()

    async with httpx2.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:

        async def stream() -> None:
            nonlocal ready
            async with client.stream("GET", "/api/v1/events") as response:
                kind = ""
                async for line in response.aiter_lines():
                    if line.startswith(": connected"):
                        ready += 1
                        if ready == STREAMS:
                            all_ready.set()
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "change":
                        data = json.loads(line[6:])
                        if data["name"] == "fanout":
                            seq = data["document"]["users"][0]
                            received[int(seq)].append(time.time())
                            if int(seq) == changes - 1:
                                return

        tasks = [asyncio.create_task(stream()) for _ in range(STREAMS)]
        await asyncio.wait_for(all_ready.wait(), 60)
        sent: dict[int, float] = {}
        async with httpx2.AsyncClient(base_url=url, headers=headers) as writer:
            for i in range(changes):
                sent[i] = time.time()
                response = await writer.put("/api/v1/flags/fanout", json={"document": {"users": [str(i)]}})
                assert response.status_code in (200, 201), response.text
                await asyncio.sleep(0.25)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    latencies = [(t - sent[i]) for i, times in received.items() for t in times]
    assert len(latencies) == changes * STREAMS, f"{len(latencies)} of {changes * STREAMS} events arrived"
    return latencies


async def _main(server: Server, quick: bool) -> list[Row]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx2.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        assert (
            await client.put("/api/v1/flags/checkout", json={"document": {"percentage": 50}})
        ).status_code == 201
        await client.post("/api/v1/evaluate", json={"flag": "checkout"})  # warm up
        eval_rate, eval_lat = await _evaluate(client, 1000 if quick else 5000)
        write_rate, write_lat = await _writes(client, 100 if quick else 500)
    fan = await _fanout(server.url, headers, 5 if quick else 20)
    ms = 1000.0
    return [
        Row("http", "evaluate one flag: requests/s (16 in flight)", eval_rate, "req/s", None, ""),
        Row("http", "evaluate one flag: p50 latency", statistics.median(eval_lat) * ms, "ms", None, ""),
        Row("http", "evaluate one flag: p99 latency", _percentile(eval_lat, 0.99) * ms, "ms", None, ""),
        Row("http", "write a flag (PUT): requests/s (sequential)", write_rate, "req/s", None, ""),
        Row("http", "write a flag (PUT): p99 latency", _percentile(write_lat, 0.99) * ms, "ms", None, ""),
        Row("http", f"change to {STREAMS} event streams: p50", statistics.median(fan) * ms, "ms", None, ""),
        Row(
            "http",
            f"change to {STREAMS} event streams: p99",
            _percentile(fan, 0.99) * ms,
            "ms",
            None,
            "< 200 ms",
        ),
    ]


def run(quick: bool) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="flagstaff-bench-http-") as tmp:
        server = Server(tmp)
        try:
            return asyncio.run(_main(server, quick))
        finally:
            server.stop()


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row.name:50} {row.value:10.2f} {row.unit:6} {row.target}")
