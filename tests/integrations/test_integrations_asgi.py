"""The ASGI middleware under a real Starlette app: in-process through httpx (many
requests at once in one event loop) and behind a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flagstaff.forcing import sign
from flagstaff.integrations import RequestOptions, flags
from flagstaff.integrations.asgi import SCOPE_KEY, FlagsMiddleware
from tests._support.web import FlagWorld, flag_world

pytestmark = pytest.mark.timeout(120)

KEY = b"asgi-test-forcing-key-0123456789"  # a test-only key


def far_away() -> dict[str, Any]:
    scope = flags.scope
    assert scope is not None
    return {
        "user": scope.context.user_id,
        "cookie": scope.context.cookie_id,
        "revision": scope.revision,
        "alice_only": flags.is_enabled("alice_only"),
        "forced": flags.is_enabled("forced"),
        "nobody": flags.is_enabled("nobody"),
        "on_beta_subdomain": flags.is_enabled("on_beta_subdomain"),
    }


def user_from_headers(connection: dict[str, Any]) -> dict[str, Any] | None:
    headers = dict(connection["headers"])
    user = headers.get(b"x-user")
    return {"user_id": user.decode()} if user else None


class Gates:
    """Lines requests up inside the app (created inside the running loop)."""

    def __init__(self, parties: int = 1) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()


def make_app(world: FlagWorld, gates: list[Gates], options: RequestOptions | None = None) -> Starlette:
    async def home(request: Request) -> JSONResponse:
        assert request.scope[SCOPE_KEY] is flags.scope
        return JSONResponse(far_away())

    async def together(request: Request) -> JSONResponse:
        gate = gates[0]
        first = far_away()
        gate.arrived += 1
        if gate.arrived == gate.parties:
            gate.all_in.set()
        await asyncio.wait_for(gate.all_in.wait(), 30)  # every request is in flight here
        second = far_away()
        return JSONResponse({"first": first, "second": second})

    async def hold(request: Request) -> JSONResponse:
        gate = gates[0]
        first = far_away()
        gate.entered.set()
        await asyncio.wait_for(gate.release.wait(), 30)
        return JSONResponse({"first": first, "second": far_away()})

    async def child_task(request: Request) -> JSONResponse:
        return JSONResponse(await asyncio.create_task(_in_a_child_task()))

    return Starlette(
        routes=[
            Route("/", home),
            Route("/together", together),
            Route("/hold", hold),
            Route("/child", child_task),
        ],
        middleware=[
            Middleware(FlagsMiddleware, client=world.client, context=user_from_headers, options=options)
        ],
    )


async def _in_a_child_task() -> dict[str, Any]:
    await asyncio.sleep(0)
    return far_away()


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        yield w


def in_process(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def test_context_cookie_and_features(world: FlagWorld) -> None:
    async def main() -> None:
        async with in_process(make_app(world, [], RequestOptions(force_key=KEY))) as web:
            token = sign("try_forced", KEY, 60)
            response = await web.get(f"/?feature={token}", headers={"X-User": "alice"})
            seen = response.json()
            assert seen["user"] == "alice" and seen["alice_only"] is True and seen["forced"] is True
            minted = response.cookies.get("flagstaff_id")
            assert minted == seen["cookie"]
            assert "HttpOnly" in response.headers["set-cookie"]
            again = await web.get("/")  # httpx sends the cookie back
            assert again.json()["cookie"] == minted and "set-cookie" not in again.headers
            assert again.json()["alice_only"] is False

    asyncio.run(main())


def test_only_signed_tokens_force(world: FlagWorld) -> None:
    async def main(options: RequestOptions) -> list[bool]:
        async with in_process(make_app(world, [], options)) as web:
            values = [
                sign("try_forced", KEY, 60),
                "try_forced",
                sign("try_forced", KEY, 60, now=0),  # expired
                sign("try_forced", b"x" * 16, 60),  # another key
            ]
            return [(await web.get("/", params={"feature": v})).json()["forced"] for v in values]

    assert asyncio.run(main(RequestOptions(force_key=KEY))) == [True, False, False, False]
    assert asyncio.run(main(RequestOptions(force_key=None))) == [False, False, False, False]
    # reddit's form: plain values too (a token that verifies still gives its value).
    assert asyncio.run(main(RequestOptions(force_key=KEY, unsigned_forcing=True))) == [
        True,
        True,
        False,
        False,
    ]


def test_subdomain_with_a_domain_option(world: FlagWorld) -> None:
    async def main(host: str) -> bool:
        async with in_process(make_app(world, [], RequestOptions(domain="example.com"))) as web:
            seen: bool = (await web.get("/", headers={"Host": host})).json()["on_beta_subdomain"]
            return seen

    assert asyncio.run(main("beta.example.com")) is True
    assert asyncio.run(main("www.example.com")) is False


def test_concurrent_requests_in_one_loop_each_see_their_own_scope(world: FlagWorld) -> None:
    users = [f"user{i}" for i in range(12)] + ["alice"]

    async def main() -> dict[str, Any]:
        gates = [Gates(len(users))]
        async with in_process(make_app(world, gates)) as web:
            responses = await asyncio.gather(
                *(web.get("/together", headers={"X-User": user}) for user in users)
            )
        return {user: r.json() for user, r in zip(users, responses, strict=True)}

    results = asyncio.run(main())
    for user, body in results.items():
        for seen in (body["first"], body["second"]):
            assert seen["user"] == user and seen["alice_only"] is (user == "alice")


def test_a_change_mid_request_does_not_change_what_it_sees(world: FlagWorld) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        gates = [Gates()]
        async with in_process(make_app(world, gates)) as web:
            held = asyncio.create_task(web.get("/hold"))
            await asyncio.wait_for(gates[0].entered.wait(), 30)
            await asyncio.to_thread(world.set, "nobody", "on")  # lands mid-request
            after = (await web.get("/")).json()
            gates[0].release.set()
            return (await held).json(), after

    body, after = asyncio.run(main())
    assert after["nobody"] is True
    assert body["first"]["nobody"] is False and body["second"]["nobody"] is False
    assert body["first"]["revision"] == body["second"]["revision"] < after["revision"]


def test_tasks_started_by_a_request_inherit_its_scope(world: FlagWorld) -> None:
    async def main() -> dict[str, Any]:
        async with in_process(make_app(world, [])) as web:
            result: dict[str, Any] = (await web.get("/child", headers={"X-User": "alice"})).json()
            return result

    seen = asyncio.run(main())
    assert seen["user"] == "alice" and seen["alice_only"] is True
    assert flags.scope is None


def test_lifespan_passes_through(world: FlagWorld) -> None:
    calls: list[str] = []

    async def app(connection: Any, receive: Any, send: Any) -> None:
        calls.append(connection["type"])
        assert flags.scope is None

    async def main() -> None:
        await FlagsMiddleware(app, world.client)({"type": "lifespan"}, _never, _drop)

    asyncio.run(main())
    assert calls == ["lifespan"]


def test_websocket_connections_get_a_scope_and_no_cookie(world: FlagWorld) -> None:
    sent: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []

    async def app(connection: Any, receive: Any, send: Any) -> None:
        seen.append(far_away())
        await send({"type": "websocket.accept", "headers": []})

    async def record(message: Any) -> None:
        sent.append(message)

    connection = {"type": "websocket", "headers": [(b"x-user", b"alice")], "query_string": b""}
    asyncio.run(FlagsMiddleware(app, world.client, context=user_from_headers)(connection, _never, record))
    assert seen[0]["user"] == "alice" and seen[0]["alice_only"] is True
    assert seen[0]["cookie"] is not None  # a visitor id to bucket by, but a handshake sets no cookie
    assert sent == [{"type": "websocket.accept", "headers": []}]


def test_https_cookie_is_secure(world: FlagWorld) -> None:
    async def main() -> str:
        transport = httpx.ASGITransport(app=make_app(world, []))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as web:
            return (await web.get("/")).headers["set-cookie"]

    assert "Secure" in asyncio.run(main())


async def _never() -> dict[str, Any]:
    raise AssertionError("not called")


async def _drop(message: Any) -> None:
    pass


@contextlib.contextmanager
def serve_uvicorn(app: Any) -> Iterator[str]:
    """A real uvicorn server on a random loopback port, in a thread with its own loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60  # generous: a loaded machine starts slowly
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_behind_a_real_uvicorn_server(world: FlagWorld) -> None:
    users = ["alice", "bob", "carol", "dave"]

    async def main(base: str) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=30) as web:
            subdomain = await web.get("/", headers={"Host": "beta.example.com"})
            responses = await asyncio.gather(*(web.get("/", headers={"X-User": u}) for u in users))
        out = {u: r.json() for u, r in zip(users, responses, strict=True)}
        out["_subdomain"] = subdomain.json()
        return out

    with serve_uvicorn(make_app(world, [])) as base:
        results = asyncio.run(main(base))
    for user in users:
        assert results[user]["user"] == user and results[user]["alice_only"] is (user == "alice")
    assert results["_subdomain"]["on_beta_subdomain"] is False  # no DOMAIN configured
