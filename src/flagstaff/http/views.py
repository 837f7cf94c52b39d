"""What the dashboard shows: frozen views of flags and of changes, built from
stored records and history entries (no request, no template).

A view holds everything a page prints about one flag (:func:`flag_view`: the
API's summary from :mod:`flagstaff.http.present`, plus what the flag page edits:
users, groups, the experiment) or one history entry (:func:`change_view`: a
one-line summary, a diff, whether rolling back to it would change anything).

A flag page stays small however large the flag: users and groups are shown a
page at a time (:func:`member_page`), a history diff is cut after
``DIFF_LINES`` lines, and a document past ``INLINE_DOCUMENT`` bytes is not put
in the page (a 200,000-user flag rendered 57 MB of HTML before).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flagstaff.document import is_segment_key, segment_name
from flagstaff.http.present import (
    compiled,
    document_or_text,
    flag_summary,
    json_changes,
    parse_author,
    segment_summary,
)
from flagstaff.model import Flag
from flagstaff.stores.base import HistoryEntry, Record

__all__ = [
    "DAY",
    "DIFF_LINES",
    "INLINE_DOCUMENT",
    "MEMBERS_PER_PAGE",
    "ChangeView",
    "DiffLine",
    "ExperimentView",
    "Filters",
    "FlagView",
    "MemberPage",
    "RuleView",
    "SegmentView",
    "TargetingView",
    "change_view",
    "flag_view",
    "iso",
    "member_page",
    "segment_view",
    "targeting_view",
]

DAY = 86400.0
MEMBERS_PER_PAGE = 100
DIFF_LINES = 200
INLINE_DOCUMENT = 256 * 1024


@dataclass(frozen=True, slots=True)
class ExperimentView:
    """An experiment as its document states it (controls only if written)."""

    experiment_id: int | None
    enabled: bool
    variants: tuple[tuple[str, str], ...]  # (name, weight as typed), document order
    eligibility: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RuleView:
    """One targeting rule as text: its conditions (all must hold) and what it serves."""

    index: int
    name: str | None
    conditions: tuple[str, ...]  # "groups: beta", "plan in [\"pro\"]"
    segments: tuple[str, ...]  # member of any (linked to their pages)
    not_segments: tuple[str, ...]  # member of none
    serve: str


@dataclass(frozen=True, slots=True)
class TargetingView:
    """The keys of a flag that decide beyond the classic selectors, in evaluation order:
    deny, prerequisites, targeting rules, default; and the values served. Text only:
    the page escapes it."""

    deny: tuple[str, ...]
    deny_segments: tuple[str, ...]
    prerequisites: tuple[tuple[str | None, str], ...]  # (flag, "serves variant b")
    bucket_by: str | None
    rules: tuple[RuleView, ...]
    default: str | None
    values: tuple[tuple[str, str], ...]  # (variant or on/off, the value as JSON)

    @property
    def empty(self) -> bool:
        return not (
            self.deny
            or self.deny_segments
            or self.prerequisites
            or self.bucket_by
            or self.rules
            or self.default is not None
            or self.values
        )


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
    schedule: str | None  # "scheduled from ... until ...", "ramps 1% at ... → 5% at ..., now at 1%"; UTC
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
    targeting: TargetingView
    archived: bool = False  # retired: off for everyone, kept to restore

    @property
    def search_text(self) -> str:
        """What the search box matches, lower-cased: name, description, owner, tags."""
        parts = [self.name, self.description or "", self.owner or "", *self.tags]
        return " ".join(parts).lower()


@dataclass(frozen=True, slots=True)
class MemberPage:
    """One page of a flag's users or groups (``page`` counts from 1)."""

    kind: str  # "users" | "groups"
    items: tuple[str, ...]
    total: int
    page: int
    pages: int
    start: int  # 1-based index of the first item shown (0 when none)

    @property
    def end(self) -> int:
        return self.start + len(self.items) - 1 if self.items else 0


def member_page(kind: str, members: tuple[str, ...], requested: str | None) -> MemberPage:
    """Page ``requested`` (a query parameter; bad or out of range: the nearest page)."""
    pages = max(1, -(-len(members) // MEMBERS_PER_PAGE))
    page = int(requested) if requested is not None and requested.isdigit() else 1
    page = min(max(page, 1), pages)
    first = (page - 1) * MEMBERS_PER_PAGE
    items = members[first : first + MEMBERS_PER_PAGE]
    return MemberPage(kind, items, len(members), page, pages, first + 1 if items else 0)


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
    diff_more: int  # diff lines not shown
    can_rollback: bool
    is_current: bool
    current_version: int | None  # what a rollback from this page is based on (If-Match)
    segment: str | None = None  # the segment's name when the entry is a segment's
    comment: str | None = None  # why, as written with the change

    @property
    def link(self) -> str:
        """The page of what changed, below the dashboard's root."""
        if self.segment is not None:
            return f"/segments/{quote(self.segment, safe='')}"
        return f"/flags/{quote(self.name, safe='')}"


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
    summary = flag_summary(record, last, stale_days=stale_days, now=now)
    document = summary["document"]
    parsed = compiled(record.name, record.raw)
    flag = parsed if isinstance(parsed, Flag) else None
    obj = document if isinstance(document, dict) else {}
    updated_at: float | None = summary["updated_at"]
    problems = summary.get("problems") or []
    return FlagView(
        name=record.name,
        version=record.version,
        document=document,
        # document_or_text made the text printable (bad bytes and control characters escaped).
        document_text=(
            document
            if flag is None and isinstance(document, str)
            # A document too large to put in the page is never shown: skip the (slow) indenting.
            else _pretty_doc(document)
            if len(record.raw) <= INLINE_DOCUMENT
            else ""
        ),
        state=summary["state"],
        killed=isinstance(document, dict) and _killed(document),
        percentage=summary["percentage"],
        description=summary["description"],
        owner=summary["owner"],
        kind=summary["kind"],
        tags=tuple(summary["tags"]),
        selectors=flag.selectors if flag else (),
        schedule=_schedule_text(flag, now),
        variants=flag.variants if flag else (),
        users=tuple(str(u) for u in obj.get("users", []) if isinstance(u, str | int)),
        groups=tuple(str(g) for g in obj.get("groups", []) if isinstance(g, str)),
        experiment=_experiment_view(obj.get("experiment"), flag),
        updated_at=updated_at,
        updated_by=_who(last.author) if last else None,
        updated_actor=summary["updated_by"],
        stale=summary["stale"],
        idle_days=int((now - updated_at) // DAY) if updated_at else 0,
        problem=_problem_text(problems),
        targeting=targeting_view(document),
        archived=summary["archived"],
    )


def _problem_text(problems: list[dict[str, str]]) -> str | None:
    return "; ".join(f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in problems) or None


# --------------------------------------------------------------------------- targeting


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return (
        tuple(_json_text(v) if not isinstance(v, str) else v for v in value)
        if isinstance(value, list)
        else ()
    )


def _clause_text(clause: Any) -> str:
    """``plan in ["pro"]``; ``not (…)`` when negated; ``all of (…)`` for a group; else the JSON."""
    if isinstance(clause, dict) and set(clause) <= {"all"} and isinstance(clause.get("all"), list):
        return "all of (" + "; ".join(_clause_text(c) for c in clause["all"]) + ")"
    if isinstance(clause, dict) and "attribute" in clause and "op" in clause:
        text = f"{clause['attribute']} {clause['op']} {_json_text(clause.get('value'))}"
        return f"not ({text})" if clause.get("negate") is True else text
    return _json_text(clause)


def _bucket_text(value: Any) -> str:
    if isinstance(value, list):
        return " or ".join(str(v) for v in value) + " (the first present)"
    return str(value)


def _serve_text(serve: Any) -> str:
    """What a serve gives, in words: on, off, a variant, a percentage, a split."""
    if serve is True or serve == "on":
        return "on"
    if serve is False or serve == "off":
        return "off"
    if not isinstance(serve, dict):
        return _json_text(serve)
    by = f", bucketed by {_bucket_text(serve['bucket_by'])}" if "bucket_by" in serve else ""
    if "variant" in serve:
        return f"variant {serve['variant']}{by}"
    if "percentage" in serve:
        return f"on for {_number_text(serve['percentage'])}%{by}"
    if isinstance(serve.get("variants"), dict):
        split = ", ".join(f"{k} {_number_text(v)}%" for k, v in serve["variants"].items())
        return f"variants {split}{by}"
    return _json_text(serve)


def _prerequisite(item: Any) -> tuple[str | None, str]:
    """``(flag name, what it must serve)``; ``(None, its JSON)`` for what is not a prerequisite."""
    if isinstance(item, str):
        return item, "is on"
    if not isinstance(item, dict) or not isinstance(item.get("flag"), str):
        return None, _json_text(item)
    flag = item["flag"]
    if "variant" in item:
        return flag, f"serves variant {item['variant']}"
    if isinstance(item.get("variants"), list):
        return flag, f"serves one of {', '.join(map(str, item['variants']))}"
    if item.get("enabled") is False:
        return flag, "is off"
    return flag, "is on"


def _rule_view(index: int, rule: Any) -> RuleView:
    if not isinstance(rule, dict):
        return RuleView(index, None, (_json_text(rule),), (), (), "?")
    conditions: list[str] = []
    for key in ("users", "groups"):
        if key in rule:
            conditions.append(f"{key}: {', '.join(_names(rule[key]))}")
    when = rule.get("when")
    if isinstance(when, list):
        conditions.extend(_clause_text(c) for c in when)
    elif when is not None:
        conditions.append(f"when {_json_text(when)}")
    name = rule.get("name")
    return RuleView(
        index=index,
        name=name if isinstance(name, str) else None,
        conditions=tuple(conditions),
        segments=_names(rule.get("segments")),
        not_segments=_names(rule.get("not_segments")),
        serve=_serve_text(rule.get("serve")) if "serve" in rule else "?",
    )


def targeting_view(document: Any) -> TargetingView:
    """The deny list, prerequisites, targeting rules, default and values of a document, as text
    (a key that is not the expected shape is shown as its JSON: an invalid flag is still shown)."""
    doc = document if isinstance(document, dict) else {}
    deny = doc.get("deny")
    deny_lines: list[str] = []
    deny_segments: tuple[str, ...] = ()
    if isinstance(deny, dict):
        for key in ("users", "groups"):
            if key in deny:
                deny_lines.append(f"{key}: {', '.join(_names(deny[key]))}")
        rules = deny.get("rules")
        if isinstance(rules, list):
            deny_lines.extend(f"when {_clause_text(c)}" for c in rules)
        deny_segments = _names(deny.get("segments"))
    elif deny is not None:
        deny_lines.append(_json_text(deny))
    prerequisites = doc.get("prerequisites")
    targeting = doc.get("targeting")
    values = doc.get("values")
    return TargetingView(
        deny=tuple(deny_lines),
        deny_segments=deny_segments,
        prerequisites=tuple(_prerequisite(p) for p in prerequisites)
        if isinstance(prerequisites, list)
        else (),
        bucket_by=_bucket_text(doc["bucket_by"]) if "bucket_by" in doc else None,
        rules=tuple(_rule_view(i, r) for i, r in enumerate(targeting)) if isinstance(targeting, list) else (),
        default=_serve_text(doc["default"]) if "default" in doc else None,
        values=tuple((str(k), _json_text(v)) for k, v in values.items()) if isinstance(values, dict) else (),
    )


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True, slots=True)
class SegmentView:
    """One segment as the pages show it."""

    name: str
    key: str
    version: int
    document: Any
    document_text: str
    valid: bool
    description: str | None
    owner: str | None
    tags: tuple[str, ...]
    holdout: bool
    used_by: tuple[str, ...]
    updated_at: float | None
    updated_by: str | None
    problem: str | None


def segment_view(record: Record, last: HistoryEntry | None, used_by: list[str]) -> SegmentView:
    """Everything the pages show about one stored segment (the API's summary)."""
    summary = segment_summary(record, last, used_by)
    document = summary["document"]
    return SegmentView(
        name=summary["name"],
        key=record.name,
        version=record.version,
        document=document,
        document_text=document
        if not summary["valid"] and isinstance(document, str)
        else _pretty_doc(document)
        if len(record.raw) <= INLINE_DOCUMENT
        else "",
        valid=summary["valid"],
        description=summary["description"],
        owner=summary["owner"],
        tags=tuple(summary["tags"]),
        holdout=summary["holdout"],
        used_by=tuple(used_by),
        updated_at=summary["updated_at"],
        updated_by=_who(last.author) if last else None,
        problem=_problem_text(summary["problems"]),
    )


def _schedule_text(flag: Flag | None, now: float) -> str | None:
    """``scheduled from ... until ...``; for a ramp, its steps and the percentage ``now``
    (``ramps 1% at ... → 5% at ..., now at 1%``); both when a flag has both."""
    if flag is None or flag.schedule is None:
        return None
    start, end = flag.schedule.start, flag.schedule.end
    parts = ([f"from {iso(start)}"] if start is not None else []) + (
        [f"until {iso(end)}"] if end is not None else []
    )
    window = "scheduled " + " ".join(parts) if parts else ""
    if flag.ramp is None:
        return window or None
    steps = " → ".join(f"{_number_text(p)}% at {iso(at)}" for at, p in flag.ramp.steps)
    ramp = f"ramps {steps}, now at {_number_text(flag.ramp.percentage(now))}%"
    return f"{window}; {ramp}" if window else ramp


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
    parts = parse_author(author)
    if parts["out_of_band"]:
        return None
    token = parts["token_id"]
    return f"{parts['actor']} (token {token})" if token else str(parts["actor"])


def change_view(entry: HistoryEntry, current: Record | None) -> ChangeView:
    """One history entry: a summary, a line diff of before and after, and
    whether rolling back to it would change anything."""
    size = len(entry.before or "") + len(entry.after or "")
    if size > INLINE_DOCUMENT:
        # Indenting and line-diffing a 200,000-user document costs a second per
        # entry: say what changed per path instead (list items added/removed).
        lines = _large_diff(entry.before, entry.after)
    else:
        before, after = _pretty(entry.before), _pretty(entry.after)
        lines = [
            DiffLine(line, "add" if line.startswith("+") else "del" if line.startswith("-") else "")
            for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=2)
            if not line.startswith(("---", "+++"))
        ]
    # A segment has no rollback route: its page shows the history, an edit restores it.
    restorable = entry.after is not None and entry.version is not None and not is_segment_key(entry.name)
    is_current = current is not None and entry.version == current.version
    same = current is not None and entry.after is not None and _same(entry.after, current.raw)
    return ChangeView(
        name=entry.name,
        version=entry.version,
        at=entry.at,
        author=_who(entry.author),
        out_of_band=bool(parse_author(entry.author)["out_of_band"]),
        summary=_summary(entry),
        diff=tuple(lines[:DIFF_LINES]),
        diff_more=max(0, len(lines) - DIFF_LINES),
        can_rollback=restorable and not is_current and not same,
        is_current=is_current,
        current_version=None if current is None else current.version,
        segment=segment_name(entry.name) if is_segment_key(entry.name) else None,
        comment=parse_author(entry.author)["comment"],
    )


def _pretty(raw: str | None) -> str:
    if raw is None:
        return ""
    value = document_or_text(raw)
    if isinstance(value, str) and value == raw:
        return raw
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _same(a: str, b: str) -> bool:
    return a == b or _canonical(a) == _canonical(b)


def _canonical(raw: str) -> str:
    value = document_or_text(raw)
    return json.dumps(value, sort_keys=True, ensure_ascii=False) if value != raw else raw


def _item_key(item: Any) -> Any:
    if item is None or isinstance(item, str | int | float | bool):
        return (type(item).__name__, item)
    return json.dumps(item, sort_keys=True)


def _list_changes(old: list[Any], new: list[Any]) -> tuple[list[Any], list[Any]]:
    """The items ``old`` lost and ``new`` gained (sets of the items when they hash: user ids do)."""
    try:
        old_set, new_set = set(old), set(new)
        return [i for i in old if i not in new_set], [i for i in new if i not in old_set]
    except TypeError:  # objects in the list
        old_keys, new_keys = {_item_key(i) for i in old}, {_item_key(i) for i in new}
        return (
            [i for i in old if _item_key(i) not in new_keys],
            [i for i in new if _item_key(i) not in old_keys],
        )


def _large_diff(before_raw: str | None, after_raw: str | None) -> list[DiffLine]:
    """A diff of large documents by path: changed values, and the items a list gained or lost."""
    before, after = document_or_text(before_raw), document_or_text(after_raw)
    lines: list[DiffLine] = []
    for change in json_changes(before, after):
        path = change["path"] or "document"
        old, new = change["before"], change["after"]
        if isinstance(old, list) and isinstance(new, list):
            lost, got = _list_changes(old, new)
            lines += [DiffLine(f"-{path}: {_show(i)}", "del") for i in lost]
            lines += [DiffLine(f"+{path}: {_show(i)}", "add") for i in got]
            if not lost and not got:
                lines.append(DiffLine(f" {path}: same items, new order", ""))
        else:
            if old is not None:
                lines.append(DiffLine(f"-{path}: {_show(old)}", "del"))
            if new is not None:
                lines.append(DiffLine(f"+{path}: {_show(new)}", "add"))
    return lines


def _summary(entry: HistoryEntry) -> str:
    """A one-line account of a change: the kill switch first, else the paths that changed."""
    if entry.before is None:
        return "created"
    if entry.after is None:
        return "deleted"
    old, new = document_or_text(entry.before), document_or_text(entry.after)
    if _killed(new) and not _killed(old):
        return "killed"
    changes = json_changes(old, new)
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


def iso(ts: float) -> str:
    """A timestamp as the pages show it: ``2024-05-01 12:00:00 UTC``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
