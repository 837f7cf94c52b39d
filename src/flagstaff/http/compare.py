"""``/flags/{name}/compare?a=V1&b=V2``: any two versions of a flag, side by side or unified.

The versions come from the flag's history (each entry's ``after`` is the document at
that version), shown indented with sorted keys so that a key moved is no change. A
version not in the history (never written, or past ``HISTORY_LIMIT`` entries back) is
named in a message, never an error page. Without ``a`` and ``b`` the page compares
the version before the current one with the current one.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from flagstaff.http import auth
from flagstaff.http.present import document_or_text, parse_author
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission
from flagstaff.stores.base import HistoryEntry

__all__ = ["HISTORY_LIMIT", "Row", "VersionInfo", "compare_context", "side_by_side", "unified"]

HISTORY_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version a flag had: when, who, and why."""

    version: int
    at: float
    actor: str | None
    comment: str | None


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the side-by-side view: left and right (number and text), and the change:
    ``""`` same, ``del`` only left, ``add`` only right, ``chg`` both, different."""

    left_no: int | None
    left: str
    right_no: int | None
    right: str
    css: str


def _pretty(raw: str | None) -> str:
    value = document_or_text(raw)
    if isinstance(value, str) and value == raw:
        return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def side_by_side(a: str, b: str) -> list[Row]:
    """``a`` and ``b`` line by line, aligned (difflib's matching blocks)."""
    left, right = a.splitlines(), b.splitlines()
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows += [
                Row(i + 1, left[i], j + 1, right[j], "")
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
            continue
        n = max(i2 - i1, j2 - j1)
        for k in range(n):
            i, j = i1 + k, j1 + k
            has_left, has_right = i < i2, j < j2
            css = "chg" if has_left and has_right else "del" if has_left else "add"
            rows.append(
                Row(
                    i + 1 if has_left else None,
                    left[i] if has_left else "",
                    j + 1 if has_right else None,
                    right[j] if has_right else "",
                    css,
                )
            )
    return rows


def unified(a: str, b: str, label_a: str, label_b: str) -> list[tuple[str, str]]:
    """A unified diff of ``a`` and ``b`` as (line, css) pairs (css ``add``, ``del`` or ``""``)."""
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), label_a, label_b, lineterm="", n=3)
    out = []
    for line in lines:
        css = (
            ""
            if line.startswith(("---", "+++"))
            else "add"
            if line[:1] == "+"
            else "del"
            if line[:1] == "-"
            else ""
        )
        out.append((line, css))
    return out


def _version(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def compare_context(request: Request) -> dict[str, Any]:
    """What ``compare.html`` shows for this request (:mod:`flagstaff.http.ui` renders it)."""
    auth.require(request, Permission.READ)
    state = state_of(request)
    name = request.path_params["name"]
    entries = state.store.history(name, limit=HISTORY_LIMIT)
    docs: dict[int, HistoryEntry] = {}
    for entry in entries:  # newest first: the first entry seen for a version is its write
        if entry.version is not None and entry.after is not None and entry.version not in docs:
            docs[entry.version] = entry
    versions = [
        VersionInfo(v, e.at, parse_author(e.author)["actor"], parse_author(e.author)["comment"])
        for v, e in sorted(docs.items(), reverse=True)
    ]
    q = request.query_params
    view = "unified" if q.get("view") == "unified" else "split"
    a, b = _version(q.get("a")), _version(q.get("b"))
    if a is None and b is None and versions:
        b = versions[0].version
        a = versions[1].version if len(versions) > 1 else b
    problems = [
        f"{label}: {name} has no version {q.get(label)!r} in its history"
        for label, v in (("a", a), ("b", b))
        if q.get(label) is not None and (v is None or v not in docs)
    ]
    context: dict[str, Any] = {
        "nav": "flags",
        "name": name,
        "versions": versions,
        "a": a,
        "b": b,
        "view": view,
        "problems": problems,
        "rows": [],
        "lines": [],
        "same": False,
        "info": {v.version: v for v in versions},
    }
    if a in docs and b in docs and not problems:
        assert a is not None and b is not None
        text_a, text_b = _pretty(docs[a].after), _pretty(docs[b].after)
        context["same"] = text_a == text_b
        if view == "split":
            context["rows"] = side_by_side(text_a, text_b)
        else:
            context["lines"] = unified(text_a, text_b, f"version {a}", f"version {b}")
    return context
