"""The blast resource: who a new document would move, before it is written.

``POST /api/v1/flags/{name}/blast`` (a write token: it previews a write) takes
``{"document": ..., "days": 7}`` and answers :meth:`flagstaff.blast.BlastRadius.to_dict`:
the units the server's event store saw in the last ``days``, decided under the flag
in the server's client snapshot and under the new document linked into that same
snapshot. Nothing is written. 404 for an unknown flag, 422 with ``problems`` for an
invalid document (as ``PUT /flags/{name}``), 501 when the server has no event store
(:attr:`~flagstaff.http.state.Settings.events_db`); an event store nothing was
ingested into yet counts 0 units.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.blast import NoEventStore, blast_radius
from flagstaff.errors import NotFoundError
from flagstaff.http.api._common import ApiError, call, fields, flag_name, query, read_json
from flagstaff.http.auth import require
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission

__all__ = ["MAX_DAYS", "blast"]

MAX_DAYS = 366.0
"""The longest window asked for (a year of events is already a slow scan)."""


def _days(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_DAYS:
        raise ApiError(400, f"'days' must be a number of days more than 0 and at most {MAX_DAYS:g}")
    return float(value)


def _radius(state: ServerState, name: str, document: Any, days: float, events_db: str) -> dict[str, Any]:
    if state.store.get(name) is None:
        raise NotFoundError(name)
    snapshot = state.client.snapshot
    now = time.time()
    try:
        radius = blast_radius(snapshot, name, document, events_db, days, now)
    except NoEventStore:  # nothing ingested yet (serve opens the file on the first ingest)
        radius = blast_radius(snapshot, name, document, sqlite3.connect(":memory:"), days, now)
    return radius.to_dict()


async def blast(request: Request) -> Response:
    query(request)
    require(request, Permission.WRITE)
    name = flag_name(request)
    body = fields(await read_json(request), ("document",), ("days",))
    days = _days(body.get("days", 7))
    state = state_of(request)
    events_db = state.events_db
    if events_db is None:
        raise ApiError(501, "no event store configured (Settings.events_db)")
    try:
        answer = await call(_radius, state, name, body["document"], days, events_db)
    except sqlite3.Error as exc:
        raise ApiError(503, f"event store unavailable: {exc}") from None
    return JSONResponse(answer)
