"""Who may do what: the token matrix over every endpoint, sessions, CSRF, rate limits, open mode."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from flagstaff.cli import main
from flagstaff.http import auth
from flagstaff.http.app import ServerState, Settings, create_app
from flagstaff.http.state import RateLimiter
from flagstaff.http.tokens import Permission, TokenStore, hash_token
from tests._support.http_server import ServerThread, make_token

READ, WRITE, ADMIN = Permission.READ, Permission.WRITE, Permission.ADMIN

# (method, path, body, scope needed or None for public, status on success)
ENDPOINTS: list[tuple[str, str, Any, Permission | None, int]] = [
    ("GET", "/healthz", None, None, 200),
    ("GET", "/metrics", None, None, 200),
    ("GET", "/api/v1/openapi.json", None, None, 200),
    ("GET", "/api/v1/flags", None, READ, 200),
    ("POST", "/api/v1/flags", {"name": "new", "document": "on"}, WRITE, 201),
    ("GET", "/api/v1/flags/f", None, READ, 200),
    ("PUT", "/api/v1/flags/f", {"document": 42}, WRITE, 200),
    ("PATCH", "/api/v1/flags/f", {"op": "kill"}, WRITE, 200),
    ("DELETE", "/api/v1/flags/f", None, WRITE, 204),
    ("GET", "/api/v1/flags/f/history", None, READ, 200),
    ("GET", "/api/v1/flags/f/diff?from=1", None, READ, 200),
    ("POST", "/api/v1/flags/f/rollback", {"version": 1}, WRITE, 200),
    ("GET", "/api/v1/history", None, READ, 200),
    ("POST", "/api/v1/validate", {"document": "on"}, READ, 200),
    ("POST", "/api/v1/evaluate", {"flag": "f"}, READ, 200),
    ("GET", "/api/v1/events", None, READ, 200),
    ("GET", "/api/v1/tokens", None, ADMIN, 200),
    ("POST", "/api/v1/tokens", {"name": "t", "scope": "read"}, ADMIN, 201),
    ("DELETE", "/api/v1/tokens/{victim}", None, ADMIN, 200),
    ("GET", "/api/v1/change-requests", None, READ, 200),
    ("POST", "/api/v1/change-requests", {"flag": "f", "document": "on"}, WRITE, 201),
    ("GET", "/api/v1/client-keys", None, ADMIN, 200),
    ("POST", "/api/v1/client-keys", {"name": "web"}, ADMIN, 201),
]
CREDENTIALS = ["none", "malformed", "basic", "revoked", "read", "write", "approve", "admin"]


class Matrix:
    def __init__(self, tmp: Path) -> None:
        self.app = create_app(f"sqlite:///{tmp}/flags.db", settings=Settings(auth_failures=1_000_000))
        self.state: ServerState = self.app.state.flagstaff
        self.server = ServerThread(self.app)
        self.tokens = {scope.label: make_token(self.state, scope) for scope in Permission}
        revoked = make_token(self.state, ADMIN, "revoked")
        self.state.tokens.revoke(revoked[4:12])
        self.headers = {
            "none": {},
            "malformed": {"Authorization": "Bearer not-a-token"},
            "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
            "revoked": {"Authorization": f"Bearer {revoked}"},
            **{label: {"Authorization": f"Bearer {token}"} for label, token in self.tokens.items()},
        }

    def reset(self) -> None:
        """Flag f at version 2 (version 1 in history), no flag 'new'."""
        for name in ("f", "new"):
            if self.state.store.get(name) is not None:
                self.state.store.delete(name)
        self.state.admin.set("f", {"users": ["a"]})
        self.state.admin.set("f", {"users": ["a", "b"]})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    m = Matrix(tmp_path_factory.mktemp("matrix"))
    yield m
    m.server.stop()
    m.state.close()


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize(
    ("method", "path", "body", "needed", "success"), ENDPOINTS, ids=[f"{e[0]} {e[1]}" for e in ENDPOINTS]
)
def test_token_matrix(  # noqa: PLR0913 (the columns of the parametrised matrix)
    matrix: Matrix,
    method: str,
    path: str,
    body: Any,
    needed: Permission | None,
    success: int,
    credential: str,
) -> None:
    matrix.reset()
    if "{victim}" in path:
        victim, _ = matrix.state.tokens.create("victim", READ)
        path = path.replace("{victim}", victim.id)
    headers = matrix.headers[credential]
    if needed is None:
        expected = success
    elif credential in ("none", "malformed", "basic", "revoked"):
        expected = 401
    else:
        expected = success if Permission.parse(credential) >= needed else 403
    with httpx2.Client(base_url=matrix.server.url, timeout=10) as client:
        if path == "/api/v1/events":
            with client.stream(method, path, headers=headers) as response:
                status = response.status_code
                if status == 200:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    assert next(response.iter_text()).startswith("retry:")
        else:
            response = client.request(method, path, json=body, headers=headers)
            status = response.status_code
    assert status == expected, f"{method} {path} with {credential}: {status}"
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if expected in (401, 403):  # refused: nothing changed
        assert matrix.state.store.get("f") is not None and matrix.state.store.get("f").version == 2  # type: ignore[union-attr]
        assert matrix.state.store.get("new") is None


# --------------------------------------------------------------------------- tokens


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    store = TokenStore(str(tmp_path / "t.db"))
    info, token = store.create("ci", WRITE)
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert token.encode() not in raw
    assert token.split("_", 2)[2].encode() not in raw
    assert hash_token(token).encode() in raw
    reopened = TokenStore(str(tmp_path / "t.db"))
    verified = reopened.verify(token)
    assert verified is not None and verified.id == info.id and verified.scope is WRITE
    assert reopened.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    reopened.close()


def test_a_token_database_from_before_expiry_and_sessions_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    token = "fst_0a0b0c0d_" + "x" * 43
    with sqlite3.connect(path) as conn:  # the first release's schema, one token in it
        conn.executescript(
            "CREATE TABLE tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL,"
            " hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL, last_used REAL);"
            "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        )
        row = ("0a0b0c0d", "old", "write", hash_token(token), 1.0, None, None)
        conn.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)", row)
    conn.close()
    store = TokenStore(str(path))
    try:
        info = store.verify(token)
        assert info is not None and info.name == "old" and info.kind == "api" and info.expires_at is None
        session = store.open_session(info.id, 60)
        assert store.session(session) == store.get(info.id)
    finally:
        store.close()


def test_tokens_api_create_list_revoke(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    try:
        admin = TestClient(app, headers={"Authorization": f"Bearer {make_token(app.state.flagstaff, ADMIN)}"})
        created = admin.post("/api/v1/tokens", json={"name": "svc", "scope": "write"})
        assert created.status_code == 201
        secret = created.json()["token"]
        svc = TestClient(app, headers={"Authorization": f"Bearer {secret}"})
        assert svc.put("/api/v1/flags/x", json={"document": "on"}).status_code == 201
        listed = admin.get("/api/v1/tokens").json()["tokens"]
        assert {t["name"] for t in listed} == {"test-admin", "svc"}
        assert all("token" not in t and "hash" not in t for t in listed)
        assert admin.delete(f"/api/v1/tokens/{created.json()['id']}").json()["active"] is False
        assert svc.get("/api/v1/flags").status_code == 401
        assert admin.delete("/api/v1/tokens/ffffffff").status_code == 404
        assert admin.post("/api/v1/tokens", json={"name": "x", "scope": "root"}).status_code == 400
    finally:
        app.state.flagstaff.close()


def test_cli_token_commands_and_revocation_from_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["--store", url, "token", "create", "deploy-bot", "--scope", "write"], stdout=out, stderr=err)
        == 0
    )
    token = out.getvalue().strip()
    assert token.startswith("fst_")
    assert "write token" in err.getvalue()
    app = create_app(url)
    try:
        client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        assert client.get("/api/v1/flags").status_code == 200
        listing = io.StringIO()
        assert main(["--store", url, "--json", "token", "list"], stdout=listing, stderr=io.StringIO()) == 0
        assert '"name": "deploy-bot"' in listing.getvalue()
        assert token not in listing.getvalue()
        proc = subprocess.run(
            [sys.executable, "-m", "flagstaff", "--store", url, "token", "revoke", token[4:12]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert client.get("/api/v1/flags").status_code == 401  # at once: no cache to expire
    finally:
        app.state.flagstaff.close()
    assert main(["--store", url, "token", "revoke", "nosuchid"], stdout=io.StringIO(), stderr=err) == 2
    assert main(["--store", url, "token", "create"], stdout=io.StringIO(), stderr=err) == 2


# --------------------------------------------------------------------------- sessions and CSRF


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Starlette]:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(auth_failures=5, auth_penalty=0.05))
    yield app
    app.state.flagstaff.close()


def csrf_for(app: Starlette, cookie: str) -> str:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"cookie", f"{auth.COOKIE}={cookie}".encode())],
    }
    scope["app"] = app
    return auth.csrf_token(Request(scope))


def test_login_link_sets_a_strict_http_only_session(app: Starlette) -> None:
    token = make_token(app.state.flagstaff, WRITE, "carol")
    browser = TestClient(app)
    response = browser.get(f"/login?token={token}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie_header = response.headers["set-cookie"]
    assert "HttpOnly" in cookie_header and "SameSite=strict" in cookie_header and "Path=/" in cookie_header
    assert token not in cookie_header
    assert browser.get("/api/v1/flags").status_code == 200
    home = browser.get("/")
    assert home.status_code == 200 and "carol" in home.text


def test_session_writes_need_the_csrf_token_and_same_origin(app: Starlette) -> None:
    token = make_token(app.state.flagstaff, WRITE)
    browser = TestClient(app)
    browser.post("/login", data={"token": token}, follow_redirects=False)
    cookie = browser.cookies[auth.COOKIE]
    csrf = csrf_for(app, cookie)
    assert len(csrf) == 32
    assert browser.put("/api/v1/flags/f", json={"document": "on"}).status_code == 403
    assert (
        browser.put(
            "/api/v1/flags/f", json={"document": "on"}, headers={"X-CSRF-Token": "x" * 32}
        ).status_code
        == 403
    )
    evil = {"X-CSRF-Token": csrf, "Origin": "http://evil.example"}
    assert browser.put("/api/v1/flags/f", json={"document": "on"}, headers=evil).status_code == 403
    assert app.state.flagstaff.store.get("f") is None
    good = {"X-CSRF-Token": csrf, "Origin": "http://testserver"}
    assert browser.put("/api/v1/flags/f", json={"document": "on"}, headers=good).status_code == 201
    assert browser.get("/api/v1/flags/f").status_code == 200  # reads need no CSRF token


def test_revoking_the_token_ends_its_sessions_and_pages_redirect_to_login(app: Starlette) -> None:
    token = make_token(app.state.flagstaff, READ)
    browser = TestClient(app)
    browser.get(f"/login?token={token}")
    assert browser.get("/api/v1/flags").status_code == 200
    app.state.flagstaff.tokens.revoke(token[4:12])
    assert browser.get("/api/v1/flags").status_code == 401
    page = browser.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_forged_or_expired_cookies_are_refused(app: Starlette) -> None:
    state: ServerState = app.state.flagstaff
    token = make_token(state, ADMIN)
    browser = TestClient(app)
    browser.get(f"/login?token={token}")
    cookie = browser.cookies[auth.COOKIE]
    assert token[4:12] not in cookie  # a random secret, not a token id with a signature
    expired = state.tokens.open_session(token[4:12], -1)
    for forged in (cookie[:-1] + ("A" if cookie[-1] != "A" else "B"), expired, token, "junk"):
        other = TestClient(app, cookies={auth.COOKIE: forged})
        assert other.get("/api/v1/flags").status_code == 401, forged
    assert browser.get("/api/v1/flags").status_code == 200


def test_logout_needs_csrf_and_clears_the_cookie(app: Starlette) -> None:
    token = make_token(app.state.flagstaff, READ)
    browser = TestClient(app)
    browser.get(f"/login?token={token}")
    cookie = browser.cookies[auth.COOKIE]
    assert browser.post("/logout", follow_redirects=False).status_code == 403
    out = browser.post("/logout", data={"csrf_token": csrf_for(app, cookie)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert auth.COOKIE not in browser.cookies


def test_login_form_refuses_a_bad_token(app: Starlette) -> None:
    browser = TestClient(app)
    page = browser.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    bad = browser.post("/login", data={"token": "fst_00000000_" + "A" * 43})
    assert bad.status_code == 401 and "not valid" in bad.text
    assert auth.COOKIE not in browser.cookies


def test_failed_attempts_are_rate_limited_but_a_good_token_is_never_refused(app: Starlette) -> None:
    good = make_token(app.state.flagstaff, READ)
    client = TestClient(app)
    for _ in range(5):
        assert client.get("/api/v1/flags", headers={"Authorization": "Bearer nope"}).status_code == 401
    limited = client.get("/api/v1/flags", headers={"Authorization": "Bearer nope"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert client.post("/login", data={"token": "fst_00000000_" + "A" * 43}).status_code == 429
    # Whoever shares the address (a proxy, a NAT) and holds a good token still gets in.
    assert client.get("/api/v1/flags", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert client.post("/login", data={"token": good}, follow_redirects=False).status_code == 303
    assert "flagstaff_auth_failures_total 7" in client.get("/metrics").text


def test_rate_limiter_forgets_after_its_window() -> None:
    limiter = RateLimiter(limit=2, window=0.2)
    limiter.fail("1.2.3.4")
    assert limiter.blocked("1.2.3.4") == 0
    limiter.fail("1.2.3.4")
    assert limiter.blocked("1.2.3.4") > 0
    assert limiter.blocked("5.6.7.8") == 0
    import time

    time.sleep(0.25)
    assert limiter.blocked("1.2.3.4") == 0


def test_rate_limiter_counts_all_addresses_and_queues_the_penalties() -> None:
    limiter = RateLimiter(limit=100, window=60, total_limit=5, penalty=1.0, slots=4)
    for i in range(5):
        assert not limiter.over(f"10.0.0.{i}")
        limiter.fail(f"10.0.0.{i}")
    assert limiter.over("10.0.0.99")  # an address never seen: the total is spent
    waits = [limiter.penalty() for _ in range(9)]
    # One after another, four at a time: the ninth answer waits two penalties more than the first.
    assert waits[0] >= 1.0 - 0.01
    assert waits[8] >= waits[0] + 2.0 - 0.01


# --------------------------------------------------------------------------- forwarded headers and limits

BAD = {"Authorization": "Bearer fst_00000000_" + "A" * 43}


def _limited(tmp_path: Path, **settings: Any) -> tuple[Starlette, ServerState]:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(auth_penalty=0.02, **settings))
    return app, app.state.flagstaff


def test_a_rotating_forwarded_header_does_not_bypass_the_limit(tmp_path: Path) -> None:
    app, state = _limited(tmp_path, auth_failures=3)
    try:
        with ServerThread(app) as server, httpx2.Client(base_url=server.url) as client:
            codes = [
                client.get("/api/v1/flags", headers={**BAD, "X-Forwarded-For": f"198.51.100.{i}"}).status_code
                for i in range(10)
            ]
        assert codes == [401] * 3 + [429] * 7  # the socket's peer is the key, not the header
    finally:
        state.close()


def test_forwarded_addresses_are_keys_only_from_configured_proxies_and_the_total_still_holds(
    tmp_path: Path,
) -> None:
    app, state = _limited(tmp_path, auth_failures=3, auth_total_failures=8)
    try:
        with (
            ServerThread(app, forwarded_allow_ips="127.0.0.1") as server,
            httpx2.Client(base_url=server.url) as c,
        ):

            def guess(address: str) -> int:
                return c.get("/api/v1/flags", headers={**BAD, "X-Forwarded-For": address}).status_code

            assert [guess("198.51.100.1") for _ in range(4)] == [401, 401, 401, 429]
            assert guess("198.51.100.2") == 401  # another client behind the proxy: its own count
            # Rotating addresses spends the total: past it every failure is 429, whoever sends it.
            assert [guess(f"203.0.113.{i}") for i in range(6)] == [401, 401, 401, 429, 429, 429]
    finally:
        state.close()


def test_a_spoofed_address_cannot_lock_its_victim_out(tmp_path: Path) -> None:
    app, state = _limited(tmp_path, auth_failures=3)
    good = {"Authorization": f"Bearer {make_token(state, READ)}"}
    victim = {"X-Forwarded-For": "192.0.2.10"}
    try:
        for trusted in (None, "127.0.0.1"):  # headers ignored, or honoured from the proxy
            with (
                ServerThread(app, forwarded_allow_ips=trusted) as server,
                httpx2.Client(base_url=server.url) as c,
            ):
                codes = [c.get("/api/v1/flags", headers={**BAD, **victim}).status_code for _ in range(6)]
                assert 429 in codes
                assert c.get("/api/v1/flags", headers={**good, **victim}).status_code == 200
    finally:
        state.close()


def test_one_client_behind_a_header_less_proxy_does_not_lock_everyone_out(tmp_path: Path) -> None:
    app, state = _limited(tmp_path, auth_failures=3)
    good = make_token(state, WRITE)
    try:
        # Everyone comes from the proxy's address; one of them guesses.
        with ServerThread(app) as server, httpx2.Client(base_url=server.url) as guesser:
            assert {guesser.get("/api/v1/flags", headers=BAD).status_code for _ in range(10)} == {401, 429}
            with httpx2.Client(base_url=server.url) as colleague:
                auth_header = {"Authorization": f"Bearer {good}"}
                assert (
                    colleague.put("/api/v1/flags/f", json={"document": "on"}, headers=auth_header).status_code
                    == 201
                )
                assert colleague.post("/login", data={"token": good}).status_code == 303
    finally:
        state.close()


# --------------------------------------------------------------------------- insecure mode


def test_insecure_mode_admits_local_programs_only(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", open_mode=True)
    try:
        with ServerThread(app) as server:
            response = httpx2.put(f"{server.url}/api/v1/flags/f", json={"document": "on"})
            assert response.status_code == 201
            history = httpx2.get(f"{server.url}/api/v1/flags/f/history").json()["entries"]
            assert history[0]["actor"] == "open mode" and history[0]["token_id"] is None
            same_origin = {"Origin": server.url}
            assert (
                httpx2.put(
                    f"{server.url}/api/v1/flags/g", json={"document": 1}, headers=same_origin
                ).status_code
                == 201
            )
        # The same app seen from a non-loopback address (the test client's) wants a token.
        assert TestClient(app).get("/api/v1/flags").status_code == 401
    finally:
        app.state.flagstaff.close()


RELAYED = [
    {"X-Forwarded-For": "203.0.113.7"},  # a proxy that says who it relays
    {"Forwarded": "for=203.0.113.7"},
    {"X-Real-IP": "203.0.113.7"},
    {"Via": "1.1 proxy"},
    {"Host": "flags.example.com"},  # a relay that passes the public name on (a TCP/TLS proxy)
    {"Host": "flags.example.com:443"},
    {"Origin": "http://evil.example"},  # a page of another site, in a browser on this host
    {"Origin": "null"},  # a sandboxed frame or a file: page
    {"Host": "[127.0.0.1"},  # malformed: refused, not a 500
    {"Origin": "http://[::1"},
]


@pytest.mark.parametrize("headers", RELAYED, ids=[next(iter(h.items()))[1] for h in RELAYED])
def test_insecure_mode_refuses_what_came_through_a_proxy_or_another_site(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", open_mode=True)
    state: ServerState = app.state.flagstaff
    try:
        with ServerThread(app) as server, httpx2.Client(base_url=server.url) as client:
            assert client.put("/api/v1/flags/f", json={"document": "on"}, headers=headers).status_code in (
                401,
                403,
            )
            assert client.post(
                "/api/v1/tokens", json={"name": "x", "scope": "admin"}, headers=headers
            ).status_code in (
                401,
                403,
            )
            assert client.get("/api/v1/flags", headers=headers).status_code in (401, 403)
        assert state.store.get("f") is None
        assert [t.name for t in state.tokens.list()] == []
    finally:
        state.close()


def test_insecure_mode_behind_a_same_host_tcp_relay_refuses_the_remote_client(tmp_path: Path) -> None:
    from tests._support.tcpproxy_er import TcpProxy

    app = create_app(f"sqlite:///{tmp_path}/flags.db", open_mode=True)
    state: ServerState = app.state.flagstaff
    try:
        with ServerThread(app) as server:
            relay = TcpProxy("127.0.0.1", server.port)  # socat/stunnel: bytes through, no headers
            try:
                # A remote client names the host it reached (the relay's public address), not loopback.
                remote = {"Host": f"192.0.2.2:{relay.port}"}
                with httpx2.Client(base_url=f"http://{relay.address}", headers=remote) as client:
                    assert client.put("/api/v1/flags/f", json={"document": "on"}).status_code == 401
                    minted = client.post("/api/v1/tokens", json={"name": "mine", "scope": "admin"})
                    assert minted.status_code == 401
            finally:
                relay.close()
        assert state.store.get("f") is None and state.tokens.list() == []
    finally:
        state.close()


def test_insecure_mode_refuses_the_address_a_trusted_proxy_forwards(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", open_mode=True)
    try:
        # A proxy trusted with --forwarded-allow-ips relays a remote client, even one claiming loopback.
        with ServerThread(app, forwarded_allow_ips="127.0.0.1") as server:
            for claimed in ("203.0.113.7", "127.0.0.1"):
                response = httpx2.put(
                    f"{server.url}/api/v1/flags/f",
                    json={"document": "on"},
                    headers={"X-Forwarded-For": claimed},
                )
                assert response.status_code == 401, claimed
        assert app.state.flagstaff.store.get("f") is None
    finally:
        app.state.flagstaff.close()


def test_serve_open_is_refused_and_names_the_insecure_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:  # were --open accepted, serve would fail here, on the port, instead
        taken.bind(("127.0.0.1", 0))
        port = str(taken.getsockname()[1])
        err = io.StringIO()
        code = main(["--store", f"sqlite:///{tmp_path}/f.db", "serve", "--open", "--port", port], stderr=err)
    assert code == 2
    assert "--insecure-no-auth" in err.getvalue() and "--open" in err.getvalue()


def test_serve_refuses_insecure_mode_beyond_loopback_or_behind_a_proxy(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/f.db"
    err = io.StringIO()
    assert main(["--store", store, "serve", "--insecure-no-auth", "--host", "0.0.0.0"], stderr=err) == 2
    assert "loopback only" in err.getvalue()
    err = io.StringIO()
    argv = ["--store", store, "serve", "--insecure-no-auth", "--forwarded-allow-ips", "127.0.0.1"]
    assert main(argv, stderr=err) == 2
    assert "--forwarded-allow-ips" in err.getvalue()


def test_closed_mode_without_token_from_loopback_is_401(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    try:
        with ServerThread(app) as server:
            assert httpx2.get(f"{server.url}/api/v1/flags").status_code == 401
    finally:
        app.state.flagstaff.close()


# --------------------------------------------------------------------------- headers and inputs


def test_security_headers(app: Starlette) -> None:
    admin = TestClient(app, headers={"Authorization": f"Bearer {make_token(app.state.flagstaff, ADMIN)}"})
    answers = {
        "healthz": admin.get("/healthz"),
        "flags": admin.get("/api/v1/flags"),
        "missing": admin.get("/api/v1/flags/nope"),
        "token": admin.post("/api/v1/tokens", json={"name": "svc", "scope": "read"}),
        "page": admin.get("/login"),
        "unknown path": admin.get("/nowhere"),
    }
    for what, response in answers.items():
        assert response.headers["x-content-type-options"] == "nosniff", what
    assert answers["token"].status_code == 201 and answers["token"].headers["cache-control"] == "no-store"
    for what in ("flags", "missing"):
        assert answers[what].headers["cache-control"] == "no-store", what
    login = answers["page"]
    assert "frame-ancestors 'none'" in login.headers["content-security-policy"]
    assert "default-src 'none'" in login.headers["content-security-policy"]
    assert login.headers["x-frame-options"] == "DENY"
    assert login.headers["cache-control"] == "no-store"


def test_origin_null_is_refused_on_every_write(app: Starlette) -> None:
    state: ServerState = app.state.flagstaff
    writer = make_token(state, WRITE)
    null = {"Origin": "null"}
    bearer = TestClient(app, headers={"Authorization": f"Bearer {writer}"})
    assert bearer.put("/api/v1/flags/f", json={"document": "on"}, headers=null).status_code == 403
    browser = TestClient(app)
    assert (
        browser.post("/login", data={"token": writer}, headers=null, follow_redirects=False).status_code
        == 403
    )
    assert auth.COOKIE not in browser.cookies
    browser.post("/login", data={"token": writer}, follow_redirects=False)
    csrf = csrf_for(app, browser.cookies[auth.COOKIE])
    sent = {**null, "X-CSRF-Token": csrf}
    assert browser.put("/api/v1/flags/f", json={"document": "on"}, headers=sent).status_code == 403
    assert browser.post("/logout", headers=sent, follow_redirects=False).status_code == 403
    assert state.store.get("f") is None
    assert browser.get("/api/v1/flags", headers=null).status_code == 200  # reads are not writes


def test_logout_revokes_the_session_server_side(app: Starlette) -> None:
    token = make_token(app.state.flagstaff, READ)
    browser = TestClient(app)
    browser.post("/login", data={"token": token}, follow_redirects=False)
    cookie = browser.cookies[auth.COOKIE]
    stolen = TestClient(app, cookies={auth.COOKIE: cookie})  # a copy kept elsewhere
    assert stolen.get("/api/v1/flags").status_code == 200
    out = browser.post("/logout", data={"csrf_token": csrf_for(app, cookie)}, follow_redirects=False)
    assert out.status_code == 303
    assert stolen.get("/api/v1/flags").status_code == 401
    assert app.state.flagstaff.tokens.verify(token) is not None  # the token itself lives on


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/v1/flags/f", '{"document": "on", "document": "off"}'),
        ("POST", "/api/v1/flags", '{"name": "f", "document": {"percentage": 5, "percentage": 100}}'),
        ("POST", "/api/v1/tokens", '{"name": "a", "scope": "read", "scope": "admin"}'),
    ],
)
def test_duplicate_json_keys_are_refused(app: Starlette, method: str, path: str, body: str) -> None:
    state: ServerState = app.state.flagstaff
    admin = TestClient(app, headers={"Authorization": f"Bearer {make_token(state, ADMIN)}"})
    response = admin.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "twice" in response.json()["error"]
    assert state.store.get("f") is None
    assert [t.name for t in state.tokens.list()] == ["test-admin"]


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of its own (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)


def test_a_full_token_disk_keeps_reads_working_and_refuses_writes_with_503(
    tmp_path: Path, tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tiny_disk / "tokens.db"
    app = create_app(f"sqlite:///{tmp_path}/flags.db", token_db=str(db))
    state: ServerState = app.state.flagstaff
    try:
        admin = make_token(state, ADMIN)
        readers = [make_token(state, READ, f"reader-{i}") for i in range(3)]
        state.admin.set("f", "on")
        browser = TestClient(app)
        browser.post("/login", data={"token": readers[0]}, follow_redirects=False)
        state.tokens._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # nothing left to reuse in the log
        _fill(tiny_disk)
        for token in readers:  # each one's first use wants to stamp last_used: the disk says no
            client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
            assert client.get("/api/v1/flags/f").status_code == 200
            assert client.post("/api/v1/evaluate", json={"flag": "f"}).status_code == 200
        assert browser.get("/api/v1/flags").status_code == 200  # a session is a read too
        warnings = [r for r in caplog.records if "cannot record token use" in r.getMessage()]
        assert len(warnings) == 1  # logged once, not once per request
        boss = TestClient(app, headers={"Authorization": f"Bearer {admin}"})
        created = boss.post("/api/v1/tokens", json={"name": "svc", "scope": "read"})
        assert created.status_code == 503 and "token" not in created.json()
        assert boss.delete(f"/api/v1/tokens/{readers[1][4:12]}").status_code == 503
        assert (
            TestClient(app).post("/login", data={"token": readers[2]}, follow_redirects=False).status_code
            == 503
        )
        assert boss.get("/api/v1/tokens").status_code == 200
        (tiny_disk / "filler").unlink()  # room again: writes work again
        assert boss.post("/api/v1/tokens", json={"name": "svc", "scope": "read"}).status_code == 201
    finally:
        state.close()


def test_token_create_on_a_full_disk_exits_5_without_a_traceback(tmp_path: Path, tiny_disk: Path) -> None:
    db = tiny_disk / "tokens.db"
    server = TokenStore(str(db))  # a server has the database open (its log and index exist)
    try:
        server.create("first", READ)
        server._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _fill(tiny_disk)
        argv = [sys.executable, "-m", "flagstaff", "--store", f"sqlite:///{tmp_path}/f.db", "token"]
        for opened_by_server in (True, False):
            if not opened_by_server:
                server.close()  # now the command must create the log itself: it cannot either
            create = [*argv, "create", "svc", "--token-db", str(db)]
            proc = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
            assert proc.returncode == 5, proc.stderr
            assert "Traceback" not in proc.stderr
            assert "flagstaff: error:" in proc.stderr and "token database" in proc.stderr
            assert proc.stdout == ""  # no secret printed for a token that was not stored
    finally:
        server.close()
    (tiny_disk / "filler").unlink()
    after = TokenStore(str(db))
    try:
        assert [t.name for t in after.list()] == ["first"]  # nothing lost, nothing half-made
    finally:
        after.close()
