"""Who may do what: the token matrix over every endpoint, sessions, CSRF, rate limits, open mode."""

from __future__ import annotations

import io
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
from flagstaff.http.auth import RateLimiter
from flagstaff.http.tokens import Scope, TokenStore, hash_token
from http_support import ServerThread, make_token

READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN

# (method, path, body, scope needed or None for public, status on success)
ENDPOINTS: list[tuple[str, str, Any, Scope | None, int]] = [
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
]
CREDENTIALS = ["none", "malformed", "basic", "revoked", "read", "write", "admin"]


class Matrix:
    def __init__(self, tmp: Path) -> None:
        self.app = create_app(f"sqlite:///{tmp}/flags.db", settings=Settings(auth_failures=1_000_000))
        self.state: ServerState = self.app.state.flagstaff
        self.server = ServerThread(self.app)
        self.tokens = {scope.label: make_token(self.state, scope) for scope in Scope}
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
def test_token_matrix(
    matrix: Matrix, method: str, path: str, body: Any, needed: Scope | None, success: int, credential: str
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
        expected = success if Scope.parse(credential) >= needed else 403
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
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(auth_failures=5))
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
    token = make_token(app.state.flagstaff, ADMIN)
    browser = TestClient(app)
    browser.get(f"/login?token={token}")
    cookie = browser.cookies[auth.COOKIE]
    token_id, expires, signature = cookie.split(".")
    for forged in (f"{token_id}.{int(expires) + 10}.{signature}", f"ffffffff.{expires}.{signature}", "junk"):
        other = TestClient(app, cookies={auth.COOKIE: forged})
        assert other.get("/api/v1/flags").status_code == 401, forged


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


def test_failed_attempts_are_rate_limited(app: Starlette) -> None:
    good = make_token(app.state.flagstaff, READ)
    client = TestClient(app)
    for _ in range(5):
        assert client.get("/api/v1/flags", headers={"Authorization": "Bearer nope"}).status_code == 401
    limited = client.get("/api/v1/flags", headers={"Authorization": f"Bearer {good}"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert client.post("/login", data={"token": good}).status_code == 429
    assert "flagstaff_auth_failures_total 5" in client.get("/metrics").text


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


# --------------------------------------------------------------------------- open mode


def test_open_mode_admits_loopback_only(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", open_mode=True)
    try:
        with ServerThread(app) as server:
            response = httpx2.put(f"{server.url}/api/v1/flags/f", json={"document": "on"})
            assert response.status_code == 201
            history = httpx2.get(f"{server.url}/api/v1/flags/f/history").json()["entries"]
            assert history[0]["actor"] == "open mode" and history[0]["token_id"] is None
        # The same app seen from a non-loopback address (the test client's) wants a token.
        assert TestClient(app).get("/api/v1/flags").status_code == 401
    finally:
        app.state.flagstaff.close()


def test_serve_refuses_open_mode_beyond_loopback(tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(["--store", f"sqlite:///{tmp_path}/f.db", "serve", "--open", "--host", "0.0.0.0"], stderr=err)
    assert code == 2
    assert "loopback only" in err.getvalue()


def test_closed_mode_without_token_from_loopback_is_401(tmp_path: Path) -> None:
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    try:
        with ServerThread(app) as server:
            assert httpx2.get(f"{server.url}/api/v1/flags").status_code == 401
    finally:
        app.state.flagstaff.close()
