"""The segments resource: list, read, write (create or replace), delete, history.

A segment is stored in the same store as the flags, under the key ``segment:NAME``
(:mod:`flagstaff.segments`); these routes take the NAME. Reads come from the store,
so versions and ETags are exact, and each segment is listed with ``used_by``, the
flags that name it. Every write goes through :class:`flagstaff.admin.Admin` with the
version the caller read (``If-Match``; ``If-None-Match: *`` creates only), exactly as
the flag routes do: Admin
validates the document (422 with every problem) and refuses to delete a segment that
flags still use (409 naming them in ``used_by``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.document import is_part_key, is_segment_key, segment_key, segment_name
from flagstaff.http.api._common import (
    ApiError,
    call,
    etag,
    fields,
    if_match,
    last_changes,
    query,
    read_json,
    request_id,
    segment_summary_of,
    write,
)
from flagstaff.http.api.flags import commented
from flagstaff.http.api.history import history_limit
from flagstaff.http.auth import require
from flagstaff.http.present import history_entry, segment_summary, segment_users
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["delete_segment", "get_segment", "list_segments", "put_segment", "segment_history"]


def _key(request: Request) -> str:
    return segment_key(request.path_params["name"])


async def list_segments(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    state = state_of(request)

    def work() -> dict[str, Any]:
        loaded = state.store.load()
        keys = sorted(k for k in loaded.records if is_segment_key(k) and not is_part_key(k))
        latest = last_changes(state, keys)
        users = segment_users(loaded.records)
        segments = [
            segment_summary(loaded.records[k], latest.get(k), users.get(segment_name(k), [])) for k in keys
        ]
        return {"segments": segments, "revision": loaded.revision}

    return JSONResponse(await call(work))


async def get_segment(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    summary = await call(segment_summary_of, state_of(request), _key(request))
    return JSONResponse(summary, headers=etag(summary["version"]))


async def put_segment(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    key = _key(request)
    expect = if_match(request)
    none_match = request.headers.get("if-none-match")
    if none_match is not None:  # create only: 409 if it exists
        if none_match.strip() != "*":
            raise ApiError(400, f"If-None-Match must be '*' (create only), not {none_match!r}")
        if expect is not None:
            raise ApiError(400, "give If-Match (replace that version) or If-None-Match: * (create), not both")
        expect = 0
    body = fields(await read_json(request), ("document",), ("comment",))
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), body.get("comment"))
    document = body["document"]
    # Admin.set validates the segment and writes nothing for the document it already has.
    outcome = await call(write, state, admin, "replace", lambda: admin.set(key, document, expect=expect))
    summary = await call(segment_summary_of, state, key)
    summary["changed"] = outcome.changed
    status = 201 if outcome.before is None else 200
    return JSONResponse(summary, status, headers=etag(summary["version"]))


async def delete_segment(request: Request) -> Response:
    params = query(request, "comment")
    principal = require(request, Permission.WRITE)
    key = _key(request)
    expect = if_match(request)
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), params.get("comment"))
    if await call(state.store.get, key) is None:  # (Admin would say "no flag named 'segment:…'")
        raise ApiError(404, f"no segment named {segment_name(key)!r}")
    # In use by flags: Admin refuses, and call() answers 409 with them in used_by.
    await call(write, state, admin, "delete", lambda: admin.delete(key, expect=expect))
    return Response(status_code=204)


async def segment_history(request: Request) -> Response:
    require(request, Permission.READ)
    key = _key(request)
    entries = await call(state_of(request).store.history, key, history_limit(request))
    return JSONResponse({"name": segment_name(key), "entries": [history_entry(e) for e in entries]})
