"""Web integration benchmarks: what the request scope costs per request.

Each row times one request through an integration beside the same request
without it (the floor, measured in the same run), so ``value - floor`` is the
middleware's overhead: reading the cookie, ``?feature=`` and host, calling the
context hook, building the context, taking the scope and entering it. The
apps do nothing but one flag check, so the overhead is as visible as it gets.
Also: ``flags.is_enabled`` inside a scope, beside ``client.is_enabled`` with a
prepared Context.

Run alone: ``.venv/bin/python benchmarks/bench_integrations.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _row import Row

import flagstaff
from flagstaff import Context, forcing
from flagstaff.admin import Admin
from flagstaff.integrations import flags
from flagstaff.integrations.asgi import FlagsMiddleware as ASGIMiddleware
from flagstaff.integrations.wsgi import FlagsMiddleware as WSGIMiddleware
from flagstaff.stores.memory import MemoryStore

GROUP = "integrations"
_FORCE_KEY = b"bench-integrations-force-key"  # a signed ?feature= token is part of the Flask row


def _pair_us(
    value: Callable[[int], None], floor: Callable[[int], None], n: int, batches: int
) -> tuple[float, float]:
    """Median microseconds per request of ``value(n)`` and ``floor(n)``, their
    batches interleaved so that load from other processes hits both alike."""
    value(n)  # warm up
    floor(n)
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(batches):
        for body, out in ((value, samples[0]), (floor, samples[1])):
            t0 = time.perf_counter()
            body(n)
            out.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples[0]), statistics.median(samples[1])


def _hook(request: Any) -> dict[str, Any]:
    return {"user_id": "user-42", "groups": ["beta"]}


def _wsgi_rows(client: flagstaff.Client, n: int, batches: int) -> list[Row]:
    def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"on" if client.is_enabled("beta_only", _hook(environ)) else b"off"]

    def scoped(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"on" if flags.is_enabled("beta_only") else b"off"]

    wrapped = WSGIMiddleware(scoped, client, context=_hook)
    environ: dict[str, Any] = {
        "QUERY_STRING": "page=2",
        "HTTP_COOKIE": "session=abc; flagstaff_id=visitor-123456",
        "HTTP_HOST": "www.example.com",
    }
    setup_testing_defaults(environ)

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        pass

    def loop(app: Any) -> Callable[[int], None]:
        def body(n: int) -> None:
            for _ in range(n):
                assert b"".join(app(dict(environ), start_response)) == b"on"

        return body

    value, floor = _pair_us(loop(wrapped), loop(bare), n, batches)
    return [Row(GROUP, "WSGI middleware: one request, one flag check", value, "us/request", floor, "")]


def _asgi_rows(client: flagstaff.Client, n: int, batches: int) -> list[Row]:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        on = client.is_enabled("beta_only", _hook(scope))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"on" if on else b"off"})

    async def scoped(scope: Any, receive: Any, send: Any) -> None:
        on = flags.is_enabled("beta_only")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"on" if on else b"off"})

    wrapped = ASGIMiddleware(scoped, client, context=_hook)
    connection = {
        "type": "http",
        "query_string": b"page=2",
        "headers": [(b"host", b"www.example.com"), (b"cookie", b"session=abc; flagstaff_id=visitor-123456")],
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        sent.append(message)

    def loop(app: Any) -> Callable[[int], None]:
        async def many(n: int) -> None:
            for _ in range(n):
                await app(dict(connection), receive, send)

        def body(n: int) -> None:
            sent.clear()
            asyncio.run(many(n))
            assert sent[-1]["body"] == b"on"

        return body

    value, floor = _pair_us(loop(wrapped), loop(bare), n, batches)
    return [Row(GROUP, "ASGI middleware: one request, one flag check", value, "us/request", floor, "")]


def _flask_rows(client: flagstaff.Client, n: int, batches: int) -> list[Row]:
    from flask import Flask
    from werkzeug.test import EnvironBuilder

    from flagstaff.integrations.flask import Flagstaff

    def make(with_flags: bool) -> Flask:
        app = Flask(__name__)
        if with_flags:
            app.config["FLAGSTAFF_FORCE_KEY"] = _FORCE_KEY  # the request's ?feature= token is verified
            Flagstaff(app, client, context=_hook)

        @app.get("/")
        def home() -> str:
            on = flags.is_enabled("beta_only") if with_flags else client.is_enabled("beta_only", _hook(None))
            return "on" if on else "off"

        return app

    environ = EnvironBuilder(
        path="/",
        query_string={"feature": forcing.sign("try_it", _FORCE_KEY, 3600)},
        headers={"Cookie": "flagstaff_id=visitor-123456"},
    ).get_environ()

    def loop(app: Flask) -> Callable[[int], None]:
        def body(n: int) -> None:
            for _ in range(n):
                assert b"".join(app.wsgi_app(dict(environ), lambda s, h: None)) == b"on"

        return body

    value, floor = _pair_us(loop(make(True)), loop(make(False)), n, batches)
    return [Row(GROUP, "Flask extension: one request, one flag check", value, "us/request", floor, "")]


def _proxy_rows(client: flagstaff.Client, batches: int) -> list[Row]:
    ctx = Context(user_id="user-42", groups=frozenset({"beta"}))
    calls = 20_000

    def in_scope() -> None:
        check = flags.is_enabled
        with client.scope(ctx):
            for _ in range(calls):
                check("beta_only")

    def direct() -> None:
        check = client.is_enabled
        for _ in range(calls):
            check("beta_only", ctx)

    value, floor = _pair_us(lambda n: in_scope(), lambda n: direct(), 1, batches)
    value, floor = value / calls * 1000, floor / calls * 1000
    return [Row(GROUP, "flags.is_enabled in a scope (floor: client + Context)", value, "ns/call", floor, "")]


def run(quick: bool) -> list[Row]:
    store = MemoryStore()
    Admin(store).set("beta_only", {"groups": ["beta"]})
    client = flagstaff.connect(store, timeout=30)
    n, batches = (300, 5) if quick else (2000, 15)
    try:
        assert client.is_enabled("beta_only", {"groups": ["beta"]}), "the benchmark flag did not load"
        return (
            _wsgi_rows(client, n, batches)
            + _asgi_rows(client, n, batches)
            + _flask_rows(client, n, batches)
            + _proxy_rows(client, batches)
        )
    finally:
        client.close()
        store.close()


if __name__ == "__main__":
    from run import render

    print(render(run("--quick" in sys.argv)))
