"""Single sign-on with OpenID Connect: the authorization code flow, with PKCE, state and nonce.

Needs the ``sso`` extra (``pip install 'flagstaff[sso]'``: Authlib, and joserfc for the
ID token). :func:`enable` adds two routes to a server app and a link on its login page:

* ``GET /login/sso``: draws ``state``, ``nonce`` and a PKCE verifier, keeps them in a
  short-lived cookie signed with the server's session secret (HttpOnly, SameSite=Lax:
  the provider's redirect back is a cross-site navigation, which Strict would strip),
  and redirects to the provider's authorization endpoint (from its discovery document,
  ``{issuer}/.well-known/openid-configuration``);
* ``GET /login/sso/callback``: checks ``state`` against the cookie, exchanges the code
  (client secret and PKCE verifier) at the token endpoint, and checks the ID token:
  its RS256/ES256 signature against the provider's published keys, ``iss``, ``aud``,
  ``exp`` and the ``nonce``. The user is the claim ``username_claim`` (default
  ``email``; refused when ``email_verified`` is false). A first-time user is created
  in the local user store with no password and ``default_role`` in every environment
  (default: none, so an admin grants roles with ``flagstaff user role``); then a user
  session opens exactly as after a password login.

Any failure answers the login page with the reason; nothing is logged in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from flagstaff._extras import missing_extra
from flagstaff.errors import FlagstaffError
from flagstaff.http import auth
from flagstaff.http.roles import Permission
from flagstaff.http.state import state_of

__all__ = ["LOGIN_PATH", "OIDCConfig", "SSOError", "enable"]

LOGIN_PATH = "/login/sso"
CALLBACK_PATH = "/login/sso/callback"
COOKIE = "flagstaff_sso"
FLOW_SECONDS = 600
ALGORITHMS = ["RS256", "ES256"]


class SSOError(FlagstaffError):
    """Single sign-on failed: the provider, its answer or the ID token is not acceptable."""


@dataclass(frozen=True, slots=True)
class OIDCConfig:
    """An OpenID Connect provider and this server's client registration with it."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    username_claim: str = "email"
    default_role: Permission | None = None
    """The role (in every environment) a user signing in for the first time gets; None: none."""
    redirect_url: str | None = None
    """The callback URL registered with the provider; None: this server's ``/login/sso/callback``."""
    scopes: str = "openid email profile"
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise SSOError(f"the OIDC issuer must be an https URL, not {self.issuer!r}")
        if not self.client_id or not self.client_secret:
            raise SSOError("OIDC needs a client id and a client secret")


class Provider:
    """The provider's discovery document and keys, fetched once and kept (keys refetched
    when a token names a key id not seen yet: the provider rotated them)."""

    def __init__(self, config: OIDCConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: Any = None

    def _get(self, url: str) -> Any:
        import httpx

        try:
            response = httpx.get(url, timeout=self.config.timeout)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SSOError(f"cannot read {url}: {exc}") from None

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                data = self._get(url)
                if not isinstance(data, dict) or data.get("issuer") != self.config.issuer:
                    raise SSOError(f"the discovery document at {url} names another issuer")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(data.get(key), str):
                        raise SSOError(f"the discovery document at {url} has no {key}")
                self._metadata = data
            return self._metadata

    def keys(self, refresh: bool = False) -> Any:
        from joserfc.jwk import KeySet

        uri = self.metadata()["jwks_uri"]
        with self._lock:
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(self._get(uri))
                except (ValueError, TypeError, KeyError) as exc:
                    raise SSOError(f"the provider's keys at {uri} are not a JWK set: {exc}") from None
            return self._keys

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        client = self._client(redirect_uri)
        url, _ = client.create_authorization_url(
            self.metadata()["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
        return str(url)

    def _client(self, redirect_uri: str) -> Any:
        from authlib.integrations.httpx_client import OAuth2Client

        return OAuth2Client(
            self.config.client_id,
            self.config.client_secret,
            scope=self.config.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.config.timeout,
        )

    def claims(self, code: str, redirect_uri: str, nonce: str, verifier: str) -> dict[str, Any]:
        """Exchange ``code`` and check the ID token: its claims (:class:`SSOError` if anything is off)."""
        from authlib.integrations.base_client.errors import OAuthError
        from httpx import HTTPError

        client = self._client(redirect_uri)
        try:
            token = client.fetch_token(
                self.metadata()["token_endpoint"],
                code=code,
                code_verifier=verifier,
                grant_type="authorization_code",
            )
        except (OAuthError, HTTPError, ValueError) as exc:
            raise SSOError(f"the provider refused the code: {exc}") from None
        finally:
            client.close()
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SSOError("the provider's answer has no ID token")
        return self.check(id_token, nonce)

    def check(self, id_token: str, nonce: str) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import JoseError

        def decode(keys: Any) -> Any:
            return jwt.decode(id_token, keys, algorithms=ALGORITHMS)

        try:
            try:
                token = decode(self.keys())
            except JoseError:  # perhaps a key rotated in since we fetched them: once more, fresh
                token = decode(self.keys(refresh=True))
            registry = jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SSOError(f"the ID token is not acceptable: {exc}") from None
        claims: dict[str, Any] = dict(token.claims)
        return claims


# --------------------------------------------------------------------------- the flow's cookie


def _sign(secret: bytes, payload: dict[str, Any]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    mac = hmac.new(secret, ("sso:" + body).encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def _unsign(secret: bytes, value: str) -> dict[str, Any] | None:
    body, _, mac = value.rpartition(".")
    expected = hmac.new(secret, ("sso:" + body).encode(), hashlib.sha256).hexdigest()
    if not body or not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body))
    except ValueError:
        return None
    if not isinstance(payload, dict) or not payload.get("exp", 0) > time.time():
        return None
    return payload


def _redirect_uri(request: Request, config: OIDCConfig) -> str:
    if config.redirect_url:
        return config.redirect_url
    return f"{request.url.scheme}://{request.url.netloc}{auth.base_path(request)}{CALLBACK_PATH.lstrip('/')}"


def _provider(request: Request) -> Provider:
    provider: Provider = request.app.state.oidc
    return provider


async def sso_login(request: Request) -> Response:
    provider = _provider(request)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    redirect_uri = _redirect_uri(request, provider.config)
    try:
        url = await run_in_threadpool(provider.authorization_url, redirect_uri, state, nonce, verifier)
    except SSOError as exc:
        return auth.login_page(request, f"Single sign-on is unavailable: {exc}", 502)
    payload = {"state": state, "nonce": nonce, "verifier": verifier, "exp": time.time() + FLOW_SECONDS}
    response = RedirectResponse(url, 303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        COOKIE,
        _sign(state_of(request).secret, payload),
        max_age=FLOW_SECONDS,
        path=auth.base_path(request) + CALLBACK_PATH.lstrip("/"),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


async def sso_callback(request: Request) -> Response:
    provider = _provider(request)
    server = state_of(request)
    params = request.query_params
    cookie = request.cookies.get(COOKIE)
    flow = None if cookie is None else _unsign(server.secret, cookie)
    if "error" in params:
        message = f"The provider refused: {params.get('error')} {params.get('error_description', '')}"
        return _failed(request, message.strip())
    if flow is None:
        return _failed(request, "The sign-on took too long or did not start here: try again.")
    if not hmac.compare_digest(str(params.get("state", "")), str(flow["state"])) or "code" not in params:
        return _failed(request, "The provider's answer does not match this sign-on (state).")
    try:
        claims = await run_in_threadpool(
            provider.claims,
            params["code"],
            _redirect_uri(request, provider.config),
            flow["nonce"],
            flow["verifier"],
        )
    except SSOError as exc:
        return _failed(request, str(exc))
    claim = provider.config.username_claim
    name = claims.get(claim)
    if not isinstance(name, str) or not name:
        return _failed(request, f"The ID token has no {claim!r} claim to name you by.")
    if claim == "email" and claims.get("email_verified") is False:
        return _failed(request, "The provider has not verified that e-mail address.")
    users = server.users
    if users is None:
        return _failed(request, "This server has no user store.")
    try:
        user = await run_in_threadpool(users.external, name, provider.config.default_role)
    except FlagstaffError as exc:
        return _failed(request, str(exc))
    session = await run_in_threadpool(users.open_session, user.name, auth.SESSION_SECONDS)
    response = auth.session_response(request, session)
    response.delete_cookie(COOKIE, path=auth.base_path(request) + CALLBACK_PATH.lstrip("/"))
    return response


def _failed(request: Request, message: str) -> Response:
    response = auth.login_page(request, f"Single sign-on failed: {message}", 401)
    response.delete_cookie(COOKIE, path=auth.base_path(request) + CALLBACK_PATH.lstrip("/"))
    return response


def routes() -> list[BaseRoute]:
    return [
        Route(LOGIN_PATH, sso_login, methods=["GET"]),
        Route(CALLBACK_PATH, sso_callback, methods=["GET"]),
    ]


def enable(app: Starlette, config: OIDCConfig) -> None:
    """Add single sign-on through ``config``'s provider to a :func:`~flagstaff.http.app.create_app` app.

    Nothing is fetched here: the provider's discovery document is read at the first sign-on.
    Without the ``sso`` extra, a ModuleNotFoundError naming it, here rather than at the first sign-on.
    """
    # Authlib last: it imports the other two, which would otherwise be reported as missing inside it.
    for package in ("joserfc", "httpx", "authlib"):
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as exc:
            raise missing_extra(exc, package, "sso", __name__) from None
    app.state.oidc = Provider(config)
    app.state.sso_login_url = LOGIN_PATH
    # Before the dashboard's catch-all pages (and the static mount): routes match in order.
    app.router.routes[0:0] = routes()
