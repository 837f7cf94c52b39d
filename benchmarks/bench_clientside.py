"""Client-side evaluation under load, on loopback: ``/api/v1/client/evaluate`` with a client key.

The server is the flagstaff app under uvicorn in its own process (one worker, SQLite store,
100 flags of which 20 are ``client_visible``), with rate limits raised out of the way (the
defaults would answer 429: that is their job, not what is measured here). The load comes
from this process with asyncio and httpx2, 16 requests in flight, each for a different user.

* full: ``POST`` with a context, the answer's 20 decisions in the body (200);
* revalidated: the same request with ``If-None-Match`` of the answer's ETag (304, no body).

Requests/s over the run and per-request latency (p50, p99). Every loop is bounded.
Run alone: ``.venv/bin/python benchmarks/bench_clientside.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)

CONCURRENCY = 16
FLAGS = 100
VISIBLE = 20

_SERVER = """
import socket, sys, uvicorn
from flagstaff.http.app import Settings, create_app
from flagstaff.http.clientside import ClientSide
from flagstaff.http.serving import uvicorn_options
limits = ClientSide(key_rate=1e9, key_burst=1e9, address_rate=1e9, address_burst=1e9)
app = create_app(sys.argv[1], settings=Settings(clientside=limits))
state = app.state.flagstaff
flags, visible = int(sys.argv[2]), int(sys.argv[3])
for i in range(flags):
    doc = {"percentage": 50, "users": ["u1"], "client_visible": i < visible}
    if i % 3 == 0:
        doc.update(variants=["a", "b"], values={"a": {"n": i}, "b": {"n": -i}})
    state.admin.set(f"flag_{i:03d}", doc)
_, key = state.client_keys.create("bench")
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
print(f"http://127.0.0.1:{sock.getsockname()[1]} {key}", flush=True)
config = uvicorn.Config(app, log_level="warning", access_log=False, **uvicorn_options())
uvicorn.Server(config).run(sockets=[sock])
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(url: str, key: str, total: int, revalidate: bool) -> tuple[float, list[float]]:
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    async with httpx2.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        tags: dict[int, str] = {}
        if revalidate:
            for user in range(CONCURRENCY):
                first = await client.post(
                    "/api/v1/client/evaluate", json={"context": {"user_id": f"u{user}"}}
                )
                tags[user] = first.headers["etag"]
        sent = 0

        async def worker(user: int) -> None:
            nonlocal sent
            extra = {"If-None-Match": tags[user]} if revalidate else {}
            while sent < total:
                sent += 1
                started = time.perf_counter()
                response = await client.post(
                    "/api/v1/client/evaluate", json={"context": {"user_id": f"u{user}"}}, headers=extra
                )
                latencies.append(time.perf_counter() - started)
                assert response.status_code == (304 if revalidate else 200), response.status_code

        started = time.perf_counter()
        await asyncio.gather(*(worker(u) for u in range(CONCURRENCY)))
        return time.perf_counter() - started, latencies


def run(quick: bool = False) -> list[Row]:
    total = 500 if quick else 3000
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, f"sqlite:///{tmp}/bench.db", str(FLAGS), str(VISIBLE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            url, key = proc.stdout.readline().split()
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx2.get(f"{url}/healthz").raise_for_status()
                    break
                except httpx2.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            rows = []
            for name, revalidate in (("full answer (200)", False), ("revalidated (304)", True)):
                elapsed, latencies = asyncio.run(_load(url, key, total, revalidate))
                group = "client-side"
                rows += [
                    Row(group, f"{name}: requests/s", len(latencies) / elapsed, "req/s", None, ""),
                    Row(group, f"{name}: p50", statistics.median(latencies) * 1000, "ms", None, ""),
                    Row(group, f"{name}: p99", _percentile(latencies, 0.99) * 1000, "ms", None, ""),
                ]
            return rows
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row.group:12} {row.name:32} {row.value:10.2f} {row.unit}")
