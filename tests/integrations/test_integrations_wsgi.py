"""The WSGI middleware, called directly and behind a real threaded WSGI server.

Run a second time under gevent monkey-patching by test_integrations_gevent.py:
there the same server runs each request on a greenlet.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from flagstaff import Reason
from flagstaff.forcing import sign
from flagstaff.integrations import RequestOptions, flags
from flagstaff.integrations.wsgi import ENVIRON_KEY, FlagsMiddleware
from flagstaff.scope import Scope
from tests._support.client import expected_runtime
from tests._support.web import FlagWorld, flag_world, get_json, serve_wsgi

pytestmark = pytest.mark.timeout(120)

StartResponse = Callable[..., Any]

KEY = b"wsgi-test-forcing-key-0123456789"  # a test-only key
SIGNED = RequestOptions(force_key=KEY)


def deep_in_the_stack() -> dict[str, Any]:
    """What application code far from the request sees: nothing passed in."""
    scope = flags.scope
    assert scope is not None
    return {
        "user": scope.context.user_id,
        "cookie": scope.context.cookie_id,
        "revision": scope.revision,
        "alice_only": flags.is_enabled("alice_only"),
        "beta_group": flags.is_enabled("beta_group"),
        "forced": flags.is_enabled("forced"),
        "on_beta_subdomain": flags.is_enabled("on_beta_subdomain"),
        "nobody": flags.is_enabled("nobody"),
    }


def user_from_headers(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The test's stand-in for an auth layer: the user comes in a header."""
    user = environ.get("HTTP_X_USER")
    if not user:
        return None
    groups = [g for g in environ.get("HTTP_X_GROUPS", "").split(",") if g]
    return {"user_id": user, "groups": groups}


class App:
    """A plain WSGI app; ``/hold`` parks the request until the test releases it."""

    def __init__(self) -> None:
        self.barrier: threading.Barrier | None = None
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        assert isinstance(environ[ENVIRON_KEY], Scope)
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return self.stream()
        body: dict[str, Any] = {"first": deep_in_the_stack()}
        if path == "/together":
            assert self.barrier is not None
            self.barrier.wait(timeout=30)  # every request is in flight at once here
            body["second"] = deep_in_the_stack()
        elif path == "/hold":
            self.entered.set()
            assert self.release.wait(timeout=30)
            body["second"] = deep_in_the_stack()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def stream(self) -> Iterator[bytes]:
        # Runs after the middleware's __call__ has returned, on the server's stack.
        for name in ("alice_only", "everyone"):
            yield f"{name}={flags.is_enabled(name)}\n".encode()


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        yield w


def call(app: Any, path: str = "/", **environ: Any) -> tuple[str, list[tuple[str, str]], bytes]:
    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    path, _, query = path.partition("?")
    env.update(PATH_INFO=path, QUERY_STRING=query, **environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.update(status=status, headers=headers)

    chunks = app(env, start_response)
    try:
        body = b"".join(chunks)
    finally:
        chunks.close()
    return seen["status"], seen["headers"], body


def test_runtime_is_the_expected_one(world: FlagWorld) -> None:
    assert world.client._runtime.name == (expected_runtime() or "threads")


def test_context_is_built_from_the_request_and_the_hook(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client, context=user_from_headers, options=SIGNED)
    _, headers, body = call(
        app,
        f"/?feature={sign('try_forced', KEY, 60)}&feature={sign('other', KEY, 60)}",
        HTTP_X_USER="alice",
        HTTP_X_GROUPS="beta,staff",
        HTTP_COOKIE="flagstaff_id=visitor-7",
    )
    seen = json.loads(body)["first"]
    assert seen["user"] == "alice" and seen["cookie"] == "visitor-7"
    assert seen["alice_only"] is True and seen["beta_group"] is True
    assert seen["forced"] is True
    assert seen["nobody"] is False
    assert not [h for h in headers if h[0] == "Set-Cookie"]  # the visitor already had one


def test_a_logged_out_visitor_gets_a_stable_cookie(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client, context=user_from_headers)
    _, headers, body = call(app, "/")
    set_cookies = [v for k, v in headers if k == "Set-Cookie"]
    assert len(set_cookies) == 1
    minted = json.loads(body)["first"]["cookie"]
    assert set_cookies[0].startswith(f"flagstaff_id={minted}; Path=/; Max-Age=")
    assert "HttpOnly" in set_cookies[0] and "Secure" not in set_cookies[0]
    # Sent back, it is the same visitor (so the same bucket) and nothing new is set.
    _, headers, body = call(app, "/", HTTP_COOKIE=f"flagstaff_id={minted}")
    assert json.loads(body)["first"]["cookie"] == minted
    assert not [h for h in headers if h[0] == "Set-Cookie"]
    # Over https the cookie is Secure.
    _, headers, _ = call(app, "/", **{"wsgi.url_scheme": "https"})
    assert "Secure" in next(v for k, v in headers if k == "Set-Cookie")


def test_subdomain_and_options(world: FlagWorld) -> None:
    options = RequestOptions(cookie="loid", domain="example.com", feature_param=None)
    app = FlagsMiddleware(App(), world.client, options=options)
    _, headers, body = call(app, "/?feature=try_forced", HTTP_HOST="beta.example.com")
    seen = json.loads(body)["first"]
    assert seen["on_beta_subdomain"] is True
    assert seen["forced"] is False  # the query parameter is not read
    assert next(v for k, v in headers if k == "Set-Cookie").startswith("loid=")
    _, _, body = call(app, "/", HTTP_HOST="www.example.com")
    assert json.loads(body)["first"]["on_beta_subdomain"] is False


def test_a_hook_returning_a_bad_context_serves_the_request_with_error_decisions(world: FlagWorld) -> None:
    seen: list[Any] = []

    def site(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        seen.append(flags.evaluate("everyone"))
        start_response("200 OK", [])
        return [b"ok"]

    app = FlagsMiddleware(site, world.client, context=lambda environ: {"time": "not a time"})
    status, _, body = call(app, "/")
    assert (status, body) == ("200 OK", b"ok")
    assert seen[0].reason is Reason.ERROR and "not ISO 8601" in seen[0].error


def test_a_streamed_body_still_sees_the_request_scope(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client, context=user_from_headers)
    _, _, body = call(app, "/stream", HTTP_X_USER="alice")
    assert body == b"alice_only=True\neveryone=True\n"
    assert flags.scope is None  # nothing leaked into the caller's context


def test_outside_a_request_flags_falls_back_to_the_client(world: FlagWorld) -> None:
    FlagsMiddleware(App(), world.client)
    assert flags.client is world.client
    assert flags.scope is None
    assert flags.is_enabled("everyone") is True
    assert flags.is_enabled("alice_only") is False


def test_concurrent_requests_each_see_their_own_context(world: FlagWorld) -> None:
    users = ["alice", "bob", "carol", "dave", "erin", "frank"]
    inner = App()
    inner.barrier = threading.Barrier(len(users))
    app = FlagsMiddleware(inner, world.client, context=user_from_headers)
    with serve_wsgi(app) as base:

        def one(user: str) -> dict[str, Any]:
            request = urllib.request.Request(
                f"{base}/together", headers={"X-User": user, "X-Groups": "beta" if user == "bob" else ""}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result

        with ThreadPoolExecutor(len(users)) as pool:
            results = dict(zip(users, pool.map(one, users), strict=True))
    for user, body in results.items():
        for seen in (body["first"], body["second"]):
            assert seen["user"] == user
            assert seen["alice_only"] is (user == "alice")
            assert seen["beta_group"] is (user == "bob")
    assert len({body["first"]["cookie"] for body in results.values()}) == len(users)


def test_a_change_mid_request_does_not_change_what_the_request_sees(world: FlagWorld) -> None:
    inner = App()
    app = FlagsMiddleware(inner, world.client, context=user_from_headers)
    with serve_wsgi(app) as base, ThreadPoolExecutor(1) as pool:
        held = pool.submit(get_json, f"{base}/hold")
        assert inner.entered.wait(30)
        world.set("nobody", "on")  # lands while /hold is in the middle of its work
        after, _ = get_json(f"{base}/")
        assert after["first"]["nobody"] is True  # a new request sees the change
        inner.release.set()
        body, _ = held.result(timeout=60)
    assert body["first"]["nobody"] is False and body["second"]["nobody"] is False
    assert body["first"]["revision"] == body["second"]["revision"] < after["first"]["revision"]


def test_cookie_round_trip_through_a_real_server(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client)
    with serve_wsgi(app) as base:
        first, headers = get_json(f"{base}/")
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        second, headers = get_json(f"{base}/", cookie=cookie)
    assert second["first"]["cookie"] == first["first"]["cookie"]
    assert "Set-Cookie" not in headers


def test_quoting_in_the_query_string(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client, options=SIGNED)
    query = urllib.parse.urlencode([("feature", sign("try_forced", KEY, 60)), ("x", "1")])
    _, _, body = call(app, f"/?{query}")
    assert json.loads(body)["first"]["forced"] is True


def test_only_signed_unexpired_tokens_force(world: FlagWorld, caplog: pytest.LogCaptureFixture) -> None:
    app = FlagsMiddleware(App(), world.client, options=SIGNED)

    def forced(value: str) -> bool:
        _, _, body = call(app, "/?" + urllib.parse.urlencode([("feature", value)]))
        result: bool = json.loads(body)["first"]["forced"]
        return result

    assert forced(sign("try_forced", KEY, 60)) is True
    with caplog.at_level(logging.DEBUG, logger="flagstaff.integrations"):
        assert forced("try_forced") is False  # what anyone could type: dropped, logged at debug
    assert "dropped: not a valid forcing token" in caplog.text
    assert forced(sign("try_forced", KEY, 60, now=0)) is False  # expired in 1970
    assert forced(sign("try_forced", b"another-key-of-32-bytes-........", 60)) is False
    assert forced(sign("other", KEY, 60)) is False  # a valid token for another value
    token = sign("try_forced", KEY, 60)
    assert forced(token[:-1] + ("A" if token[-1] != "A" else "B")) is False  # tampered


def test_without_a_key_nothing_is_forced(world: FlagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAGSTAFF_FORCE_KEY", raising=False)
    app = FlagsMiddleware(App(), world.client)  # no key configured anywhere
    for value in ("try_forced", sign("try_forced", KEY, 60)):
        _, _, body = call(app, "/?" + urllib.parse.urlencode([("feature", value)]))
        assert json.loads(body)["first"]["forced"] is False


def test_the_key_comes_from_the_environment_by_default(
    world: FlagWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAGSTAFF_FORCE_KEY", KEY.decode())
    app = FlagsMiddleware(App(), world.client)
    _, _, body = call(app, f"/?feature={sign('try_forced', KEY, 60)}")
    assert json.loads(body)["first"]["forced"] is True


def test_unsigned_forcing_takes_plain_values_as_reddit_did(world: FlagWorld) -> None:
    app = FlagsMiddleware(App(), world.client, options=RequestOptions(force_key=None, unsigned_forcing=True))
    _, _, body = call(app, "/?feature=try_forced")
    assert json.loads(body)["first"]["forced"] is True
