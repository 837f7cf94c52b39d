"""The tokens resource: list, create and revoke API tokens (admin tokens only).

A new token's secret is in the creation answer and nowhere else; the database
keeps only its hash (:mod:`flagstaff.http.tokens`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.http.api._common import ApiError, fields, query, read_json
from flagstaff.http.auth import require
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
    body = fields(await read_json(request), ("name", "scope"))
    if not isinstance(body["name"], str) or not isinstance(body["scope"], str):
        raise ApiError(400, "'name' and 'scope' must be strings")
    try:
        permission = Permission.parse(body["scope"])
        info, secret = state_of(request).tokens.create(body["name"], permission)
    except (TokenError, RoleError) as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse({**info.to_dict(), "token": secret}, 201)


async def revoke_token(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    try:
        info = state_of(request).tokens.revoke(request.path_params["token_id"])
    except TokenError as exc:
        raise ApiError(404, str(exc)) from None
    return JSONResponse(info.to_dict())
