"""The change-requests resource: propose, list, read, approve, reject, cancel, apply.

See ``docs/changes.md``. Who may do what (token permissions, :class:`~flagstaff.http.tokens.Permission`):

* propose (``POST /change-requests``): write. The request records the flag's version
  now (``If-Match`` may name the version the proposer saw: 409 if it moved since);
  the document is validated at once (422 with the problems).
* approve: approve, and not the proposer (another token *and* another name): 403.
* reject: approve. Cancel: the proposer, or anyone with approve.
* apply: write, once approved; refused (409) before its ``apply_at``, which is the
  scheduler's (:mod:`flagstaff.http.scheduler`). A flag changed since the proposal is
  409 with ``stale`` saying what changed, and the request is failed.

An identity is the token (``token:ID``); open mode's local admin is ``open``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.admin import parse_document
from flagstaff.changes import (
    ChangeRequest,
    ChangeRequestError,
    Proposal,
    SelfApproval,
    Status,
    WrongStatus,
)
from flagstaff.http.api._common import (
    PREFIX,
    ApiError,
    call,
    comment_required,
    fields,
    if_match,
    query,
    read_json,
    request_id,
)
from flagstaff.http.auth import require
from flagstaff.http.present import document_or_text, json_changes
from flagstaff.http.scheduler import StaleProposal, apply_change, base_document
from flagstaff.http.state import ServerState, audit_log, state_of
from flagstaff.http.tokens import Permission, Principal

__all__ = [
    "apply_request",
    "approve_request",
    "cancel_request",
    "change_view",
    "get_request",
    "identity",
    "list_requests",
    "parse_apply_at",
    "propose",
    "reject_request",
]


def identity(principal: Principal) -> str:
    """Who ``principal`` is for the four-eyes rule: its token, the user (``user:NAME``, a person
    logged in with a password or single sign-on), or ``open`` in open mode."""
    if principal.via == "user":
        return f"user:{principal.name}"
    return f"token:{principal.token_id}" if principal.token_id else "open"


def parse_apply_at(value: Any) -> float | None:
    """``apply_at`` as epoch seconds: an ISO 8601 time with its offset (``2026-12-24T09:00:00Z``)
    or a number of epoch seconds; ``None`` stays ``None``. ``ApiError`` 400 otherwise."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise ApiError(400, "'apply_at' epoch seconds must be a finite number, 0 or more")
        return float(value)
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return when.timestamp()
    raise ApiError(
        400, "'apply_at' must be an ISO 8601 time with an offset (2026-12-24T09:00:00Z) or epoch seconds"
    )


def change_view(state: ServerState, change: ChangeRequest) -> dict[str, Any]:
    """A request as answered: its fields, the flag's current version, and what it would change
    against the version it was proposed on (``changes``; ``stale`` when the flag moved since)."""
    out = change.to_dict()
    record = state.store.get(change.flag)
    current_version = 0 if record is None else record.version
    current = None if record is None else document_or_text(record.raw)
    out["current_version"] = current_version
    out["stale"] = change.open and current_version != change.base_version
    # What the proposal changes against the version it was made on (kept in history).
    base = current if current_version == change.base_version else base_document(state, change)
    out["changes"] = json_changes(base, change.document)
    out["url"] = f"{PREFIX}/change-requests/{change.id}"
    return out


async def _answer(request: Request, fn: Any, *args: Any, status: int = 200, **kwargs: Any) -> Response:
    """Run a change store operation and answer with the request it returns (errors mapped)."""
    state = state_of(request)
    try:
        change = await call(fn, *args, **kwargs)
    except StaleProposal as exc:
        raise ApiError(409, str(exc), code="stale", stale=exc.details) from None
    except SelfApproval as exc:
        raise ApiError(403, str(exc), code="self_approval") from None
    except WrongStatus as exc:
        raise ApiError(409, str(exc), code="wrong_status", request_status=exc.status.value) from None
    except ChangeRequestError as exc:
        raise ApiError(400, str(exc)) from None
    headers = {"Location": f"{PREFIX}/change-requests/{change.id}"} if status == 201 else None
    return JSONResponse(await call(change_view, state, change), status, headers=headers)


def _change_id(request: Request) -> int:
    text = str(request.path_params["change_id"])
    if not text.isdigit() or len(text) > 18:
        raise ApiError(404, f"no change request {text!r}")
    return int(text)


def _audit(action: str, change: ChangeRequest, who: str) -> None:
    audit_log.info(
        "change request #%d %s by %s",
        change.id,
        action,
        who,
        extra={"flag": change.flag, "action": f"change_request.{action}", "author": who,
               "change_request": change.id},
    )  # fmt: skip


async def list_requests(request: Request) -> Response:
    require(request, Permission.READ)
    params = query(request, "status", "flag")
    status = params.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise ApiError(400, f"'status' must be one of {', '.join(s.value for s in Status)}")
    state = state_of(request)

    def work() -> dict[str, Any]:
        found = state.changes.list(status=Status(status) if status else None, flag=params.get("flag"))
        return {"change_requests": [change_view(state, c) for c in found]}

    return JSONResponse(await call(work))


async def get_request(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    state = state_of(request)
    return await _answer(request, state.changes.get, _change_id(request))


async def propose(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    expect = if_match(request)
    body = fields(await read_json(request), ("flag", "document"), ("comment", "apply_at"))
    flag, comment = body["flag"], body.get("comment", "")
    if not isinstance(flag, str) or not flag:
        raise ApiError(400, "'flag' must be a flag's name (or a segment's key, segment:NAME)")
    if not isinstance(comment, str):
        raise ApiError(400, "'comment' must be a string")
    apply_at = parse_apply_at(body.get("apply_at"))
    state = state_of(request)
    if state.settings.requires_comment and not comment.strip():
        raise comment_required()
    document = body["document"]

    def work() -> ChangeRequest:
        parse_document(flag, document)  # refused now (422), not at apply time
        record = state.store.get(flag)
        base = 0 if record is None else record.version
        if expect is not None and expect != base:
            raise ApiError(
                409, f"{flag!r} is at version {base}, not {expect}: read it again", current_version=base
            )
        proposal = Proposal(flag, document, base, comment, apply_at)
        change = state.changes.propose(proposal, proposer=identity(principal), proposer_name=principal.name)
        _audit("proposed", change, principal.name)
        return change

    return await _answer(request, work, status=201)


async def _body(request: Request, *optional: str) -> dict[str, Any]:
    if not await request.body():
        return {}
    return fields(await read_json(request), (), optional)


async def approve_request(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.APPROVE)
    await _body(request)
    state = state_of(request)
    change_id = _change_id(request)

    def work() -> ChangeRequest:
        change = state.changes.approve(change_id, approver=identity(principal), approver_name=principal.name)
        _audit("approved", change, principal.name)
        return change

    return await _answer(request, work)


async def reject_request(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.APPROVE)
    reason = (await _body(request, "reason")).get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "'reason' must be a string")
    state = state_of(request)
    change_id = _change_id(request)

    def work() -> ChangeRequest:
        change = state.changes.reject(change_id, by=principal.name, note=reason)
        _audit("rejected", change, principal.name)
        return change

    return await _answer(request, work)


async def cancel_request(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    await _body(request)
    state = state_of(request)
    change_id = _change_id(request)

    def work() -> ChangeRequest:
        change = state.changes.get(change_id)
        if change.proposer != identity(principal) and principal.scope < Permission.APPROVE:
            raise ApiError(
                403, f"only its proposer ({change.proposer_name!r}) or an approver can cancel #{change_id}"
            )
        change = state.changes.cancel(change_id, by=principal.name)
        _audit("cancelled", change, principal.name)
        return change

    return await _answer(request, work)


async def apply_request(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.WRITE)
    await _body(request)
    state = state_of(request)
    change_id = _change_id(request)
    rid = request_id(request)

    def work() -> ChangeRequest:
        change = state.changes.get(change_id)
        if change.status is Status.APPROVED and change.apply_at is not None and change.apply_at > time.time():
            when = dt.datetime.fromtimestamp(change.apply_at, dt.UTC).isoformat()
            raise ApiError(
                409,
                f"change request #{change_id} is scheduled for {when}: the server applies it then"
                " (cancel it to change the plan)",
                code="scheduled",
            )
        return apply_change(state, change_id, by=principal.name, request_id=rid)

    return await _answer(request, work)
