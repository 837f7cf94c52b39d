"""Single sign-on (OpenID Connect) against a tiny fake provider served on loopback in the test:
discovery, authorization with PKCE, the code exchange, and the ID token's signature, issuer,
audience, expiry and nonce checked with a test RSA key."""

from __future__ import annotations

import base64
import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from flagstaff.http import auth
from flagstaff.http.app import create_app
from flagstaff.http.oidc import OIDCConfig, SSOError, enable
from flagstaff.http.roles import Role
from tests._support.http_server import ServerThread

CLIENT_ID, CLIENT_SECRET = "flagstaff-test", "s3cret-for-tests"


class FakeProvider:
    """An OpenID provider that signs in ``ann@example.com`` at once (no consent page).

    ``claims`` overrides ID token claims; ``signing_key`` signs it (the published key by default).
    """

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-1"}, private=True)
        self.signing_key = self.key
        self.claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, str]] = {}
        self.token_requests = 0
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
            }
        )

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256" and "openid" in q["scope"].split()
        code = f"code-{len(self.codes)}"
        self.codes[code] = {
            "nonce": q["nonce"],
            "challenge": q["code_challenge"],
            "redirect": q["redirect_uri"],
        }
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 302)

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = parse_qs((await request.body()).decode())
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = self.codes.pop(form["code"][0], None)
        verifier = form.get("code_verifier", [""])[0]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or grant["challenge"] != challenge or grant["redirect"] != form["redirect_uri"][0]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": CLIENT_ID,
            "sub": "ann-1",
            "email": "ann@example.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **self.claims,
        }
        id_token = jwt.encode({"alg": "RS256", "kid": "test-1"}, claims, self.signing_key)
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": id_token})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    with ServerThread(fake.app) as server:
        fake.url = server.url
        yield fake


@pytest.fixture
def app(tmp_path: Path, provider: FakeProvider) -> Iterator[Starlette]:
    provider.claims = {}
    provider.signing_key = provider.key
    app = create_app(f"sqlite:///{tmp_path}/flags.db")
    enable(app, OIDCConfig(provider.url, CLIENT_ID, CLIENT_SECRET, default_role=Role.VIEWER))
    yield app
    app.state.environments.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _provider_redirect(url: str) -> str:
    """Follow the browser to the provider: where it sends it back (the callback's path and query)."""
    try:
        urllib.request.build_opener(_NoRedirect).open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        back = urlsplit(exc.headers["location"])
        return f"{back.path}?{back.query}"
    raise AssertionError("the provider did not redirect")


def sign_on(app: Starlette) -> tuple[TestClient, Any]:
    browser = TestClient(app)
    start = browser.get("/login/sso", follow_redirects=False)
    assert start.status_code == 303
    assert "samesite=lax" in start.headers["set-cookie"].lower()
    callback = _provider_redirect(start.headers["location"])
    return browser, browser.get(callback, follow_redirects=False)


def test_sign_on_creates_the_user_with_the_default_role_and_opens_a_session(app: Starlette) -> None:
    page = TestClient(app).get("/login")
    assert 'id="sso-login" href="/login/sso"' in page.text
    browser, done = sign_on(app)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert browser.cookies[auth.COOKIE].startswith("u.")
    assert browser.get("/api/v1/flags").status_code == 200
    users = app.state.flagstaff.users
    user = users.get("ann@example.com")
    assert user is not None and user.roles == (("*", Role.VIEWER),)
    assert users.check_password("ann@example.com", "!sso") is None  # no password to log in with
    # A later sign-in keeps the roles an admin gave meanwhile.
    users.set_role("ann@example.com", "*", Role.EDITOR)
    browser, done = sign_on(app)
    assert done.status_code == 303
    assert users.get("ann@example.com").roles == (("*", Role.EDITOR),)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "replayed"}, "nonce"),
        ({"aud": "another-client"}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"email_verified": False}, "not verified"),
    ],
    ids=["nonce", "audience", "issuer", "expired", "unverified-email"],
)
def test_an_unacceptable_id_token_logs_nobody_in(
    app: Starlette, provider: FakeProvider, claims: dict[str, Any], reason: str
) -> None:
    provider.claims = claims
    browser, done = sign_on(app)
    assert done.status_code == 401 and "Single sign-on failed" in done.text
    assert reason in done.text
    assert auth.COOKIE not in browser.cookies
    assert app.state.flagstaff.users.get("ann@example.com") is None


def test_a_token_signed_with_another_key_is_refused(app: Starlette, provider: FakeProvider) -> None:
    provider.signing_key = RSAKey.generate_key(2048, parameters={"kid": "test-1"}, private=True)
    _, done = sign_on(app)
    assert done.status_code == 401 and "not acceptable" in done.text


def test_the_callback_needs_the_flows_own_state_cookie(app: Starlette, provider: FakeProvider) -> None:
    browser = TestClient(app)
    start = browser.get("/login/sso", follow_redirects=False)
    callback = _provider_redirect(start.headers["location"])
    before = provider.token_requests
    forged = callback.replace("state=", "state=x")
    refused = browser.get(forged, follow_redirects=False)
    assert refused.status_code == 401 and "state" in refused.text
    stranger = TestClient(app).get(callback, follow_redirects=False)  # no flow cookie: another browser
    assert stranger.status_code == 401 and "did not start here" in stranger.text
    assert provider.token_requests == before  # neither reached the token endpoint


def test_configuration_is_checked() -> None:
    with pytest.raises(SSOError, match="https URL"):
        OIDCConfig("not a url", CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(SSOError, match="client secret"):
        OIDCConfig("https://idp.example", CLIENT_ID, "")


def test_without_the_sso_extra_enable_names_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    probe = f"""
import sys
sys.modules["joserfc"] = None
from flagstaff.http.app import create_app
from flagstaff.http.oidc import OIDCConfig, enable
app = create_app("sqlite:///{tmp_path}/x.db")
try:
    enable(app, OIDCConfig("https://idp.example", "id", "secret"))
except ModuleNotFoundError as exc:
    print(exc)
app.state.environments.close()
"""
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert "pip install 'flagstaff[sso]'" in proc.stdout, proc.stderr


def test_serve_refuses_an_incomplete_sso_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from flagstaff.cli import main

    monkeypatch.delenv("FLAGSTAFF_OIDC_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("FLAGSTAFF_OIDC_ISSUER", "https://idp.example")
    err = io.StringIO()
    args = ["--store", f"sqlite:///{tmp_path}/x.db", "serve", "--port", "0", "--oidc-client-id", "id"]
    assert main(args, stdout=io.StringIO(), stderr=err) == 2
    assert "client secret" in err.getvalue()
