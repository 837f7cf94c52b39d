"""What environments and users cost a request: the environment router in front of every
request, the permission check with per-environment grants, and a password check.

* router: ``EnvironmentRouter`` calling a do-nothing ASGI app, for a default-environment
  path (``/api/v1/evaluate``) and an environment path (``/api/v1/envs/staging/flags/x``,
  rewritten); the floor is the do-nothing app called directly. Target: a few µs at most
  beside a request's ~1 ms through uvicorn.
* require: ``auth.require`` with the principal already identified (what every handler
  pays), for a token good everywhere and for a user with per-environment grants.
* password: ``UserStore.check_password`` (scrypt N=2**14, r=8, p=1): the cost of a log-in,
  and of a guess (the rate limiter bounds how many).

Run alone: ``.venv/bin/python benchmarks/bench_teams.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row
from starlette.requests import Request

from flagstaff.http import auth
from flagstaff.http.environments import ENV_KEY, EnvironmentRouter, Environments
from flagstaff.http.roles import Permission
from flagstaff.http.tokens import Principal
from flagstaff.http.users import UserStore

GROUP = "teams"


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    return None


def _per_call_ns(fn: Any, n: int) -> float:
    """Median over 5 runs of ``n`` calls, ns per call."""
    runs = []
    for _ in range(5):
        start = time.perf_counter_ns()
        fn(n)
        runs.append((time.perf_counter_ns() - start) / n)
    return statistics.median(runs)


def _router_rows(n: int) -> list[Row]:
    states: dict[str, Any] = {"production": object(), "staging": object()}
    router = EnvironmentRouter(_noop, Environments(states))

    def drive(app: Any, path: str) -> Any:
        async def loop(count: int) -> None:
            for _ in range(count):
                scope = {"type": "http", "path": path, "root_path": "", "method": "POST", "headers": []}
                await app(scope, None, None)

        return lambda count: asyncio.run(loop(count))

    floor = _per_call_ns(drive(_noop, "/api/v1/evaluate"), n)
    default = _per_call_ns(drive(router, "/api/v1/evaluate"), n)
    other = _per_call_ns(drive(router, "/api/v1/envs/staging/flags/x"), n)
    return [
        Row(GROUP, "router: a default-environment path", default, "ns/call", floor, "a few µs at most"),
        Row(
            GROUP, "router: /api/v1/envs/staging/... (rewritten)", other, "ns/call", floor, "a few µs at most"
        ),
    ]


class _App:
    class state:  # noqa: N801 (stands in for Starlette's app.state)
        flagstaff = None


def _require_rows(n: int) -> list[Row]:
    token = Principal("ci", "0123abcd", Permission.WRITE, "bearer")
    user = Principal(
        "ann", None, Permission.ADMIN, "user", (("production", Permission.READ), ("*", Permission.WRITE))
    )

    def timed(principal: Principal) -> Any:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [],
            ENV_KEY: "staging",
            "app": _App(),
        }
        request = Request(scope)
        request.state.principal = principal

        def loop(count: int) -> None:
            for _ in range(count):
                auth.require(request, Permission.WRITE)

        return loop

    return [
        Row(GROUP, "require: a token good everywhere", _per_call_ns(timed(token), n), "ns/call", None, ""),
        Row(
            GROUP,
            "require: a user's per-environment grants",
            _per_call_ns(timed(user), n),
            "ns/call",
            None,
            "",
        ),
    ]


def _password_rows(n: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        users = UserStore(str(Path(tmp) / "bench.users"))
        try:
            users.add("ann", "correct horse battery")
            times = []
            for _ in range(n):
                start = time.perf_counter()
                users.check_password("ann", "correct horse battery")
                times.append((time.perf_counter() - start) * 1000)
            unknown = []
            for _ in range(n):
                start = time.perf_counter()
                users.check_password("nobody", "correct horse battery")
                unknown.append((time.perf_counter() - start) * 1000)
        finally:
            users.close()
    return [
        Row(GROUP, "password check (scrypt N=2**14)", statistics.median(times), "ms", None, ""),
        Row(
            GROUP,
            "password check, unknown user (same cost)",
            statistics.median(unknown),
            "ms",
            None,
            "≈ the above",
        ),
    ]


def run(quick: bool) -> list[Row]:
    n = 20_000 if quick else 100_000
    return [*_router_rows(n), *_require_rows(n), *_password_rows(5 if quick else 20)]


def main() -> None:
    for row in run("--quick" in sys.argv):
        floor = f" (floor {row.floor:,.0f})" if row.floor is not None else ""
        print(f"{row.name:<55} {row.value:>12,.1f} {row.unit:<8}{floor} target {row.target}")


if __name__ == "__main__":
    main()
