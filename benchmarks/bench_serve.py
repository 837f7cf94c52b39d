"""``flagstaff serve`` against its floor: evaluate latency over keep-alive, and event fan-out.

Two servers run as separate processes on loopback in the same run, measured in
alternating rounds (the machine's load changes under a shared benchmark):

* **flagstaff**: ``flagstaff serve`` itself (its socket, its uvicorn
  configuration, SQLite store, a read token on every request);
  ``POST /api/v1/evaluate`` for one flag and one user.
* **floor**: a bare Starlette app on uvicorn configured the same way (one worker,
  no access log) whose one POST endpoint returns a constant JSON body.

The load is raw HTTP/1.1 over keep-alive sockets from an asyncio loop in this
process (a prebuilt request, the answer read by its ``Content-Length``), so the
client costs little next to the server: 1 client one request at a time, then 16
clients, three rounds each. Per request latency p50/p99 (pooled) and requests/s
(median round); the ``x floor`` column is
flagstaff over the floor (target: within 2x). Every loop is bounded by a count.

Fan-out: 100 event streams open on ``flagstaff serve``, then a ~3.9 MB document
is written straight into the store (so the server only fans the change out; the
PUT's own parsing is not part of it). A separate process polls ``/healthz`` on a
keep-alive connection meanwhile; its worst latency while the streams receive the
event is how long the server's event loop stalled.

Run alone: ``.venv/bin/python benchmarks/bench_serve.py [--quick]``; in the table:
``.venv/bin/python benchmarks/run.py --only bench_serve``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)

EVAL_BODY = json.dumps({"flag": "checkout", "context": {"user_id": "alice"}}).encode()
STREAMS = 100
BIG_USERS = 330_000  # ~3.9 MB of JSON: "u000000".."u329999" (max document is 4 MiB)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}


# --------------------------------------------------------------------------- servers


def _wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.05)


class Flagstaff:
    """``flagstaff serve --port 0`` with one flag and a read token."""

    def __init__(self, tmp: str) -> None:
        from flagstaff.http.tokens import Permission, TokenStore
        from flagstaff.stores import open_store

        self.store_url = f"sqlite:///{tmp}/bench.db"
        token_db = f"{tmp}/bench.db.tokens"
        tokens = TokenStore(token_db)
        self.token = tokens.create("bench", Permission.READ)[1]
        tokens.close()
        store = open_store(self.store_url)
        store.put("checkout", json.dumps({"percentage": 50}))
        store.close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flagstaff", "--store", self.store_url, "serve", "--port", "0",
             "--token-db", token_db, "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(),
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline().split()[1].rsplit(":", 1)[1])
        _wait_listening(self.port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


FLOOR_SERVER = """
import socket, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ANSWER = {"flag": "checkout", "enabled": True, "reason": "percentage", "variant": None}

async def constant(request):
    return JSONResponse(ANSWER)

app = Starlette(routes=[Route("/evaluate", constant, methods=["POST"])])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, lifespan="off", access_log=False, log_config=None, log_level="warning")
uvicorn.Server(config).run(sockets=[sock])
"""


class Floor:
    """The bare Starlette + uvicorn "return a constant" endpoint."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        _wait_listening(self.port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# --------------------------------------------------------------------------- load


def _request(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(EVAL_BODY)}\r\n\r\n"
    )
    return head.encode() + EVAL_BODY


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _load(port: int, request: bytes, clients: int, per_client: int) -> tuple[float, list[float]]:
    """``clients`` keep-alive connections, each sending ``per_client`` requests one at a time."""
    latencies: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(3):  # warm-up, not measured
                writer.write(request)
                await _read_answer(reader)
            await start.wait()
            for _ in range(per_client):
                t0 = time.perf_counter()
                writer.write(request)
                status = await _read_answer(reader)
                latencies.append(time.perf_counter() - t0)
                assert status == 200, status
        finally:
            writer.close()

    start = asyncio.Event()
    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.2)  # every connection open and warmed up
    started = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    return clients * per_client / (time.perf_counter() - started), latencies


ROUNDS = 3


Measured = dict[tuple[str, int], tuple[float, list[float]]]


def _measure(targets: dict[str, tuple[int, bytes]], quick: bool) -> Measured:
    """Each target at 1 and 16 clients, in alternating rounds (floor, flagstaff, floor, ...) so
    that a change in the machine's load (it is shared) falls on both: the median round's
    requests/s and the pooled latencies."""
    counts = {1: 200 if quick else 700, 16: 50 if quick else 150}
    rates: dict[tuple[str, int], list[float]] = {}
    latencies: dict[tuple[str, int], list[float]] = {}
    for _ in range(ROUNDS):
        for clients, n in counts.items():
            for name, (port, request) in targets.items():
                rate, lat = asyncio.run(_load(port, request, clients, n))
                rates.setdefault((name, clients), []).append(rate)
                latencies.setdefault((name, clients), []).extend(lat)
    return {key: (statistics.median(rates[key]), latencies[key]) for key in rates}


# --------------------------------------------------------------------------- fan-out


def _poll_health(port: int, conn: Connection) -> None:
    """In its own process: GET /healthz on one keep-alive connection until told to stop;
    sends back (start time, latency) pairs."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    stream = sock.makefile("rb")
    samples: list[tuple[float, float]] = []
    conn.send("ready")
    while not conn.poll():
        t0 = time.time()
        sock.sendall(request)
        length = 0
        while (line := stream.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        stream.read(length)
        samples.append((t0, time.time() - t0))
        time.sleep(0.002)
    conn.send(samples)
    sock.close()


async def _fanout(server: Flagstaff) -> tuple[float, float, float, float]:
    """(worst /healthz latency during fan-out, its p50, time until every stream had the event,
    the /healthz p50 before), in seconds."""
    from flagstaff.stores import open_store

    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n\r\n"
    ).encode()
    connected = 0
    all_connected = asyncio.Event()
    done: list[float] = []

    async def stream() -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=1 << 20)
        writer.write(request)
        buffer = b""
        while b": connected" not in buffer:
            buffer += await reader.read(65536)
        connected += 1
        if connected == STREAMS:
            all_connected.set()
        tail = b""
        seen = 0
        while True:  # the change's frame: "event: change\ndata: {...}\n\n" (chunked on the wire)
            chunk = await reader.read(1 << 20)
            if not chunk:
                raise RuntimeError("stream closed before the event")
            seen += len(chunk)
            tail = (tail + chunk)[-64:]
            if seen > 3_000_000 and b"}\n\n" in tail:
                done.append(time.time())
                break
        writer.close()

    parent, child = multiprocessing.Pipe()
    poller = multiprocessing.get_context("spawn").Process(target=_poll_health, args=(server.port, child))
    poller.start()
    assert parent.recv() == "ready"
    tasks = [asyncio.create_task(stream()) for _ in range(STREAMS)]
    await asyncio.wait_for(all_connected.wait(), 60)
    await asyncio.sleep(0.5)  # a baseline of /healthz samples
    document = {"users": [f"u{i:06d}" for i in range(BIG_USERS)]}
    raw = json.dumps(document)
    store = open_store(server.store_url)
    written = time.time()
    store.put("big", raw)  # out of band: the server only has to fan it out
    store.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    await asyncio.sleep(0.2)
    parent.send("stop")
    samples: list[tuple[float, float]] = parent.recv()
    poller.join(10)
    finished = max(done)
    during = [lat for t0, lat in samples if written <= t0 + lat and t0 <= finished]
    before = [lat for t0, lat in samples if t0 + lat < written]
    return max(during), statistics.median(during), finished - written, statistics.median(before)


# --------------------------------------------------------------------------- run


def run(quick: bool) -> list[Row]:
    ms = 1000.0
    with tempfile.TemporaryDirectory(prefix="flagstaff-bench-serve-") as tmp:
        floor = Floor()
        server = Flagstaff(tmp)
        try:
            targets = {
                "floor": (floor.port, _request("/evaluate", None)),
                "flagstaff": (server.port, _request("/api/v1/evaluate", server.token)),
            }
            measured = _measure(targets, quick)
            floor.stop()
            stall, stall_p50, fan_time, idle_p50 = asyncio.run(_fanout(server))
        finally:
            floor.stop()
            server.stop()
    rows: list[Row] = []
    for clients in (1, 16):
        rate, lat = measured["flagstaff", clients]
        floor_rate, floor_lat = measured["floor", clients]
        what = f"evaluate, {clients} keep-alive client{'s' if clients > 1 else ''}"
        # The ratio column is value/floor: for requests/s, floor/value is the slowdown.
        rows.append(Row("serve", f"{what}: p50", statistics.median(lat) * ms, "ms",
                        statistics.median(floor_lat) * ms, "<= 2x floor"))  # fmt: skip
        rows.append(Row("serve", f"{what}: p99", _percentile(lat, 0.99) * ms, "ms",
                        _percentile(floor_lat, 0.99) * ms, "<= 2x floor"))  # fmt: skip
        rows.append(Row("serve", f"{what}: requests/s", rate, "req/s", floor_rate, ">= 0.5x floor"))
    fan = f"fan-out {STREAMS} x 3.9 MB"
    rows.append(Row("serve", f"{fan}: /healthz worst", stall * ms, "ms", idle_p50 * ms, ""))
    rows.append(Row("serve", f"{fan}: /healthz p50", stall_p50 * ms, "ms", idle_p50 * ms, ""))
    rows.append(Row("serve", f"{fan}: all streams have it", fan_time * ms, "ms", None, ""))
    return rows


if __name__ == "__main__":
    from run import render

    print(render(run("--quick" in sys.argv)))
