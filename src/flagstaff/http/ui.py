"""The dashboard: server-rendered pages for incidents and rollouts.

Three pages, each rendered by Jinja2 from the store as it is now:

* ``/``: every flag with its state at a glance (on, off, killed, partial,
  invalid), rollout, owner, tags, last change and a kill switch; search and
  filters (``?q=&state=&kind=&owner=&tag=``; ``kind=stale`` lists temporary
  flags unchanged for longer than ``Settings.stale_days``);
* ``/flags/{name}``: one flag: kill switch, percentage, users and groups, the
  experiment editor, the JSON document, and its history with diffs and rollback;
* ``/changes``: recent changes to every flag.

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

import contextlib
import datetime as dt
import difflib
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from flagstaff.errors import ValidationError
from flagstaff.http import api, auth
from flagstaff.http.tokens import Scope
from flagstaff.model import Flag, parse_flag
from flagstaff.stores.base import HistoryEntry, Record

if TYPE_CHECKING:
    from flagstaff.http.app import ServerState

__all__ = ["ChangeView", "FlagView", "flag_view", "routes"]

_HERE = Path(__file__).parent
_TEMPLATES = _HERE / "templates"
_STATIC = _HERE / "static"
_HISTORY_LIMIT = 50
_DAY = 86400.0

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class ExperimentView:
    """An experiment as its document states it (controls only if written)."""

    experiment_id: int | None
    enabled: bool
    variants: tuple[tuple[str, str], ...]  # (name, weight as typed), document order
    eligibility: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlagView:
    """One flag as the pages show it."""

    name: str
    version: int
    document: Any
    document_text: str
    state: str  # "on" | "off" | "partial" | "invalid"
    killed: bool
    percentage: float | None
    description: str | None
    owner: str | None
    kind: str | None
    tags: tuple[str, ...]
    selectors: tuple[str, ...]
    schedule: str | None  # "from ... until ...", UTC
    variants: tuple[str, ...]
    users: tuple[str, ...]
    groups: tuple[str, ...]
    experiment: ExperimentView | None
    updated_at: float | None
    updated_by: str | None  # who, with which token
    updated_actor: str | None  # who
    stale: bool
    idle_days: int
    problem: str | None

    @property
    def search_text(self) -> str:
        """What the search box matches, lower-cased: name, description, owner, tags."""
        parts = [self.name, self.description or "", self.owner or "", *self.tags]
        return " ".join(parts).lower()


@dataclass(frozen=True, slots=True)
class DiffLine:
    text: str
    css: str  # "add", "del" or ""


@dataclass(frozen=True, slots=True)
class ChangeView:
    """One history entry as the pages show it."""

    name: str
    version: int | None
    at: float
    author: str | None
    out_of_band: bool
    summary: str
    diff: tuple[DiffLine, ...]
    can_rollback: bool
    is_current: bool


@dataclass(frozen=True, slots=True)
class Filters:
    """The dashboard's filters, from the query string."""

    q: str = ""
    state: str = ""
    kind: str = ""
    owner: str = ""
    tag: str = ""

    def admits(self, f: FlagView) -> bool:
        words = self.q.lower().split()
        text = f.search_text
        return (
            all(w in text for w in words)
            and (not self.state or f.state == self.state)
            and (not self.kind or (f.stale if self.kind == "stale" else f.kind == self.kind))
            and (not self.owner or f.owner == self.owner)
            and (not self.tag or self.tag in f.tags)
        )


def flag_view(record: Record, last: HistoryEntry | None, *, now: float, stale_days: float) -> FlagView:
    """Everything the pages show about one stored flag (the API's summary, plus
    what the flag page edits: users, groups, the experiment)."""
    summary = api.flag_summary(record, last, stale_days=stale_days, now=now)
    document = summary["document"]
    flag: Flag | None = None
    with contextlib.suppress(ValidationError):
        flag = parse_flag(record.name, document)
    obj = document if isinstance(document, dict) else {}
    updated_at: float | None = summary["updated_at"]
    problems = summary.get("problems") or []
    return FlagView(
        name=record.name,
        version=record.version,
        document=document,
        document_text=record.raw if flag is None and isinstance(document, str) else _pretty_doc(document),
        state=summary["state"],
        killed=isinstance(document, dict) and _killed(document),
        percentage=summary["percentage"],
        description=summary["description"],
        owner=summary["owner"],
        kind=summary["kind"],
        tags=tuple(summary["tags"]),
        selectors=flag.selectors if flag else (),
        schedule=_schedule_text(flag),
        variants=flag.variants if flag else (),
        users=tuple(str(u) for u in obj.get("users", []) if isinstance(u, str | int)),
        groups=tuple(str(g) for g in obj.get("groups", []) if isinstance(g, str)),
        experiment=_experiment_view(obj.get("experiment"), flag),
        updated_at=updated_at,
        updated_by=_who(last.author) if last else None,
        updated_actor=summary["updated_by"],
        stale=summary["stale"],
        idle_days=int((now - updated_at) // _DAY) if updated_at else 0,
        problem="; ".join(f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in problems)
        or None,
    )


def _schedule_text(flag: Flag | None) -> str | None:
    if flag is None or flag.schedule is None:
        return None
    start, end = flag.schedule.start, flag.schedule.end
    parts = ([f"from {_iso(start)}"] if start is not None else []) + (
        [f"until {_iso(end)}"] if end is not None else []
    )
    return " ".join(parts)


def _problem_text(problem: Mapping[str, str]) -> str:
    return f"{problem['path']}: {problem['message']}" if problem["path"] else problem["message"]


def _pretty_doc(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _experiment_view(raw: Any, flag: Flag | None) -> ExperimentView | None:
    if not isinstance(raw, dict) or flag is None or flag.experiment is None:
        return None
    variants = raw.get("variants")
    pairs = (
        tuple((str(k), _number_text(v)) for k, v in variants.items()) if isinstance(variants, dict) else ()
    )
    exp_id = raw.get("experiment_id")
    return ExperimentView(
        experiment_id=exp_id if isinstance(exp_id, int) and not isinstance(exp_id, bool) else None,
        enabled=raw.get("enabled", True) is not False,
        variants=pairs,
        eligibility=flag.experiment.eligibility,
    )


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _who(author: str | None) -> str | None:
    """A history author for display: who, and with which token."""
    parts = api.parse_author(author)
    if parts["out_of_band"]:
        return None
    token = parts["token_id"]
    return f"{parts['actor']} (token {token})" if token else str(parts["actor"])


def change_view(entry: HistoryEntry, current: Record | None) -> ChangeView:
    """One history entry: a summary, a line diff of before and after, and
    whether rolling back to it would change anything."""
    before, after = _pretty(entry.before), _pretty(entry.after)
    lines = [
        DiffLine(line, "add" if line.startswith("+") else "del" if line.startswith("-") else "")
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2)
        if not line.startswith(("---", "+++"))
    ]
    restorable = entry.after is not None and entry.version is not None
    is_current = current is not None and entry.version == current.version
    same = current is not None and entry.after is not None and _same(entry.after, current.raw)
    return ChangeView(
        name=entry.name,
        version=entry.version,
        at=entry.at,
        author=_who(entry.author),
        out_of_band=bool(api.parse_author(entry.author)["out_of_band"]),
        summary=_summary(entry),
        diff=tuple(lines),
        can_rollback=restorable and not is_current and not same,
        is_current=is_current,
    )


def _pretty(raw: str | None) -> str:
    if raw is None:
        return ""
    value = api.document_or_text(raw)
    if isinstance(value, str) and value == raw:
        return raw
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _same(a: str, b: str) -> bool:
    return _pretty(a) == _pretty(b)


def _summary(entry: HistoryEntry) -> str:
    """A one-line account of a change: the kill switch first, else the paths that changed."""
    if entry.before is None:
        return "created"
    if entry.after is None:
        return "deleted"
    old, new = api.document_or_text(entry.before), api.document_or_text(entry.after)
    if _killed(new) and not _killed(old):
        return "killed"
    changes = api.json_changes(old, new)
    if not changes:
        return "rewritten, same document"
    head = "kill switch removed; " if _killed(old) and not _killed(new) else ""
    parts = [
        (f"{c['path']}: " if c["path"] else "") + f"{_show(c['before'])} → {_show(c['after'])}"
        for c in changes[:3]
        if not (head and c["path"] == "enabled")
    ]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return head + "; ".join(parts) + more


def _killed(document: Any) -> bool:
    switch = document.get("enabled") if isinstance(document, dict) else document
    return switch is False or switch == "off"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- rendering


def _ago(ts: float) -> str:
    seconds = max(0.0, time.time() - ts)
    for unit, size in (("day", _DAY), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
_env.filters.update(ago=_ago, iso=_iso, pct=_pct)


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.flagstaff
    return state


def _render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    principal = auth.require(request, Scope.READ)
    root = str(request.scope.get("root_path", "")).rstrip("/")

    def static_url(name: str) -> str:
        return f"{root}/static/{name}?v={_VERSIONS.get(name, '0')}"

    html = _env.get_template(template).render(
        root=root,
        csrf=auth.csrf_token(request),
        events_url=f"{root}/api/v1/events",
        static_url=static_url,
        principal_name=principal.name,
        principal_scope=principal.scope.label,
        can_write=principal.scope >= Scope.WRITE,
        can_logout=principal.via == "session",
        **context,
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": _CSP, "Referrer-Policy": "same-origin"}
    return HTMLResponse(html, status, headers=headers)


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
    auth.require(request, Scope.READ)
    state = _state(request)
    q = request.query_params
    filters = Filters(
        q.get("q", ""), q.get("state", ""), q.get("kind", ""), q.get("owner", ""), q.get("tag", "")
    )
    flags = _views(state, state.store.load().records)
    shown = {f.name for f in flags if filters.admits(f)}
    return _render(
        request,
        "dashboard.html",
        nav="flags",
        flags=flags,
        shown=shown,
        total=len(flags),
        stale_count=sum(f.stale for f in flags),
        filters=filters,
        owners=sorted({f.owner for f in flags if f.owner}),
        tags=sorted({t for f in flags for t in f.tags}),
    )


def flag_page(request: Request) -> HTMLResponse:
    auth.require(request, Scope.READ)
    state = _state(request)
    name = request.path_params["name"]
    record = state.store.get(name)
    if record is None:
        return _render(request, "missing.html", 404, nav="flags", name=name)
    entries = state.store.history(name, limit=_HISTORY_LIMIT)
    view = flag_view(
        record, entries[0] if entries else None, now=time.time(), stale_days=state.settings.stale_days
    )
    history = [change_view(e, record) for e in entries]
    return _render(request, "flag.html", nav="flags", f=view, history=history, show_flag=False)


def changes_page(request: Request) -> HTMLResponse:
    auth.require(request, Scope.READ)
    state = _state(request)
    records = state.store.load().records
    entries = state.store.history(None, limit=_HISTORY_LIMIT * 2)
    history = [change_view(e, records.get(e.name)) for e in entries]
    return _render(request, "changes.html", nav="changes", history=history, show_flag=True)


def routes() -> list[BaseRoute]:
    """The dashboard's routes, for :func:`flagstaff.http.app.create_app`."""
    return [
        Route("/", dashboard, methods=["GET"], name="ui_dashboard"),
        Route("/flags/{name:str}", flag_page, methods=["GET"], name="ui_flag"),
        Route("/changes", changes_page, methods=["GET"], name="ui_changes"),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
    ]
