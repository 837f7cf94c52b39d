"""The history resource: a flag's changes and everyone's, a diff between two
versions, and rollback to a version.

History is the store's: each accepted write is one entry whose author names
the caller, its token and the request (the audit record; see
:func:`flagstaff.http.present.parse_author`). A rollback writes the document a
version had, through :class:`flagstaff.admin.Admin` like any other write (a
rollback to the document the flag already has writes nothing).
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.errors import NotFoundError
from flagstaff.http.api._common import (
    ApiError,
    call,
    etag,
    fields,
    flag_name,
    if_match,
    query,
    read_json,
    request_id,
    summary_of,
    write,
)
from flagstaff.http.api.flags import commented
from flagstaff.http.auth import require
from flagstaff.http.present import document_or_text, history_entry, json_changes
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission

__all__ = [
    "HISTORY_MAX",
    "all_history",
    "diff",
    "document_at",
    "flag_history",
    "history_limit",
    "rollback",
]

HISTORY_MAX = 1000


def history_limit(request: Request) -> int:
    text = query(request, "limit").get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= HISTORY_MAX:
        raise ApiError(400, f"limit must be a whole number from 1 to {HISTORY_MAX}")
    return int(text)


async def flag_history(request: Request) -> Response:
    require(request, Permission.READ)
    name = flag_name(request)
    entries = await call(state_of(request).store.history, name, history_limit(request))
    return JSONResponse({"name": name, "entries": [history_entry(e) for e in entries]})


async def all_history(request: Request) -> Response:
    require(request, Permission.READ)
    entries = await call(state_of(request).store.history, None, history_limit(request))
    return JSONResponse({"entries": [history_entry(e) for e in entries]})


def _version_param(params: dict[str, str], key: str) -> int | None:
    text = params.get(key)
    if text is None:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ApiError(400, f"{key!r} must be a flag version (a whole number from 1)")
    return int(text)


def document_at(state: ServerState, name: str, version: int | None) -> tuple[int, Any]:
    """The flag's document at ``version`` (``None``: the current one), from history."""
    record = state.store.get(name)
    if version is None or (record is not None and record.version == version):
        if record is None:
            raise NotFoundError(name)
        return record.version, document_or_text(record.raw)
    for entry in state.store.history(name, limit=HISTORY_MAX):
        if entry.version == version and entry.after is not None:
            return version, document_or_text(entry.after)
    raise ApiError(404, f"flag {name!r} has no version {version} in its history")


def _pretty(doc: Any) -> list[str]:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def diff(request: Request) -> Response:
    require(request, Permission.READ)
    state = state_of(request)
    name = flag_name(request)
    params = query(request, "from", "to")
    v_from, v_to = _version_param(params, "from"), _version_param(params, "to")
    if v_from is None:
        raise ApiError(400, "'from' (a version) is required")
    from_version, before = await call(document_at, state, name, v_from)
    to_version, after = await call(document_at, state, name, v_to)
    unified = "\n".join(
        difflib.unified_diff(
            _pretty(before), _pretty(after), f"{name}@{from_version}", f"{name}@{to_version}", lineterm=""
        )
    )
    return JSONResponse(
        {
            "name": name,
            "from": {"version": from_version, "document": before},
            "to": {"version": to_version, "document": after},
            "changes": json_changes(before, after),
            "unified": unified,
        }
    )


async def rollback(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    name = flag_name(request)
    expect = if_match(request)
    body = fields(await read_json(request), ("version",), ("comment",))
    version = body["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ApiError(400, "'version' must be a flag version (a whole number from 1)")
    state = state_of(request)
    _, document = await call(document_at, state, name, version)
    admin = commented(state.admin_for(principal, request_id(request)), body.get("comment"))
    outcome = await call(write, state, admin, "rollback", lambda: admin.set(name, document, expect=expect))
    summary = await call(summary_of, state, name)
    summary["changed"] = outcome.changed
    summary["rolled_back_to"] = version
    return JSONResponse(summary, headers=etag(summary["version"]))
