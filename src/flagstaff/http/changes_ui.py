"""The dashboard's change request pages: ``/change-requests`` (a list) and
``/change-requests/{id}`` (one request: what it changes, who proposed and approved it,
and the approve, reject, cancel and apply buttons its viewer may use).

Like every dashboard page these only read; the buttons (``static/changes.js``) call
the JSON API (:mod:`flagstaff.http.api.changes`) with the session's CSRF token, so the
page can do nothing the API would refuse (the proposer's own approve button is not
shown, and the API refuses it anyway). A flag's page carries the propose form
(``change_requests_propose.html``) when the server requires approval.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from flagstaff.changes import Status
from flagstaff.errors import NotFoundError
from flagstaff.http import auth, ui
from flagstaff.http.api.changes import change_view, identity
from flagstaff.http.scheduler import stale_details
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["routes"]


def list_page(request: Request) -> HTMLResponse:
    auth.require(request, Permission.READ)
    state = state_of(request)
    wanted = request.query_params.get("status", "")
    status = Status(wanted) if wanted in {s.value for s in Status} else None
    views = [change_view(state, c) for c in state.changes.list(status=status)]
    return ui.render(
        request,
        "change_requests.html",
        nav="change-requests",
        requests=views,
        wanted=wanted if status else "",
        statuses=[s.value for s in Status],
    )


def detail_page(request: Request) -> HTMLResponse:
    principal = auth.require(request, Permission.READ)
    state = state_of(request)
    text = str(request.path_params["change_id"])
    try:
        change = state.changes.get(int(text)) if text.isdigit() and len(text) < 18 else None
    except NotFoundError:
        change = None
    if change is None:
        return ui.render(request, "change_requests_missing.html", 404, nav="change-requests", change_id=text)
    view = change_view(state, change)
    mine = change.proposer == identity(principal)
    approver = principal.scope >= Permission.APPROVE
    return ui.render(
        request,
        "change_requests_detail.html",
        nav="change-requests",
        c=view,
        document_text=json.dumps(change.document, indent=2, sort_keys=True, ensure_ascii=False),
        stale=stale_details(state, change) if view["stale"] else None,
        can_approve=approver and not mine and change.status is Status.PENDING,
        own=mine,
        can_reject=approver and change.open,
        can_cancel=(mine or approver) and change.open,
        can_apply=principal.scope >= Permission.WRITE and change.status is Status.APPROVED,
        approver=approver,
    )


def routes() -> list[BaseRoute]:
    """The change request pages, for :func:`flagstaff.http.app.create_app`."""
    return [
        Route("/change-requests", list_page, methods=["GET"], name="ui_change_requests"),
        Route("/change-requests/{change_id}", detail_page, methods=["GET"], name="ui_change_request"),
    ]
