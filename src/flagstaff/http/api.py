"""The JSON API under ``/api/v1`` (see ``docs/server.md`` and the served OpenAPI document).

Reads come from the store (so versions and ETags are exact) or, for
evaluation, from the server's client snapshot. Every write goes through
:class:`flagstaff.admin.Admin` (validated, compare-and-set) with an author
naming the caller, its token and the request id: the store's history entry for
the write is its audit record. Blocking store calls run in the thread pool.

Errors are JSON: ``{"error": message}``, plus ``problems`` (validation) or
``current_version`` (a stale ``If-Match``).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from flagstaff.admin import Admin, NothingToEnable, Outcome
from flagstaff.context import Context
from flagstaff.errors import ConflictError, NotFoundError, StoreError, ValidationError
from flagstaff.http import openapi
from flagstaff.http.auth import Principal, require
from flagstaff.http.tokens import Scope, TokenError
from flagstaff.model import Flag, Switch, decode_document, encode_document, parse_flag
from flagstaff.stores.base import HistoryEntry, Record

if TYPE_CHECKING:
    from flagstaff.http.app import ServerState

__all__ = ["PATCH_OPS", "ApiError", "flag_summary", "parse_author", "routes"]

PREFIX = "/api/v1"
HISTORY_MAX = 1000


class ApiError(HTTPException):
    """An HTTP error with a JSON body beyond ``error`` (``problems``, ``current_version``)."""

    def __init__(self, status: int, message: str, **body: Any) -> None:
        super().__init__(status, message)
        self.body = body


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.flagstaff
    return state


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "none")


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in exc.problems]


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking store operation in the thread pool, mapping errors to HTTP."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ValidationError as exc:
        raise ApiError(422, str(exc), problems=_problems(exc)) from None
    except ConflictError as exc:
        raise ApiError(409, str(exc), current_version=exc.actual) from None
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except NothingToEnable as exc:
        raise ApiError(422, str(exc), problems=[{"path": "", "message": str(exc)}]) from None
    except StoreError as exc:
        raise ApiError(503, f"store unavailable: {exc}") from None


async def read_json(request: Request) -> Any:
    """The request's JSON body; 413 past ``Settings.max_body``, 400 if not JSON."""
    limit = _state(request).settings.max_body
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


def _object(body: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """``body`` as an object with the ``required`` keys and no keys beyond ``optional`` (else 400)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    missing = [key for key in required if key not in body]
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(map(str, unknown))}")
    return body


def query(request: Request, *allowed: str) -> dict[str, str]:
    """The query parameters (empty ones dropped); 400 for one not in ``allowed`` or repeated,
    so that a typo (``?tags=``) is an error rather than a filter silently ignored."""
    params = request.query_params
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}")
    repeated = sorted(k for k in params if len(params.getlist(k)) > 1)
    if repeated:
        raise ApiError(400, f"query parameter(s) given more than once: {', '.join(repeated)}")
    return {k: v for k, v in params.items() if v != ""}


def if_match(request: Request) -> int | None:
    """The version ``If-Match`` asks for (``None`` without the header); 0 never."""
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        return None
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) < 1:
        raise ApiError(400, f"If-Match must be a flag version such as '\"3\"', not {header!r}")
    return int(text)


def _etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


# --------------------------------------------------------------------------- summaries

_AUTHOR = re.compile(r"^(?P<actor>.*) \[token (?P<token>[^,\]]+), request (?P<request>[^\]]+)\]$")


def parse_author(author: str | None) -> dict[str, Any]:
    """Split an author written by the API into actor, token id and request id.

    ``author`` is ``None`` for a change made straight in the store (by hand, or
    by another program), which is reported as ``out_of_band``.
    """
    if author is None:
        return {"actor": None, "token_id": None, "request_id": None, "out_of_band": True}
    match = _AUTHOR.match(author)
    if match is None:  # the CLI or a program using flagstaff.admin
        return {"actor": author, "token_id": None, "request_id": None, "out_of_band": False}
    token = match["token"]
    return {
        "actor": match["actor"],
        "token_id": None if token == "none" else token,
        "request_id": match["request"],
        "out_of_band": False,
    }


@functools.lru_cache(maxsize=4096)
def _compile(name: str, raw: str) -> Flag | ValidationError:
    try:
        return parse_flag(name, decode_document(raw))
    except ValidationError as exc:
        return exc


def document_or_text(raw: str | None) -> Any:
    """A stored text as its JSON value; text that is not a document stays text (None stays None)."""
    if raw is None:
        return None
    try:
        return decode_document(raw)
    except ValidationError:
        return raw


def flag_state(flag: Flag | ValidationError) -> str:
    """``on``/``off`` when the flag answers the same for everyone, else ``partial``; ``invalid``."""
    if isinstance(flag, ValidationError):
        return "invalid"
    if flag.switch is Switch.OFF:
        return "off"
    if flag.constant is not None:
        return "on" if flag.constant.enabled else "off"
    return "partial"


def flag_summary(
    record: Record, last: HistoryEntry | None, *, stale_days: float, now: float | None = None
) -> dict[str, Any]:
    """A flag as the API lists it (see the ``Flag`` schema in the OpenAPI document)."""
    compiled = _compile(record.name, record.raw)
    document = document_or_text(record.raw)
    meta = document if isinstance(document, dict) else {}
    out: dict[str, Any] = {"name": record.name, "version": record.version, "document": document}
    out["state"] = flag_state(compiled)
    if isinstance(compiled, Flag):
        out["percentage"] = compiled.percentages.get("percentage")
        out["description"] = compiled.description
        out["owner"] = compiled.owner
        out["kind"] = compiled.kind.value if compiled.kind else None
        out["tags"] = list(compiled.tags)
        out["problems"] = []
    else:
        out["percentage"] = None
        out["description"] = meta.get("description") if isinstance(meta.get("description"), str) else None
        out["owner"] = meta.get("owner") if isinstance(meta.get("owner"), str) else None
        out["kind"] = meta.get("kind") if meta.get("kind") in ("temporary", "permanent") else None
        tags = meta.get("tags")
        out["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        out["problems"] = _problems(compiled)
    out["updated_at"] = last.at if last else None
    out["updated_by"] = parse_author(last.author)["actor"] if last else None
    age = (now or time.time()) - last.at if last else 0.0
    out["stale"] = out["kind"] == "temporary" and last is not None and age > stale_days * 86400
    return out


def _last_changes(state: ServerState, names: list[str]) -> dict[str, HistoryEntry]:
    """The latest history entry of each flag: one read across flags, then per flag for the rest."""
    latest: dict[str, HistoryEntry] = {}
    for entry in state.store.history(None, limit=max(200, 4 * len(names))):
        latest.setdefault(entry.name, entry)
    for name in names:
        if name not in latest:
            entries = state.store.history(name, limit=1)
            if entries:
                latest[name] = entries[0]
    return latest


def _summary_of(state: ServerState, name: str) -> dict[str, Any]:
    record = state.store.get(name)
    if record is None:
        raise NotFoundError(name)
    entries = state.store.history(name, limit=1)
    return flag_summary(record, entries[0] if entries else None, stale_days=state.settings.stale_days)


_FILTERS = {
    "kind": ("temporary", "permanent"),
    "state": ("on", "off", "partial", "invalid"),
    "stale": ("true", "false"),
}


def _matches(summary: dict[str, Any], query: Mapping[str, str]) -> bool:
    if "tag" in query and query["tag"] not in summary["tags"]:
        return False
    for key in ("owner", "kind", "state"):
        if key in query and summary[key] != query[key]:
            return False
    if "stale" in query and summary["stale"] != (query["stale"] == "true"):
        return False
    q = query.get("q", "").lower()
    return not q or q in summary["name"].lower() or q in (summary["description"] or "").lower()


# --------------------------------------------------------------------------- flags


async def list_flags(request: Request) -> Response:
    require(request, Scope.READ)
    state = _state(request)
    filters = query(request, "tag", "owner", "kind", "state", "stale", "q")
    for key, allowed in _FILTERS.items():
        if key in filters and filters[key] not in allowed:
            raise ApiError(400, f"{key!r} must be one of {', '.join(allowed)}")

    def work() -> dict[str, Any]:
        loaded = state.store.load()
        names = sorted(loaded.records)
        latest = _last_changes(state, names)
        now = time.time()
        summaries = [
            flag_summary(loaded.records[n], latest.get(n), stale_days=state.settings.stale_days, now=now)
            for n in names
        ]
        return {"flags": [s for s in summaries if _matches(s, filters)], "revision": loaded.revision}

    return JSONResponse(await _call(work))


async def create_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Scope.WRITE)
    body = _object(await read_json(request), ("name", "document"))
    name = body["name"]
    if not isinstance(name, str):
        raise ApiError(422, "invalid flag name", problems=[{"path": "name", "message": "must be a string"}])
    state = _state(request)
    admin = state.admin_for(principal, _request_id(request))
    await _call(_write, state, admin, "create", lambda: admin.set(name, body["document"], expect=0))
    summary = await _call(_summary_of, state, name)
    return JSONResponse(
        summary, 201, headers={**_etag(summary["version"]), "Location": f"{PREFIX}/flags/{name}"}
    )


async def get_flag(request: Request) -> Response:
    query(request)
    require(request, Scope.READ)
    summary = await _call(_summary_of, _state(request), request.path_params["name"])
    return JSONResponse(summary, headers=_etag(summary["version"]))


async def put_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Scope.WRITE)
    name = request.path_params["name"]
    expect = if_match(request)
    body = _object(await read_json(request), ("document",))
    state = _state(request)
    admin = state.admin_for(principal, _request_id(request))
    document = body["document"]
    outcome = await _call(_write, state, admin, "replace", lambda: replace(admin, name, document, expect))
    summary = await _call(_summary_of, state, name)
    summary["changed"] = outcome.changed
    status = 201 if outcome.before is None else 200
    return JSONResponse(summary, status, headers=_etag(summary["version"]))


async def delete_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Scope.WRITE)
    name = request.path_params["name"]
    expect = if_match(request)
    state = _state(request)
    admin = state.admin_for(principal, _request_id(request))
    await _call(_write, state, admin, "delete", lambda: admin.delete(name, expect=expect))
    return Response(status_code=204)


def replace(admin: Admin, name: str, document: Any, expect: int | None) -> Outcome:
    """``admin.set``, except that writing the document the flag already has writes nothing
    (no new version, no history entry): a retried request is not a second change."""
    parse_flag(name, document)
    record = admin.store.get(name)
    held = None if record is None else document_or_text(record.raw)
    unchanged = record is not None and encode_document(held) == encode_document(document)
    if record is not None and unchanged and expect in (None, record.version):
        return Outcome(name, record.raw, record.raw, record, False)
    return admin.set(name, document, expect=expect)


def _write(state: ServerState, admin: Admin, action: str, write: Callable[[], Outcome]) -> Outcome:
    """Run one write; count it and log the audit line when it changed something."""
    outcome = write()
    if outcome.changed:
        state.metrics.inc("flagstaff_writes_total", action=action)
        from flagstaff.http.app import audit_log

        audit_log.info(
            "%s %s by %s",
            action,
            outcome.name,
            admin.author,
            extra={
                "flag": outcome.name,
                "action": action,
                "author": admin.author,
                "version": outcome.record.version if outcome.record else None,
            },
        )
    return outcome


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
}
PATCH_OPS = (
    "kill",
    "enable",
    "set_percentage",
    "add_users",
    "remove_users",
    "add_groups",
    "remove_groups",
    "set_variants",
)


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, f"{key!r} must be a non-empty list of non-empty strings")
    return value


def _add(key: str, items: list[str]) -> Callable[[Any], Any]:
    def edit(doc: Any) -> Any:
        obj = _as_object(doc)
        current = list(obj.get(key, []))
        current += [i for i in items if i not in current]
        return {**obj, key: current}

    return edit


def _remove(key: str, items: list[str]) -> Callable[[Any], Any]:
    def edit(doc: Any) -> Any:
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            return doc
        obj = dict(doc)
        obj[key] = [i for i in obj[key] if i not in items]
        if not obj[key]:
            del obj[key]
        return obj

    return edit


def _set_variants(variants: dict[str, Any]) -> Callable[[Any], Any]:
    def edit(doc: Any) -> Any:
        obj = _as_object(doc)
        experiment = obj.get("experiment")
        experiment = dict(experiment) if isinstance(experiment, dict) else {"everyone": True}
        experiment["variants"] = variants
        return {**obj, "experiment": experiment}

    return edit


def _as_object(doc: Any) -> dict[str, Any]:
    if isinstance(doc, dict):
        return dict(doc)
    if doc in ("on", True):
        return {"enabled": "on"}
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        return {"percentage": doc}
    return {}  # "off", false: nothing targeted yet


def _percent(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100


def _operation(admin: Admin, name: str, body: dict[str, Any], expect: int | None) -> Callable[[], Outcome]:
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
        edit = _add(key, items) if verb == "add" else _remove(key, items)
        return lambda: admin.update(name, edit, expect=expect)
    if op == "set_variants":
        variants = body.get("variants")
        if not isinstance(variants, dict) or not variants or not all(_percent(v) for v in variants.values()):
            raise ApiError(400, "'variants' must be an object of variant name -> percentage (0 to 100)")
        return lambda: admin.update(name, _set_variants(variants), expect=expect)
    raise ApiError(400, f"unknown op {op!r}: use one of {', '.join(PATCH_OPS)}")


async def patch_flag(request: Request) -> Response:
    query(request)
    principal = require(request, Scope.WRITE)
    name = request.path_params["name"]
    expect = if_match(request)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("op") not in PATCH_OPS:
        raise ApiError(400, f"the body must be an object with 'op' one of {', '.join(PATCH_OPS)}")
    _object(body, ("op", *_OP_FIELDS[body["op"]][0]), _OP_FIELDS[body["op"]][1])
    state = _state(request)
    admin = state.admin_for(principal, _request_id(request))
    write = _operation(admin, name, body, expect)
    if expect is None:  # every op edits an existing flag
        await _call(admin.get, name)
    outcome = await _call(_write, state, admin, str(body["op"]), write)
    summary = await _call(_summary_of, state, name)
    summary["changed"] = outcome.changed
    return JSONResponse(summary, headers=_etag(summary["version"]))


# --------------------------------------------------------------------------- validate


async def validate(request: Request) -> Response:
    query(request)
    require(request, Scope.READ)
    body = _object(await read_json(request), ("document",), ("name",))
    name = body.get("name", "flag")
    if not isinstance(name, str):
        raise ApiError(400, "'name' must be a string")
    try:
        parse_flag(name, body["document"])
    except ValidationError as exc:
        return JSONResponse({"ok": False, "problems": _problems(exc)})
    return JSONResponse({"ok": True, "problems": []})


# --------------------------------------------------------------------------- history, diff, rollback


def _limit(request: Request) -> int:
    text = query(request, "limit").get("limit", "100")
    if not text.isdigit() or not 1 <= int(text) <= HISTORY_MAX:
        raise ApiError(400, f"limit must be a whole number from 1 to {HISTORY_MAX}")
    return int(text)


def history_entry(entry: HistoryEntry) -> dict[str, Any]:
    action = "delete" if entry.after is None else "create" if entry.before is None else "update"
    return {
        "name": entry.name,
        "revision": entry.revision,
        "version": entry.version,
        "at": entry.at,
        "action": action,
        "author": entry.author,
        **parse_author(entry.author),
        "before": document_or_text(entry.before),
        "after": document_or_text(entry.after),
    }


async def flag_history(request: Request) -> Response:
    require(request, Scope.READ)
    name = request.path_params["name"]
    entries = await _call(_state(request).store.history, name, _limit(request))
    return JSONResponse({"name": name, "entries": [history_entry(e) for e in entries]})


async def all_history(request: Request) -> Response:
    require(request, Scope.READ)
    entries = await _call(_state(request).store.history, None, _limit(request))
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


def json_changes(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Where two documents differ: one entry per changed path (objects are walked, lists compared whole)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append({"path": sub, "change": "removed", "before": before[key], "after": None})
            elif key not in before:
                out.append({"path": sub, "change": "added", "before": None, "after": after[key]})
            else:
                out.extend(json_changes(before[key], after[key], sub))
        return out
    if encode_document(before) == encode_document(after):
        return []
    return [{"path": path, "change": "changed", "before": before, "after": after}]


def _pretty(doc: Any) -> list[str]:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


async def diff(request: Request) -> Response:
    require(request, Scope.READ)
    state = _state(request)
    name = request.path_params["name"]
    params = query(request, "from", "to")
    v_from, v_to = _version_param(params, "from"), _version_param(params, "to")
    if v_from is None:
        raise ApiError(400, "'from' (a version) is required")
    from_version, before = await _call(document_at, state, name, v_from)
    to_version, after = await _call(document_at, state, name, v_to)
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
    principal = require(request, Scope.WRITE)
    name = request.path_params["name"]
    expect = if_match(request)
    body = _object(await read_json(request), ("version",))
    version = body["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ApiError(400, "'version' must be a flag version (a whole number from 1)")
    state = _state(request)
    _, document = await _call(document_at, state, name, version)
    admin = state.admin_for(principal, _request_id(request))
    outcome = await _call(_write, state, admin, "rollback", lambda: replace(admin, name, document, expect))
    summary = await _call(_summary_of, state, name)
    summary["changed"] = outcome.changed
    summary["rolled_back_to"] = version
    return JSONResponse(summary, headers=_etag(summary["version"]))


# --------------------------------------------------------------------------- evaluate


_CONTEXT_TYPES: dict[str, tuple[type, ...]] = {
    "user_id": (str, type(None)),
    "user_name": (str, type(None)),
    "cookie_id": (str, type(None)),
    "subdomain": (str, type(None)),
    "location": (str, type(None)),
    "oauth_client": (str, type(None)),
    "logged_in": (bool,),
    "time": (int, float),
    "attributes": (dict,),
}


def parse_context(raw: Any) -> Context:
    """A context from JSON, its documented fields type-checked (400 otherwise)."""
    if raw is None:
        return Context()
    if not isinstance(raw, dict):
        raise ApiError(400, "'context' must be an object (user_id, groups, attributes, ...) or null")
    for key, value in raw.items():
        types = _CONTEXT_TYPES.get(key)
        wrong_scalar = types is not None and (
            not isinstance(value, types) or (key == "time" and value is True)
        )
        wrong_list = key in ("groups", "features") and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if wrong_scalar or wrong_list or (key == "time" and isinstance(value, bool)):
            raise ApiError(400, f"invalid context: {key!r} has the wrong type")
    try:
        return Context.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"invalid context: {exc}") from None


async def evaluate(request: Request) -> Response:
    query(request)
    require(request, Scope.READ)
    state = _state(request)
    body = _object(await read_json(request), (), ("context", "flag", "flags"))
    context = parse_context(body.get("context"))
    client = state.client
    if "flag" in body and "flags" in body:
        raise ApiError(400, "give 'flag' (one) or 'flags' (several), not both")
    if "flag" in body:
        if not isinstance(body["flag"], str):
            raise ApiError(400, "'flag' must be a flag name")
        decisions = {body["flag"]: client.evaluate(body["flag"], context)}
    elif "flags" in body:
        names = body["flags"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "'flags' must be a list of flag names")
        decisions = {n: client.evaluate(n, context) for n in names}
    else:
        decisions = client.all(context)
    state.metrics.inc("flagstaff_evaluations_total", len(decisions))
    return JSONResponse(
        {
            "revision": client.snapshot.revision,
            "decisions": {name: d.to_dict() for name, d in decisions.items()},
        }
    )


# --------------------------------------------------------------------------- events


async def events(request: Request) -> Response:
    query(request)
    principal = require(request, Scope.READ)
    state = _state(request)
    broker = state.events
    subscription = broker.subscribe()
    interval = state.settings.ping_interval

    async def stream() -> AsyncIterator[str]:
        try:
            yield f"retry: 3000\n: connected at revision {broker.revision}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), interval)
                except TimeoutError:
                    if not _still_valid(state, principal):
                        return
                    yield ": ping\n\n"
                    continue
                if event is None or not _still_valid(state, principal):
                    return
                yield f"id: {event.revision}\nevent: change\ndata: {event.to_json()}\n\n"
        finally:
            broker.unsubscribe(subscription)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _still_valid(state: ServerState, principal: Principal) -> bool:
    """A stream ends as soon as its token is revoked (checked at each event and ping)."""
    if principal.token_id is None:
        return True
    info = state.tokens.get(principal.token_id)
    return info is not None and info.active


# --------------------------------------------------------------------------- tokens


async def list_tokens(request: Request) -> Response:
    query(request)
    require(request, Scope.ADMIN)
    tokens = await run_in_threadpool(_state(request).tokens.list)
    return JSONResponse({"tokens": [t.to_dict() for t in tokens]})


async def create_token(request: Request) -> Response:
    query(request)
    require(request, Scope.ADMIN)
    body = _object(await read_json(request), ("name", "scope"))
    if not isinstance(body["name"], str) or not isinstance(body["scope"], str):
        raise ApiError(400, "'name' and 'scope' must be strings")
    try:
        scope = Scope.parse(body["scope"])
        info, secret = _state(request).tokens.create(body["name"], scope)
    except TokenError as exc:
        raise ApiError(400, str(exc)) from None
    return JSONResponse({**info.to_dict(), "token": secret}, 201)


async def revoke_token(request: Request) -> Response:
    query(request)
    require(request, Scope.ADMIN)
    try:
        info = _state(request).tokens.revoke(request.path_params["token_id"])
    except TokenError as exc:
        raise ApiError(404, str(exc)) from None
    return JSONResponse(info.to_dict())


# --------------------------------------------------------------------------- service endpoints


async def healthz(request: Request) -> Response:
    query(request)
    state = _state(request)
    status = state.client.status()
    live = status.state.value == "live"
    body = {
        "status": "ok" if live else "degraded",
        "state": status.state.value,
        "revision": status.revision,
        "flags": status.flags,
        "invalid": len(status.invalid),
        "age": status.age,
        "store": status.store_url,
        "last_error": status.last_error,
    }
    return JSONResponse(body, 200 if live else 503)


async def metrics(request: Request) -> Response:
    query(request)
    return Response(_state(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_document(request: Request) -> Response:
    query(request)
    return JSONResponse(openapi.document())


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", openapi_document, methods=["GET"]),
        Route(f"{PREFIX}/flags", list_flags, methods=["GET"]),
        Route(f"{PREFIX}/flags", create_flag, methods=["POST"]),
        Route(f"{PREFIX}/flags/{{name}}", get_flag, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}", put_flag, methods=["PUT"]),
        Route(f"{PREFIX}/flags/{{name}}", patch_flag, methods=["PATCH"]),
        Route(f"{PREFIX}/flags/{{name}}", delete_flag, methods=["DELETE"]),
        Route(f"{PREFIX}/flags/{{name}}/history", flag_history, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/diff", diff, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/rollback", rollback, methods=["POST"]),
        Route(f"{PREFIX}/history", all_history, methods=["GET"]),
        Route(f"{PREFIX}/validate", validate, methods=["POST"]),
        Route(f"{PREFIX}/evaluate", evaluate, methods=["POST"]),
        Route(f"{PREFIX}/events", events, methods=["GET"]),
        Route(f"{PREFIX}/tokens", list_tokens, methods=["GET"]),
        Route(f"{PREFIX}/tokens", create_token, methods=["POST"]),
        Route(f"{PREFIX}/tokens/{{token_id}}", revoke_token, methods=["DELETE"]),
    ]
