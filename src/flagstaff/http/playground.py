"""``/playground``: what does this user get? Every flag's decision for one context.

A GET form (so a result is a link to share): ``user``, ``groups`` (comma or space
separated), ``attrs`` (one ``key=value`` a line; a value that reads as JSON is JSON,
else text), ``cookie``, ``logged_in``. The decisions come from the server's client
snapshot, one scope (one snapshot, one clock reading) for all of them, exactly as
``POST /api/v1/evaluate`` gives them: value, variant, reason and rule. When the server
has an event store (``Settings.events_db``) the page offers the keys most recently
exposed, read from it read-only.

Bad input (an attribute line without ``=``, a key twice) is shown as a message with
the form kept; it never fails the page.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from flagstaff.context import Context
from flagstaff.http import auth
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission

__all__ = ["Answer", "PlaygroundForm", "decide_all", "parse_form", "playground_context", "recent_keys"]

RECENT_KEYS = 20


@dataclass(frozen=True, slots=True)
class PlaygroundForm:
    """The playground's query string, as typed."""

    user: str = ""
    groups: str = ""
    attrs: str = ""
    cookie: str = ""
    logged_in: bool = False

    @property
    def empty(self) -> bool:
        return not (self.user or self.groups or self.attrs or self.cookie or self.logged_in)


@dataclass(frozen=True, slots=True)
class Answer:
    """One flag's decision for the context, as the page shows it."""

    flag: str
    enabled: bool
    value: str  # JSON
    variant: str | None
    reason: str
    rule: str | None
    error: str | None


def _attribute(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_form(form: PlaygroundForm) -> tuple[Context | None, list[str]]:
    """The context the form describes, or ``None`` and the problems (one per bad line)."""
    problems: list[str] = []
    attributes: dict[str, Any] = {}
    for number, line in enumerate(form.attrs.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"attributes line {number}: write key=value, not {line.strip()!r}")
        elif key in attributes:
            problems.append(f"attributes line {number}: {key!r} is given twice")
        else:
            attributes[key] = _attribute(value.strip())
    if problems:
        return None, problems
    groups = tuple(g for g in form.groups.replace(",", " ").split() if g)
    try:
        context = Context(
            user_id=form.user.strip() or None,
            groups=frozenset(groups),
            cookie_id=form.cookie.strip() or None,
            logged_in=form.logged_in or bool(form.user.strip()),
            attributes=attributes,
        )
    except (TypeError, ValueError) as exc:
        return None, [str(exc)]
    return context, []


def decide_all(state: ServerState, context: Context) -> tuple[int | None, list[Answer]]:
    """Every flag's decision for ``context`` from one scope of the server's client."""
    scope = state.client.scope(context)
    flags = scope.flags
    answers = []
    for name in sorted(flags):
        decision = scope.evaluate(name)
        value = flags[name].value_of(decision)
        answers.append(
            Answer(
                name,
                decision.enabled,
                json.dumps(value, ensure_ascii=False),
                decision.variant,
                decision.reason.value,
                decision.rule,
                decision.error,
            )
        )
    return scope.revision, answers


def recent_keys(path: str | None, limit: int = RECENT_KEYS) -> list[str]:
    """The keys most recently exposed, newest first, from the event store at ``path``
    (read-only; an absent or unreadable file has none)."""
    if path is None or not os.path.exists(path):
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute(
            "SELECT key FROM flagstaff_exposures WHERE key IS NOT NULL "
            "GROUP BY key ORDER BY MAX(time) DESC LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.Error:  # no table yet: nothing ingested
        return []
    finally:
        db.close()
    return [str(r[0]) for r in rows]


def playground_context(request: Request) -> dict[str, Any]:
    """What ``playground.html`` shows for this request (:mod:`flagstaff.http.ui` renders it)."""
    auth.require(request, Permission.READ)
    state = state_of(request)
    q = request.query_params
    form = PlaygroundForm(
        q.get("user", ""),
        q.get("groups", ""),
        q.get("attrs", ""),
        q.get("cookie", ""),
        q.get("logged_in", "") in ("1", "on", "true"),
    )
    context, problems = parse_form(form)
    revision: int | None = None
    answers: list[Answer] = []
    if context is not None and not form.empty:
        revision, answers = decide_all(state, context)
    return {
        "nav": "playground",
        "form": form,
        "problems": problems,
        "answers": answers,
        "revision": revision,
        "enabled_count": sum(a.enabled for a in answers),
        "recent": recent_keys(state.events_db),
    }
