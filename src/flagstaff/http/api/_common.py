"""What every API resource shares: errors as JSON, the request body, query and
``If-Match``, blocking store calls, and the audited write.

A handler reads its input with :func:`read_json`, :func:`fields`, :func:`query`
and :func:`if_match` (each answers 400/413 with a JSON ``error`` on bad input),
runs store operations through :func:`call` (the thread pool; store errors become
404, 409, 422, 503 or 504; a delete refused because flags use what it would delete, 409
with them in ``used_by``) and every change through :func:`write` (counted, and
logged to the audit log when it changed something).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request

from flagstaff.admin import COMMENT_MARK, Admin, NothingToEnable, Outcome
from flagstaff.document import is_part_key, is_segment_key, segment_key, segment_name
from flagstaff.errors import (
    ConflictError,
    InUseError,
    NotFoundError,
    StoreError,
    ValidationError,
    WriteOutcomeUnknown,
)
from flagstaff.http.present import flag_summary, problems, segment_summary, segment_users
from flagstaff.http.state import ServerState, audit_log, author_text, state_of
from flagstaff.http.tokens import Principal
from flagstaff.stores.base import HistoryEntry

__all__ = [
    "DIRECT_UNDER_APPROVAL",
    "PREFIX",
    "ApiError",
    "DuplicateKey",
    "call",
    "etag",
    "fields",
    "flag_name",
    "if_match",
    "last_changes",
    "query",
    "read_json",
    "request_id",
    "segment_summary_of",
    "summary_of",
    "write",
]

PREFIX = "/api/v1"

DIRECT_UNDER_APPROVAL = frozenset({"kill", "apply"})
"""The write actions allowed when the server requires approval: the kill switch, and
applying an approved change request (:mod:`flagstaff.http.scheduler`)."""


class ApiError(HTTPException):
    """An HTTP error with a JSON body beyond ``error`` (``problems``, ``current_version``)."""

    def __init__(self, status: int, message: str, **body: Any) -> None:
        super().__init__(status, message)
        self.body = body


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "none")


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking store operation in the thread pool, mapping errors to HTTP."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except ValidationError as exc:
        raise ApiError(422, str(exc), problems=problems(exc)) from None
    except ConflictError as exc:
        raise ApiError(409, str(exc), current_version=exc.actual) from None
    except NotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except InUseError as exc:  # a delete refused: flags still use the segment, or require the flag
        raise ApiError(409, str(exc), used_by=list(exc.used_by)) from None
    except NothingToEnable as exc:
        raise ApiError(422, str(exc), problems=[{"path": "", "message": str(exc)}]) from None
    except WriteOutcomeUnknown as exc:
        # Not "failed" (a 503 invites a blind retry): the write may be in. 504, as a gateway
        # whose upstream never answered; retry with If-Match, which cannot apply it twice.
        raise ApiError(504, str(exc), code="outcome_unknown") from None
    except StoreError as exc:
        raise ApiError(503, f"store unavailable: {exc}") from None


async def read_json(request: Request) -> Any:
    """The request's JSON body; 413 past ``Settings.max_body``, 400 if not JSON."""
    limit = state_of(request).settings.max_body
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
    body = b"".join(chunks)
    try:
        value = json.loads(body, object_pairs_hook=_unique_keys)
        # Only a \\uD8xx-\\uDFxx escape or raw ED A0-BF bytes can make a surrogate: walk the value
        # (a cost per string) only when the body holds one of those.
        return _no_lone_surrogates(value) if _MAYBE_SURROGATE.search(body) else value
    except DuplicateKey as exc:
        raise ApiError(400, str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None


class DuplicateKey(ValueError):
    """A JSON object names one key twice: parsers disagree on which wins, so refuse it."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(f"the body names the key {key!r} twice in one object")
        out[key] = value
    return out


_MAYBE_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _no_lone_surrogates(value: Any) -> Any:
    """``value``, or 400 if a string in it holds a lone surrogate (JSON allows ``"\\ud800"``;
    UTF-8 cannot encode it, so a store or a response would fail on it later, after a commit)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(
                    400, f"the body holds a lone surrogate (U+{ord(item[exc.start]):04X}), which is not text"
                ) from None
    return value


def fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
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
    if not request.scope.get("query_string"):  # the common case, on every request: nothing to parse
        return {}
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


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def flag_name(request: Request, *, writing: bool = False) -> str:
    """The ``{name}`` of a ``/flags/{name}`` route, which never names a segment: a segment's
    key (``segment:NAME``) is 404 with where the segment is (422 for a write that would create)."""
    name: str = request.path_params["name"]
    if not is_segment_key(name):
        return name
    where = f"{PREFIX}/segments/{quote(segment_name(name), safe='')}"
    message = f"{name!r} is a segment, not a flag: use {where}"
    if writing:
        raise ApiError(422, message, problems=[{"path": "name", "message": message}], segment=where)
    raise ApiError(404, message, segment=where)


def last_changes(state: ServerState, names: list[str]) -> dict[str, HistoryEntry]:
    """The latest history entry of each name: one read across names, then per name for the rest."""
    latest: dict[str, HistoryEntry] = {}
    for entry in state.store.history(None, limit=max(200, 4 * len(names))):
        latest.setdefault(entry.name, entry)
    for name in names:
        if name not in latest:
            entries = state.store.history(name, limit=1)
            if entries:
                latest[name] = entries[0]
    return latest


def summary_of(state: ServerState, name: str) -> dict[str, Any]:
    """The flag's summary as stored now, with its latest change (404 if there is no such flag)."""
    record = state.store.get(name)
    if record is None:
        raise NotFoundError(name)
    entries = state.store.history(name, limit=1)
    return flag_summary(record, entries[0] if entries else None, stale_days=state.settings.stale_days)


def segment_summary_of(state: ServerState, name: str) -> dict[str, Any]:
    """The segment's summary as stored now, with the flags that use it (404 if there is none)."""
    key = segment_key(name)
    loaded = state.store.load()
    record = None if is_part_key(key) else loaded.records.get(key)  # a part is no segment
    if record is None:
        raise ApiError(404, f"no segment named {segment_name(key)!r}")
    entries = state.store.history(key, limit=1)
    used_by = segment_users(loaded.records).get(segment_name(key), [])
    return segment_summary(record, entries[0] if entries else None, used_by)


def comment_required() -> ApiError:
    """The answer to a write without a comment where ``Settings.requires_comment`` asks one."""
    return ApiError(
        422,
        "this environment requires a comment with every change: say why in 'comment' "
        "(a field of the body; ?comment= on DELETE)",
        code="comment_required",
    )


def write(state: ServerState, admin: Admin, action: str, change: Callable[[], Outcome]) -> Outcome:
    """Run one write; count it and log the audit line when it changed something.

    With ``Settings.requires_approval`` only the kill switch and an approved change
    request's apply write directly (403 otherwise, pointing at change requests). With
    ``Settings.requires_comment`` every other write must carry a comment (422).
    """
    if state.settings.requires_approval and action not in DIRECT_UNDER_APPROVAL:
        raise ApiError(
            403,
            f"this server requires approval: propose the change with POST {PREFIX}/change-requests "
            "(a second person approves it, then it is applied); only the kill switch writes directly",
            change_requests=f"{PREFIX}/change-requests",
        )
    commented = COMMENT_MARK in (admin.author or "")
    if state.settings.requires_comment and action not in DIRECT_UNDER_APPROVAL and not commented:
        raise comment_required()
    outcome = change()
    if outcome.changed:
        state.metrics.inc("flagstaff_writes_total", action=action)
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


def audit_credential(request: Request, principal: Principal, action: str, what: str, **details: Any) -> None:
    """One audit-log line for a credential made or revoked (``token.create``, ``client_key.revoke``,
    ...): who did it (as the store's history names authors), what, and its id, never a secret."""
    who = author_text(principal, request_id(request))
    audit_log.info("%s %s by %s", action, what, who, extra={"action": action, "author": who, **details})
