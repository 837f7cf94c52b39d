"""The dashboard: server-rendered pages for incidents and rollouts.

Three pages, each rendered by Jinja2 from the store as it is now:

* ``/``: every flag with its state at a glance (on, off, killed, partial,
  invalid), rollout, owner, tags, last change and a kill switch; search and
  filters (``?q=&state=&kind=&owner=&tag=``; ``kind=stale`` lists temporary
  flags unchanged for longer than ``Settings.stale_days``);
* ``/flags/{name}``: one flag: kill switch, percentage, users and groups, the
  experiment editor, the JSON document, and its history with diffs and rollback;
* ``/changes``: recent changes to every flag and segment;
* ``/segments``: every segment with its description and how many flags use it;
* ``/change-requests`` and ``/change-requests/{id}``: proposals awaiting approval
  (:mod:`flagstaff.http.changes_ui`);
* ``/segments/{name}``: one segment: its JSON document (edited with the same
  checks as a flag's), the flags that use it, its history, and delete (refused,
  with the flags listed, while any uses it).

A flag page also shows the keys that decide beyond the classic selectors (deny,
prerequisites, targeting rules in order with what each serves, the default and the
values), as text, with the segments they name linked.

The views the pages print (flags, changes, member pages, filters) are built in
:mod:`flagstaff.http.views`; this module renders them and serves the pages.

Pages only read. Every write is made by ``static/flagstaff.js`` through the
JSON API (``/api/v1``) with the session cookie and the CSRF token the pages
carry in ``<meta name="csrf-token">``, so the UI can do nothing the API would
refuse, and validation messages are the API's own. The script also follows
``/api/v1/events`` and re-renders the parts of the page that changed.

Pages need a session (or open mode) with at least the read scope; write
controls are shown only to write tokens. Responses carry a strict
Content-Security-Policy (scripts and styles from this server only, no framing).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from flagstaff.document import is_part_key, is_segment_key, printable_text, segment_key, segment_name
from flagstaff.http import auth, environments
from flagstaff.http.compare import compare_context
from flagstaff.http.guarding import guard_view
from flagstaff.http.listing import PAGE_SIZE, Query, list_page
from flagstaff.http.playground import playground_context
from flagstaff.http.present import segment_users
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission
from flagstaff.http.views import (
    DAY,
    INLINE_DOCUMENT,
    Filters,
    FlagView,
    change_view,
    flag_view,
    iso,
    member_page,
    segment_view,
)
from flagstaff.model import Kind
from flagstaff.rules import OPERATORS
from flagstaff.stores.base import HistoryEntry, Record
from flagstaff.usage import UsageTable, read_usage

__all__ = ["render", "routes"]

log = logging.getLogger("flagstaff.http")

_HERE = Path(__file__).parent
_TEMPLATES = _HERE / "templates"
_STATIC = _HERE / "static"
_HISTORY_LIMIT = 50

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# --------------------------------------------------------------------------- rendering


def _ago(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("day", DAY), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _pct(value: float) -> str:
    return f"{value:g}%"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


_VERSIONS = {p.name: _digest(p) for p in _STATIC.iterdir() if p.is_file()}

_env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(ago=_ago, iso=iso, pct=_pct)


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal = auth.require(request, Permission.READ)
    root = str(request.scope.get("root_path", "")).rstrip("/")

    def static_url(name: str) -> str:
        return f"{root}/static/{name}?v={_VERSIONS.get(name, '0')}"

    html = _env.get_template(template).render(
        root=root,
        csrf=auth.csrf_token(request),
        events_url=f"{root}/api/v1/events",
        static_url=static_url,
        principal_name=principal.name,
        principal_scope=principal.scope.role if principal.via == "user" else principal.scope.label,
        can_write=principal.scope >= Permission.WRITE,
        can_logout=principal.via in ("session", "user"),
        environments=_switcher(request),
        requires_approval=state_of(request).settings.requires_approval,
        **context,
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": _CSP, "Referrer-Policy": "same-origin"}
    return HTMLResponse(html, status, headers=headers)


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A dashboard page from ``template``, for page modules beside this one
    (:mod:`flagstaff.http.changes_ui`): the layout's context, headers and access check included."""
    return _render(request, template, status, **context)


def _switcher(request: Request) -> list[dict[str, Any]]:
    """The header's environment links: those the caller may read (none with one environment)."""
    raw = auth.identify(request)
    envs = environments.environments_of(request)
    readable = {name: raw.level_in(name) is not None for name in envs.names}
    return environments.switcher(request, readable)


def _last_changes(state: ServerState, names: Iterable[str]) -> dict[str, HistoryEntry]:
    """The newest history entry of each flag (one history read per flag)."""
    out: dict[str, HistoryEntry] = {}
    for name in names:
        entries = state.store.history(name, limit=1)
        if entries:
            out[name] = entries[0]
    return out


def _views(state: ServerState, records: Mapping[str, Record]) -> list[FlagView]:
    last = _last_changes(state, records)
    now = time.time()
    days = state.settings.stale_days
    return [flag_view(records[n], last.get(n), now=now, stale_days=days) for n in sorted(records)]


def dashboard(request: Request) -> HTMLResponse:
    auth.require(request, Permission.READ)
    state = state_of(request)
    query = Query.parse(request.query_params)
    filters = Filters(query.q, query.state, query.kind, query.owner, query.tag)
    records = state.store.load().records
    flags = {n: r for n, r in records.items() if not is_segment_key(n)}
    now = time.time()
    days = state.settings.stale_days
    listed = list_page(flags, query, lambda names: _last_changes(state, names), now=now, stale_days=days)
    # Up to one page of flags, every row is in the page (filtered as you type); past it,
    # the server filters and pages, and only the page's rows are built (flagstaff.http.listing).
    paged = len(flags) > PAGE_SIZE
    names = listed.names if paged else tuple(sorted(flags))
    views = _views(state, {n: flags[n] for n in names})
    return _render(
        request,
        "dashboard.html",
        nav="flags",
        flags=views,
        shown=set(listed.names),
        total=listed.total,
        stale_count=sum(f.stale for f in views) if not paged else 0,
        filters=filters,
        listing=listed,
        query=query,
        paged=paged,
        owners=list(listed.owners),
        tags=list(listed.tags),
        kinds=[k.value for k in Kind],
        bad_documents=_bad_documents(state),
        usage=_usage(state),
    )


def _usage(state: ServerState) -> UsageTable | None:
    """The last 24 hours of flag usage in the server's event store (None: no store, no
    usage ever reported, or a store that cannot be read: the column is left out)."""
    if state.events_db is None:
        return None
    try:
        usage = read_usage(state.events_db, since=time.time() - DAY)
    except sqlite3.Error as exc:
        log.warning("cannot read flag usage from %s: %s", state.events_db, exc)
        return None
    return usage if usage is not None and usage.first is not None else None


def _bad_documents(state: ServerState) -> list[tuple[str, str]]:
    """The documents the server's client skipped (it serves their last good version), with why."""
    invalid = state.client.status().invalid
    return [(printable_text(name), printable_text(invalid[name])) for name in sorted(invalid)]


def flag_page(request: Request) -> Response:
    auth.require(request, Permission.READ)
    state = state_of(request)
    name = request.path_params["name"]
    if is_segment_key(name):  # a segment's key (a link from the changes page): its own page
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{root}/segments/{quote(segment_name(name), safe='')}", status_code=303)
    record = state.store.get(name)
    if record is None:
        return _render(request, "missing.html", 404, nav="flags", name=name)
    entries = state.store.history(name, limit=_HISTORY_LIMIT)
    view = flag_view(
        record, entries[0] if entries else None, now=time.time(), stale_days=state.settings.stale_days
    )
    history = [change_view(e, record) for e in entries]
    q = request.query_params
    members = {
        kind: member_page(kind, items, q.get(f"{kind}_page"))
        for kind, items in (("users", view.users), ("groups", view.groups))
    }
    inline = len(record.raw.encode("utf-8", "surrogateescape")) <= INLINE_DOCUMENT
    results, results_note = _results(state, name) if view.experiment else (None, None)
    return _render(
        request,
        "flag.html",
        nav="flags",
        f=view,
        history=history,
        show_flag=False,
        members=members,
        inline_document=inline,
        document_bytes=len(record.raw.encode("utf-8", "surrogateescape")),
        results=results,
        results_note=results_note,
        guard=guard_view(state.guard, name, view.document),
        operators=list(OPERATORS),
        segment_names=sorted(
            segment_name(k) for k in state.store.load().records if is_segment_key(k) and not is_part_key(k)
        ),
    )


def _results(state: ServerState, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """The experiment's results for its flag page (the report, its plots as inline SVG), or
    why there are none (no event store, no exposures yet, no stats extra): the page never fails
    for want of a report."""
    # Imported here: the report needs numpy and scipy (the stats extra), the dashboard does not.
    from flagstaff.http.api._common import ApiError
    from flagstaff.http.api.report import experiment_report

    try:
        r = experiment_report(state, name)
    except ApiError as exc:
        return None, str(exc.detail)
    from flagstaff.plots import interval_svg
    from flagstaff.report import counts_plot, report_dict

    data = report_dict(r)
    # plots.py escapes every text it draws, so its SVG is safe to inline unescaped.
    plots = [
        Markup(interval_svg(m.comparisons, title=f"{m.name}: relative lift vs {r.control}"))
        for m in r.result.metrics
    ]
    return {"data": data, "intervals": plots, "counts": Markup(counts_plot(r))}, None


def changes_page(request: Request) -> HTMLResponse:
    auth.require(request, Permission.READ)
    state = state_of(request)
    records = state.store.load().records
    entries = state.store.history(None, limit=_HISTORY_LIMIT * 2)
    # A large segment's parts (flagstaff.parts) change with its head, which is listed.
    history = [change_view(e, records.get(e.name)) for e in entries if not is_part_key(e.name)]
    return _render(request, "changes.html", nav="changes", history=history, show_flag=True)


def segments_page(request: Request) -> HTMLResponse:
    auth.require(request, Permission.READ)
    state = state_of(request)
    records = state.store.load().records
    users = segment_users(records)
    keys = sorted(k for k in records if is_segment_key(k) and not is_part_key(k))
    last = _last_changes(state, keys)
    views = [segment_view(records[k], last.get(k), users.get(segment_name(k), [])) for k in keys]
    return _render(request, "segments.html", nav="segments", segments=views)


def segment_page(request: Request) -> HTMLResponse:
    auth.require(request, Permission.READ)
    state = state_of(request)
    key = segment_key(request.path_params["name"])
    records = state.store.load().records
    record = None if is_part_key(key) else records.get(key)  # a part is no segment
    if record is None:
        return _render(request, "segment_missing.html", 404, nav="segments", name=segment_name(key))
    name = segment_name(key)
    entries = state.store.history(key, limit=_HISTORY_LIMIT)
    view = segment_view(record, entries[0] if entries else None, segment_users(records).get(name, []))
    size = len(record.raw.encode("utf-8", "surrogateescape"))
    return _render(
        request,
        "segment.html",
        nav="segments",
        s=view,
        history=[change_view(e, record) for e in entries],
        show_flag=False,
        inline_document=size <= INLINE_DOCUMENT,
        document_bytes=size,
        operators=list(OPERATORS),
    )


def playground(request: Request) -> HTMLResponse:
    """``/playground``: every flag's decision for one context (:mod:`flagstaff.http.playground`)."""
    return _render(request, "playground.html", **playground_context(request))


def compare_page(request: Request) -> HTMLResponse:
    """``/flags/{name}/compare``: two versions of a flag (:mod:`flagstaff.http.compare`)."""
    return _render(request, "compare.html", **compare_context(request))


def routes() -> list[BaseRoute]:
    """The dashboard's routes, for :func:`flagstaff.http.app.create_app`."""
    return [
        Route("/", dashboard, methods=["GET"], name="ui_dashboard"),
        Route("/flags/{name:str}", flag_page, methods=["GET"], name="ui_flag"),
        Route("/flags/{name:str}/compare", compare_page, methods=["GET"], name="ui_compare"),
        Route("/playground", playground, methods=["GET"], name="ui_playground"),
        Route("/changes", changes_page, methods=["GET"], name="ui_changes"),
        Route("/segments", segments_page, methods=["GET"], name="ui_segments"),
        Route("/segments/{name:str}", segment_page, methods=["GET"], name="ui_segment"),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]
