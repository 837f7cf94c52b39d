"""The flags resource: list, create, read, replace, edit (PATCH ops), delete, validate.

Segments live in the same store (``segment:NAME``) but are never served here: the
listing leaves them out, ``/flags/segment:NAME`` is 404 pointing at
``/segments/NAME`` and a flag cannot be created under such a name
(:mod:`flagstaff.http.api.segments` serves them).

Reads come from the store, so versions and ETags are exact. Every write goes
through :class:`flagstaff.admin.Admin` with the version the caller read
(``If-Match``) when it sent one; a PATCH ``op`` is one of Admin's edits
(:mod:`flagstaff.edits`), so the API, the CLI and the dashboard make the same
change the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.admin import Admin, Outcome, with_comment
from flagstaff.document import is_segment_key
from flagstaff.errors import ValidationError
from flagstaff.http.api._common import (
    PREFIX,
    ApiError,
    call,
    etag,
    fields,
    flag_name,
    if_match,
    last_changes,
    query,
    read_json,
    request_id,
    summary_of,
    write,
)
from flagstaff.http.auth import require
from flagstaff.http.present import flag_summary, problems
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission
from flagstaff.model import parse_flag
from flagstaff.parts import MAX_SEGMENT_BYTES, expand
from flagstaff.segments import parse_segment

__all__ = [
    "PATCH_OPS",
    "commented",
    "create_flag",
    "delete_flag",
    "get_flag",
    "list_flags",
    "patch_flag",
    "put_flag",
    "validate",
]

_FILTERS = {
    "kind": ("temporary", "permanent", "release", "experiment", "ops", "permission"),
    "state": ("on", "off", "partial", "invalid"),
    "stale": ("true", "false"),
    "archived": ("include", "exclude", "only"),
}


def _matches(summary: dict[str, Any], query: Mapping[str, str]) -> bool:
    # archived: include (the default, as before the parameter existed), exclude, only.
    archived = query.get("archived", "include")
    if (archived == "exclude" and summary["archived"]) or (archived == "only" and not summary["archived"]):
        return False
    if "tag" in query and query["tag"] not in summary["tags"]:
        return False
    for key in ("owner", "kind", "state"):
        if key in query and summary[key] != query[key]:
            return False
    if "stale" in query and summary["stale"] != (query["stale"] == "true"):
        return False
    q = query.get("q", "").lower()
    return not q or q in summary["name"].lower() or q in (summary["description"] or "").lower()


async def list_flags(request: Request) -> Response:
    require(request, Permission.READ)
    state = state_of(request)
    filters = query(request, "tag", "owner", "kind", "state", "stale", "archived", "q")
    for key, allowed in _FILTERS.items():
        if key in filters and filters[key] not in allowed:
            raise ApiError(400, f"{key!r} must be one of {', '.join(allowed)}")

    def work() -> dict[str, Any]:
        loaded = state.store.load()
        names = sorted(n for n in loaded.records if not is_segment_key(n))  # segments: /segments
        latest = last_changes(state, names)
        now = time.time()
        summaries = [
            flag_summary(loaded.records[n], latest.get(n), stale_days=state.settings.stale_days, now=now)
            for n in names
        ]
        return {"flags": [s for s in summaries if _matches(s, filters)], "revision": loaded.revision}

    return JSONResponse(await call(work))


async def create_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    body = fields(await read_json(request), ("name", "document"), ("comment",))
    name = body["name"]
    if not isinstance(name, str):
        raise ApiError(422, "invalid flag name", problems=[{"path": "name", "message": "must be a string"}])
    if is_segment_key(name):
        message = f"{name!r} is a segment's key, not a flag name: create it with PUT {PREFIX}/segments/NAME"
        raise ApiError(422, message, problems=[{"path": "name", "message": message}])
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), body.get("comment"))
    await call(write, state, admin, "create", lambda: admin.set(name, body["document"], expect=0))
    summary = await call(summary_of, state, name)
    # Percent-encoded: a header is Latin-1 on the wire (a stored name may be any text).
    location = f"{PREFIX}/flags/{quote(name, safe='')}"
    return JSONResponse(summary, 201, headers={**etag(summary["version"]), "Location": location})


async def get_flag(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    summary = await call(summary_of, state_of(request), flag_name(request))
    return JSONResponse(summary, headers=etag(summary["version"]))


async def put_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    name = flag_name(request, writing=True)
    expect = if_match(request)
    body = fields(await read_json(request), ("document",), ("comment",))
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), body.get("comment"))
    document = body["document"]
    # Admin.set writes nothing for the document the flag already has: a retried PUT is not a second change.
    outcome = await call(write, state, admin, "replace", lambda: admin.set(name, document, expect=expect))
    summary = await call(summary_of, state, name)
    summary["changed"] = outcome.changed
    status = 201 if outcome.before is None else 200
    return JSONResponse(summary, status, headers=etag(summary["version"]))


async def delete_flag(request: Request) -> Response:
    params = query(request, "comment")
    principal = require(request, Permission.WRITE)
    name = flag_name(request)
    expect = if_match(request)
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), params.get("comment"))
    await call(write, state, admin, "delete", lambda: admin.delete(name, expect=expect))
    return Response(status_code=204)


def commented(admin: Admin, comment: Any) -> Admin:
    """``admin`` recording ``comment`` (why; one line) with its writes in history
    (:func:`flagstaff.admin.with_comment`): 400 for a comment that is not a string, 422
    for one too long."""
    if comment is None:
        return admin
    if not isinstance(comment, str):
        raise ApiError(400, "'comment' must be a string")
    try:
        admin.author = with_comment(admin.author, comment)
    except ValidationError as exc:
        raise ApiError(422, str(exc.problems[0]), problems=problems(exc)) from None
    return admin


# --------------------------------------------------------------------------- patch operations

# op -> (required fields, optional fields) besides "op"
_OP_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kill": ((), ()),
    "enable": ((), ("everyone",)),
    "set_percentage": (("percentage",), ()),
    "add_users": (("users",), ()),
    "remove_users": (("users",), ()),
    "add_groups": (("groups",), ()),
    "remove_groups": (("groups",), ()),
    "set_variants": (("variants",), ()),
    "archive": ((), ()),
    "restore": ((), ()),
}
PATCH_OPS = tuple(_OP_FIELDS)


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, f"{key!r} must be a non-empty list of non-empty strings")
    return value


def _percent(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100


def _operation(admin: Admin, name: str, body: dict[str, Any], expect: int | None) -> Callable[[], Outcome]:
    """The Admin edit a PATCH body asks for (its arguments checked: 400 otherwise)."""
    op = body.get("op")
    if op == "kill":
        return lambda: admin.disable(name, expect=expect)
    if op == "enable":
        everyone = body.get("everyone", False)
        if not isinstance(everyone, bool):
            raise ApiError(400, "'everyone' must be true or false")
        return lambda: admin.enable(name, everyone=everyone, expect=expect)
    if op == "set_percentage":
        pct: Any = body.get("percentage")
        if not _percent(pct):
            raise ApiError(400, "'percentage' must be a number from 0 to 100")
        percent = float(pct)
        return lambda: admin.rollout(name, percent, expect=expect)
    if op in ("add_users", "remove_users", "add_groups", "remove_groups"):
        verb, _, key = str(op).partition("_")
        items = _strings(body, key)
        if verb == "add":
            return lambda: admin.add_members(name, key, items, expect=expect)
        return lambda: admin.remove_members(name, key, items, expect=expect)
    if op == "set_variants":
        variants = body.get("variants")
        if not isinstance(variants, dict) or not variants or not all(_percent(v) for v in variants.values()):
            raise ApiError(400, "'variants' must be an object of variant name -> percentage (0 to 100)")
        return lambda: admin.set_variants(name, variants, expect=expect)
    if op == "archive":
        return lambda: admin.archive(name, expect=expect)
    if op == "restore":
        return lambda: admin.restore(name, expect=expect)
    raise ApiError(400, f"unknown op {op!r}: use one of {', '.join(PATCH_OPS)}")


async def patch_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    name = flag_name(request)
    expect = if_match(request)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("op") not in PATCH_OPS:
        raise ApiError(400, f"the body must be an object with 'op' one of {', '.join(PATCH_OPS)}")
    fields(body, ("op", *_OP_FIELDS[body["op"]][0]), (*_OP_FIELDS[body["op"]][1], "comment"))
    state = state_of(request)
    admin = commented(state.admin_for(principal, request_id(request)), body.get("comment"))
    change = _operation(admin, name, body, expect)
    if expect is None:  # every op edits an existing flag
        await call(admin.get, name)
    outcome = await call(write, state, admin, str(body["op"]), change)
    summary = await call(summary_of, state, name)
    summary["changed"] = outcome.changed
    return JSONResponse(summary, headers=etag(summary["version"]))


# --------------------------------------------------------------------------- validate


async def validate(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    body = fields(await read_json(request), ("document",), ("name",))
    name = body.get("name", "flag")
    if not isinstance(name, str):
        raise ApiError(400, "'name' must be a string")
    store = state_of(request).store

    def check() -> None:
        # A segment's key (segment:NAME) checks a segment document, as PUT /segments/NAME would:
        # up to the size of a segment stored in parts, a head's parts read from the store.
        if is_segment_key(name):

            def part(key: str) -> str | None:
                record = store.get(key)
                return None if record is None else record.raw

            parse_segment(name, expand(name, body["document"], part), limit=MAX_SEGMENT_BYTES)
        else:
            parse_flag(name, body["document"])

    try:
        await run_in_threadpool(check)  # not call(): a refusal is this endpoint's answer, not an error
    except ValidationError as exc:
        return JSONResponse({"ok": False, "problems": problems(exc)})
    return JSONResponse({"ok": True, "problems": []})
