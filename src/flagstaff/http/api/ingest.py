"""The ingest resource: exposures, metric events and flag usage from other processes and languages.

``POST /api/v1/ingest`` (a write token) takes ``{"events": [...]}``, each event in the
JSON shape of :meth:`flagstaff.exposures.Event.to_dict`, validated whole before any is
written (400 with the first problems), and writes them in one transaction to the
server's event store (:attr:`~flagstaff.http.state.Settings.events_db`; 501 when there
is none). ``usage`` events (a flag's evaluations counted by one process, see
:mod:`flagstaff.usage`) are added up per flag and hour in its ``flagstaff_usage`` table.
The body is bounded by ``Settings.max_body``, after decompression when it is sent with
``Content-Encoding: gzip`` (as :class:`flagstaff.exposures.HttpSink` sends it).
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.exposures import Event, EventError
from flagstaff.http.api._common import ApiError, call, fields, query, read_json
from flagstaff.http.auth import require
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["MAX_PROBLEMS", "ingest"]

MAX_PROBLEMS = 20
"""Problems listed at most in a 400 answer."""


async def _body(request: Request) -> Any:
    """The JSON body, gunzipped when it says so, never more than ``max_body`` bytes of JSON."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return await read_json(request)
    if encoding != "gzip":
        raise ApiError(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    limit = state_of(request).settings.max_body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    size = raw = 0
    try:
        async for chunk in request.stream():
            raw += len(chunk)
            if raw > limit:
                raise ApiError(413, f"request body larger than {limit} bytes")
            data = inflater.decompress(chunk, limit + 1 - size)
            size += len(data)
            if size > limit or inflater.unconsumed_tail:
                raise ApiError(413, f"request body larger than {limit} bytes once decompressed")
            out.append(data)
        if not inflater.eof:
            raise ApiError(400, "the gzip body is truncated")
    except zlib.error as exc:
        raise ApiError(400, f"the body is not gzip: {exc}") from None
    try:
        return json.loads(b"".join(out))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


async def ingest(request: Request) -> Response:
    query(request)
    require(request, Permission.WRITE)
    state = state_of(request)
    if state.events_db is None:
        raise ApiError(501, "no event store configured (Settings.events_db)")
    body = fields(await _body(request), ("events",))
    raw = body["events"]
    if not isinstance(raw, list):
        raise ApiError(400, "'events' must be a list of events")
    events: list[Event] = []
    problems: list[dict[str, str]] = []
    for i, item in enumerate(raw):
        try:
            events.append(Event.from_dict(item, f"events[{i}]"))
        except EventError as exc:
            problems.append({"path": exc.path, "message": exc.message})
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise ApiError(
            400, f"invalid event(s): {problems[0]['path']}: {problems[0]['message']}", problems=problems
        )
    try:
        sink = await call(lambda: state.event_sink)
        if sink is None:  # the server is closing
            raise ApiError(503, "event store closed")
        await call(sink.write, events)
    except UnicodeEncodeError:  # a lone surrogate in a gzip body (read_json refuses it in a plain one)
        raise ApiError(400, "the body holds a lone surrogate, which is not text") from None
    except sqlite3.Error as exc:
        raise ApiError(503, f"event store unavailable: {exc}") from None
    state.metrics.inc("flagstaff_events_ingested_total", len(events))
    return JSONResponse({"written": len(events)})
