"""The Flask extension, through Flask's test client and a real threaded werkzeug server.

Also run under gevent monkey-patching by test_integrations_gevent.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flask
import pytest
from werkzeug.serving import make_server

import flagstaff
from flagstaff.forcing import sign
from flagstaff.integrations import RequestOptions, flags
from flagstaff.integrations.flask import Flagstaff
from tests._support.web import FlagWorld, flag_world, get_json

pytestmark = pytest.mark.timeout(120)

KEY = "flask-test-forcing-key-012345678"  # a test-only key

TEMPLATE = (
    "{% if feature.is_enabled('alice_only') %}hello alice{% else %}hello you{% endif %}"
    "|{{ feature.variant('theme') or 'classic' }}"
    "|{% if 'beta_group' is flag_enabled %}beta{% else %}stable{% endif %}"
)


def helper_far_away() -> dict[str, Any]:
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


def user_from_session(request: flask.Request) -> dict[str, Any] | None:
    # The hook runs inside the request: flask.session and request headers are there.
    user = flask.session.get("user") or request.headers.get("X-User")
    return {"user_id": user, "groups": request.headers.get("X-Groups", "").split(",")} if user else None


class Sync:
    """What the test uses to line requests up inside the server."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.barrier = threading.Barrier(1)


def make_app(client: flagstaff.Client, **kwargs: Any) -> tuple[flask.Flask, Sync]:
    app = flask.Flask(__name__)
    app.secret_key = "test"
    ext = Flagstaff(client=client, context=user_from_session, **kwargs)
    ext.init_app(app)  # the app-factory form
    sync = Sync()

    @app.get("/")
    def home() -> Any:
        assert app.extensions["flagstaff"].scope is flags.scope
        return helper_far_away()

    @app.get("/login/<user>")
    def login(user: str) -> Any:
        flask.session["user"] = user
        return "ok"

    @app.get("/page")
    def page() -> str:
        return flask.render_template_string(TEMPLATE)

    @app.get("/hold")
    def hold() -> Any:
        first = helper_far_away()
        sync.entered.set()
        assert sync.release.wait(30)
        return {"first": first, "second": helper_far_away()}

    @app.get("/together")
    def together() -> Any:
        first = helper_far_away()
        sync.barrier.wait(timeout=30)
        return {"first": first, "second": helper_far_away()}

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("view failed")

    return app, sync


@pytest.fixture
def world() -> Iterator[FlagWorld]:
    with flag_world() as w:
        yield w


@contextlib.contextmanager
def serve(app: flask.Flask) -> Iterator[str]:
    """A real threaded werkzeug server on a random loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def test_views_see_the_request_scope_through_flags(world: FlagWorld) -> None:
    app, _ = make_app(world.client, options=RequestOptions(force_key=KEY))
    web = app.test_client()
    seen = web.get(f"/?feature={sign('try_forced', KEY, 60)}", headers={"X-User": "alice"}).get_json()
    assert seen["user"] == "alice" and seen["alice_only"] is True and seen["forced"] is True
    seen = web.get("/", headers={"X-User": "bob"}).get_json()
    assert seen["user"] == "bob" and seen["alice_only"] is False and seen["forced"] is False
    assert flags.scope is None  # left at teardown
    assert app.extensions["flagstaff"].scope is None  # outside a request


def test_the_forcing_key_from_the_app_config(world: FlagWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAGSTAFF_FORCE_KEY", raising=False)
    app = flask.Flask(__name__)
    app.config["FLAGSTAFF_FORCE_KEY"] = KEY
    Flagstaff(app, world.client)
    app.get("/")(helper_far_away)
    web = app.test_client()
    assert web.get(f"/?feature={sign('try_forced', KEY, 60)}").get_json()["forced"] is True
    assert web.get("/?feature=try_forced").get_json()["forced"] is False  # unsigned: dropped
    # Options given explicitly win over the config (here: no key, so nothing is forced).
    other = flask.Flask(__name__)
    other.config["FLAGSTAFF_FORCE_KEY"] = KEY
    Flagstaff(other, world.client, options=RequestOptions(force_key=None))
    other.get("/")(helper_far_away)
    assert other.test_client().get(f"/?feature={sign('try_forced', KEY, 60)}").get_json()["forced"] is False


def test_the_hook_sees_the_session(world: FlagWorld) -> None:
    app, _ = make_app(world.client)
    web = app.test_client()
    assert web.get("/").get_json()["alice_only"] is False
    web.get("/login/alice")
    assert web.get("/").get_json()["alice_only"] is True


def test_visitor_cookie_is_set_once_and_reused(world: FlagWorld) -> None:
    app, _ = make_app(world.client)
    web = app.test_client()
    response = web.get("/")
    cookie = web.get_cookie("flagstaff_id")
    assert cookie is not None and cookie.value == response.get_json()["cookie"]
    assert cookie.http_only and cookie.same_site == "Lax"
    again = web.get("/")
    assert again.get_json()["cookie"] == cookie.value
    assert "Set-Cookie" not in again.headers


def test_options_rename_the_cookie_and_read_the_subdomain(world: FlagWorld) -> None:
    app, _ = make_app(world.client, options=RequestOptions(cookie="loid", domain="example.com"))
    web = app.test_client()
    seen = web.get("/", base_url="http://beta.example.com").get_json()
    assert web.get_cookie("loid", domain="beta.example.com") is not None
    assert web.get_cookie("flagstaff_id", domain="beta.example.com") is None
    assert seen["on_beta_subdomain"] is True
    assert web.get("/", base_url="http://www.example.com").get_json()["on_beta_subdomain"] is False


def test_jinja_templates_have_feature(world: FlagWorld) -> None:
    app, _ = make_app(world.client)
    web = app.test_client()
    assert web.get("/page", headers={"X-User": "alice"}).text == "hello alice|dark|stable"
    assert web.get("/page", headers={"X-User": "bob", "X-Groups": "beta"}).text == "hello you|classic|beta"


def test_a_failing_view_still_leaves_the_scope(world: FlagWorld) -> None:
    app, _ = make_app(world.client)
    web = app.test_client()
    assert web.get("/boom").status_code == 500
    assert flags.scope is None


def test_store_url_from_config() -> None:
    with flag_world() as w:
        app = flask.Flask(__name__)
        app.config["FLAGSTAFF_STORE"] = w.store.url
        ext = Flagstaff(app)
        assert ext.client is not None
        try:

            @app.get("/")
            def home() -> Any:
                return {"everyone": flags.is_enabled("everyone")}

            assert app.test_client().get("/").get_json() == {"everyone": True}
        finally:
            ext.client.close()
    with pytest.raises(flagstaff.ClientError, match="FLAGSTAFF_STORE"):
        Flagstaff(flask.Flask(__name__))


def test_concurrent_requests_on_a_real_server(world: FlagWorld) -> None:
    users = ["alice", "bob", "carol", "dave", "erin"]
    app, sync = make_app(world.client)
    sync.barrier = threading.Barrier(len(users))
    with serve(app) as base:

        def one(user: str) -> dict[str, Any]:
            request = urllib.request.Request(f"{base}/together", headers={"X-User": user})
            with urllib.request.urlopen(request, timeout=60) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result

        with ThreadPoolExecutor(len(users)) as pool:
            results = dict(zip(users, pool.map(one, users), strict=True))
    for user, body in results.items():
        for seen in (body["first"], body["second"]):
            assert seen["user"] == user and seen["alice_only"] is (user == "alice")


def test_a_change_mid_request_is_not_seen_by_that_request(world: FlagWorld) -> None:
    app, sync = make_app(world.client)
    with serve(app) as base, ThreadPoolExecutor(1) as pool:
        held = pool.submit(get_json, f"{base}/hold")
        assert sync.entered.wait(30)
        world.set("nobody", "on")
        after, _ = get_json(f"{base}/")
        sync.release.set()
        body, _ = held.result(timeout=60)
    assert after["nobody"] is True
    assert body["first"]["nobody"] is False and body["second"]["nobody"] is False
    assert body["first"]["revision"] == body["second"]["revision"] < after["revision"]
