"""The tokens resource: list, create and revoke API tokens (admin tokens only).

A new token's secret is in the creation answer and nowhere else; the database
keeps only its hash (:mod:`flagstaff.http.tokens`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.http.api._common import ApiError, audit_credential, fields, query, read_json
from flagstaff.http.auth import identify, require
from flagstaff.http.environments import environments_of
from flagstaff.http.roles import RoleError
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission, TokenError

__all__ = ["create_token", "list_tokens", "revoke_token"]


async def list_tokens(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    tokens = await run_in_threadpool(state_of(request).tokens.list)
    return JSONResponse({"tokens": [t.to_dict() for t in tokens]})


async def create_token(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    principal = identify(request)  # its levels in every environment
    body = fields(await read_json(request), ("name", "scope"), ("environments",))
    if not isinstance(body["name"], str) or not isinstance(body["scope"], str):
        raise ApiError(400, "'name' and 'scope' must be strings")
    envs = body.get("environments")
    if "environments" in body and (not isinstance(envs, list) or not all(isinstance(e, str) for e in envs)):
        raise ApiError(400, "'environments' must be a list of environment names (leave it out: every one)")
    known = environments_of(request).names
    unknown = [e for e in envs or () if e not in known]
    if unknown:
        raise ApiError(400, f"unknown environment(s): {', '.join(unknown)} (known: {', '.join(known)})")
    try:
        permission = Permission.parse(body["scope"])
    except RoleError as exc:
        raise ApiError(400, str(exc)) from None
    # Nobody mints more than they hold: the new token's scope, in each environment it covers
    # (every one when unlimited), must not exceed the caller's own there.
    for env in envs or known:
        level = principal.level_in(env)
        if level is None or level < permission:
            has = "no access" if level is None else level.label
            raise ApiError(
                403,
                f"cannot create a {permission.label} token for {env!r}: {principal.name!r} has {has} there",
            )
    try:
        info, secret = state_of(request).tokens.create(body["name"], permission, environments=envs)
    except TokenError as exc:
        raise ApiError(400, str(exc)) from None
    audit_credential(
        request,
        principal,
        "token.create",
        f"token {info.id} ({info.name!r}, {permission.label})",
        token=info.id,
        scope=permission.label,
        environments=envs,
    )
    return JSONResponse({**info.to_dict(), "token": secret}, 201)


async def revoke_token(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    principal = identify(request)
    tokens = state_of(request).tokens
    token_id = request.path_params["token_id"]
    target = tokens.get(token_id)
    if target is not None:  # an admin of staging does not revoke what production relies on
        for env in target.environments or environments_of(request).names:
            level = principal.level_in(env)
            if level is None or level < Permission.ADMIN:
                raise ApiError(403, f"revoking token {token_id} needs admin in {env!r}")
    try:
        info = tokens.revoke(token_id)
    except TokenError as exc:
        raise ApiError(404, str(exc)) from None
    audit_credential(request, principal, "token.revoke", f"token {info.id} ({info.name!r})", token=info.id)
    return JSONResponse(info.to_dict())
