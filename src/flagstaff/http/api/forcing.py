"""Signed QA forcing tokens (``POST /api/v1/force-tokens``, admin tokens only).

The server signs with the key of its configuration (``Settings.force_key``, else
``$FLAGSTAFF_FORCE_KEY``); the applications whose middleware verifies the token must
hold the same key (:mod:`flagstaff.forcing`, docs/integrations.md). A server without a
key answers 501: it cannot make a token anything would honour.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff import forcing
from flagstaff.http.api._common import ApiError, fields, query, read_json
from flagstaff.http.auth import require
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["create_force_token"]

log = logging.getLogger("flagstaff.http")

_DEFAULT_TTL = 3600.0


async def create_force_token(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.ADMIN)
    key = state_of(request).force_key
    if key is None:
        raise ApiError(501, "no forcing key configured: set FLAGSTAFF_FORCE_KEY (16 bytes or more) for serve")
    body = fields(await read_json(request), ("value",), ("ttl",))
    value, ttl = body["value"], body.get("ttl", _DEFAULT_TTL)
    if not isinstance(value, str):
        raise ApiError(400, "'value' must be a string: the ?feature= value the token forces")
    try:
        if isinstance(ttl, str):
            seconds = forcing.parse_ttl(ttl)
        elif isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            seconds = float(ttl)
        else:
            raise ValueError(f"'ttl' must be positive seconds or a duration such as '1h', not {ttl!r}")
        token = forcing.issue(value, key, seconds)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    log.info("%s made a forcing token for %r, valid until %d", principal.name, value, token.expires_at)
    return JSONResponse(token.to_dict(), 201, headers={"Cache-Control": "no-store"})
