"""The guard resource: a flag's guardrails as the server's guard loop judged them.

``GET /api/v1/flags/{name}/guard`` (read) answers the newest check this server made
(:meth:`flagstaff.http.guarding.GuardLoop.status`): when, each guardrail's evidence,
and whether the flag is halted now (read from the store's history, so it survives a
restart). ``POST /api/v1/flags/{name}/guard`` (write) checks now; with
``{"enforce": true}`` a breach halts the flag, the caller named in the history entry
before the evidence. 404 for an unknown flag, 501 when the server has no event store.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.http.api._common import ApiError, call, fields, flag_name, query, read_json, request_id
from flagstaff.http.auth import require
from flagstaff.http.guarding import GuardLoop
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission

__all__ = ["check_guard", "get_guard"]


def _loop(state: ServerState) -> GuardLoop:
    if state.guard is None:
        raise ApiError(501, "no event store configured (Settings.events_db): guardrails cannot be judged")
    return state.guard


async def get_guard(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    name = flag_name(request)
    loop = _loop(state_of(request))
    return JSONResponse(await call(loop.status, name))


async def _options(request: Request) -> dict[str, Any]:
    """The body: none, or ``{"enforce": bool}``."""
    if not await request.body():
        return {}
    body = fields(await read_json(request), (), ("enforce",))
    if "enforce" in body and not isinstance(body["enforce"], bool):
        raise ApiError(400, "'enforce' must be true or false")
    return body


async def check_guard(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    name = flag_name(request)
    state = state_of(request)
    loop = _loop(state)
    enforce = (await _options(request)).get("enforce", False)
    admin = state.admin_for(principal, request_id(request)) if enforce else None

    def run() -> dict[str, Any]:
        return loop.status(name, loop.check(name, admin))

    answer = await call(run)
    if answer["halted_by_check"]:
        state.metrics.inc("flagstaff_writes_total", action="guard")
    return JSONResponse(answer)
