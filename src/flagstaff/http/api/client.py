"""Client-side evaluation: ``/api/v1/client/evaluate`` for browsers and mobile apps, and the
client keys it accepts (``/api/v1/client-keys``, admin tokens only).

``GET /api/v1/client/evaluate?context=<JSON>`` or ``POST`` ``{"context": {...}}`` with
``Authorization: Bearer fsc_…`` answers ``{"flags": {name: {"enabled", "variant", "value"}}}``
for every flag whose document has ``"client_visible": true``, decided for that context
from the server's snapshot (the same evaluator as ``/evaluate``). Never a document, a
reason, a rule or the store's revision: a page shows everyone what it was sent.

The answer has an ``ETag`` (a hash of its body, so it changes only when the decisions
do) and ``Cache-Control: private, no-cache``: a client sends ``If-None-Match`` and gets
``304`` while nothing changed. Requests are limited per client address and per key
(:class:`~flagstaff.http.clientside.TokenBuckets`; 429 with ``Retry-After``), and pages
of the origins in ``Settings.clientside.origins`` may call it (CORS, preflight included).

A key evaluates in the environment it was made for (``POST /api/v1/envs/E/client-keys``
makes one for E; a key without an environment is the default one's): used under another
environment's URL it is refused with 403, whatever flags that environment has. The key
endpoints list and revoke the keys of the environment they are called in.
See docs/clientside.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.errors import StoreUnavailable
from flagstaff.http.api._common import ApiError, audit_credential, fields, query, read_json
from flagstaff.http.api.evaluate import parse_context
from flagstaff.http.auth import client_address, identify, require
from flagstaff.http.clientside import ClientKey, ClientKeyError, cors_headers
from flagstaff.http.environments import current, environments_of
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["client_evaluate", "create_client_key", "list_client_keys", "revoke_client_key"]

_ALLOW_HEADERS = "Authorization, Content-Type, If-None-Match"


def _refuse(status: int, message: str, cors: dict[str, str], **headers: str) -> Response:
    return JSONResponse({"error": message}, status, headers={**cors, **headers})


async def client_evaluate(request: Request) -> Response:
    state = state_of(request)
    settings = state.settings.clientside
    cors = cors_headers(request.headers.get("origin"), settings.origins)
    if request.method == "OPTIONS":  # a browser's preflight: say what it may send
        preflight = dict(cors)
        if "Access-Control-Allow-Origin" in cors:
            preflight.update(
                {
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": _ALLOW_HEADERS,
                    "Access-Control-Max-Age": "600",
                }
            )
        return Response(status_code=204, headers=preflight)
    # The address first: a flood of made-up keys is stopped before any lookup.
    wait = state.client_address_buckets.take(client_address(request))
    if wait > 0:
        state.metrics.inc("flagstaff_client_rate_limited_total", by="address")
        return _refuse(
            429, "too many requests from this address", cors, **{"Retry-After": str(math.ceil(wait))}
        )
    kind, _, key = request.headers.get("authorization", "").partition(" ")
    try:
        info = (
            await run_in_threadpool(state.client_keys.verify, key.strip())
            if kind.lower() == "bearer"
            else None
        )
    except StoreUnavailable as exc:
        return _refuse(503, f"unavailable: {exc}", cors, **{"Retry-After": "10"})
    if info is None:
        return _refuse(401, "a client key is needed: Authorization: Bearer fsc_…", cors)
    wait = state.client_key_buckets.take(info.id)
    if wait > 0:
        state.metrics.inc("flagstaff_client_rate_limited_total", by="key")
        return _refuse(
            429, "too many requests with this client key", cors, **{"Retry-After": str(math.ceil(wait))}
        )
    here, default = current(request), environments_of(request).default
    if info.environment_or(default) != here:
        # 403, not 401: the key is good, for another environment (its flags are never read here).
        return _refuse(
            403,
            f"this client key is for environment {info.environment_or(default)!r}, not {here!r}: "
            f"use a key made for {here!r} (POST /api/v1/envs/{here}/client-keys)",
            cors,
        )
    try:
        context = parse_context(await _context(request))
    except ApiError as exc:
        return _refuse(exc.status_code, str(exc.detail), cors)
    scope = state.client.scope(context)
    out: dict[str, dict[str, Any]] = {}
    for name, flag in scope.flags.items():
        if flag.client_visible:
            decision = scope.evaluate(name)
            out[name] = {
                "enabled": decision.enabled,
                "variant": decision.variant,
                "value": flag.value_of(decision),
            }
    state.metrics.inc("flagstaff_client_evaluations_total", len(out))
    body = json.dumps({"flags": out}, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**cors, "ETag": tag, "Cache-Control": "private, no-cache"}
    if tag in [t.strip().removeprefix("W/") for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, 200, media_type="application/json", headers=headers)


async def _context(request: Request) -> Any:
    if request.method == "GET":
        text = query(request, "context").get("context")
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ApiError(400, "'context' must be a JSON object (URL-encoded)") from None
    query(request)
    return fields(await read_json(request), (), ("context",)).get("context")


# --------------------------------------------------------------------------- keys (admin)


def _here(request: Request, key: ClientKey) -> bool:
    """Whether ``key`` is the environment of ``request``'s."""
    return key.environment_or(environments_of(request).default) == current(request)


async def list_client_keys(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    keys = await run_in_threadpool(state_of(request).client_keys.list)
    return JSONResponse({"client_keys": [k.to_dict() for k in keys if _here(request, k)]})


async def create_client_key(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    body = fields(await read_json(request), ("name",))
    if not isinstance(body["name"], str):
        raise ApiError(400, "'name' must be a string")
    try:
        info, key = await run_in_threadpool(
            state_of(request).client_keys.create, body["name"], current(request)
        )
    except ClientKeyError as exc:
        raise ApiError(400, str(exc)) from None
    audit_credential(
        request,
        identify(request),
        "client_key.create",
        f"client key {info.id} ({info.name!r}, environment {current(request)!r})",
        client_key=info.id,
        environment=current(request),
    )
    return JSONResponse({**info.to_dict(), "key": key}, 201)


async def revoke_client_key(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    keys = state_of(request).client_keys
    key_id = request.path_params["key_id"]
    found = await run_in_threadpool(keys.get, key_id)
    if found is None or not _here(request, found):  # another environment's key is not revoked from here
        raise ApiError(404, f"no client key with id {key_id!r} in environment {current(request)!r}")
    try:
        info = await run_in_threadpool(keys.revoke, key_id)
    except ClientKeyError as exc:
        raise ApiError(404, str(exc)) from None
    audit_credential(
        request,
        identify(request),
        "client_key.revoke",
        f"client key {info.id} ({info.name!r})",
        client_key=info.id,
    )
    return JSONResponse(info.to_dict())
