"""Dashboard benchmark: the flag list with 10,000 flags (issue 16: <= 300 ms of server time).

A SQLite store holds 10,000 flags of mixed kinds, owners and tags (every twentieth
archived); the app runs in-process (Starlette's test client, open mode), so what is
timed is the server's work: the store read, filtering, one page of rows, the template.
Each request is timed ``ROUNDS`` times after one warm-up (which parses every flag once:
the parse cache keeps them, as a running server does); the row is the median, and the
first (cold) request is its own row.

Run alone: ``.venv/bin/python benchmarks/bench_dashboard.py [--quick]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from starlette.testclient import TestClient

from flagstaff.admin import Admin
from flagstaff.http.app import create_app
from flagstaff.stores import open_store

try:
    from _row import Row
except ImportError:  # until the shared plumbing has landed
    from typing import NamedTuple

    class Row(NamedTuple):  # type: ignore[no-redef]
        group: str
        name: str
        value: float
        unit: str
        floor: float | None
        target: str


GROUP = "dashboard"
FLAGS = 10_000
KINDS = ("release", "experiment", "ops", "permission", "temporary", "permanent")


def _documents(n: int) -> dict[str, Any]:
    docs: dict[str, Any] = {}
    for i in range(n):
        doc: dict[str, Any] = {
            "percentage": i % 101,
            "kind": KINDS[i % len(KINDS)],
            "owner": f"team-{i % 37}",
            "tags": [f"area-{i % 11}", f"q{i % 4 + 1}"],
            "description": f"flag number {i} for the checkout and search work",
        }
        if i % 7 == 0:
            doc["targeting"] = [
                {"when": [{"attribute": "plan", "op": "in", "value": ["pro"]}], "serve": "on"}
            ]
        if i % 20 == 0:
            doc["archived"] = True
        docs[f"flag_{i:05d}"] = doc
    return docs


def _time_ms(client: TestClient, path: str, rounds: int) -> tuple[float, float]:
    """(first request, median of ``rounds`` more) in ms; every answer must be 200."""
    t0 = time.perf_counter()
    first = client.get(path)
    cold = (time.perf_counter() - t0) * 1000
    assert first.status_code == 200, (path, first.status_code)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return cold, statistics.median(samples) if samples else cold


def run(quick: bool) -> list[Row]:
    rounds = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="flagstaff-bench-dashboard-") as tmp:
        url = f"sqlite:///{tmp}/flags.db"
        store = open_store(url)
        try:
            Admin(store, author="bench").import_documents(_documents(FLAGS))
        finally:
            store.close()
        app = create_app(url, open_mode=True, token_db=f"{tmp}/tokens.db")
        rows: list[Row] = []
        with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
            cold, _ = _time_ms(client, "/", 0)
            rows.append(Row(GROUP, f"list {FLAGS:,} flags, first request (parses all)", cold, "ms", None, ""))
            for label, path in (
                ("list, page 1", "/"),
                ("list, page 50", "/?page=50"),
                ("list, search ?q=", "/?q=team-3+checkout"),
                ("list, filter owner+tag", "/?owner=team-5&tag=q2"),
                ("list, archived only", "/?archived=only"),
                ("list, stale filter (reads history)", "/?kind=stale"),
            ):
                _, median = _time_ms(client, path, rounds)
                target = "" if "stale" in label else "<= 300 ms"
                rows.append(Row(GROUP, f"{label} ({FLAGS:,} flags)", median, "ms", None, target))
        app.state.flagstaff.close()
        return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(f"{row.name:60} {row.value:10.2f} {row.unit:6} {row.target}")
