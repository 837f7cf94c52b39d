"""How flags and their history are shown: the presenters the API and the dashboard share.

Pure functions from stored records and history entries to JSON-ready values:
a flag's summary (the ``Flag`` schema of the OpenAPI document), its state at a
glance, a history entry, the paths where two documents differ, and the author
text the API writes into history read back as actor, token and request. They
read no store; the handlers fetch, these present.

A stored text that is not a valid document is still shown: as its JSON value
when it decodes, else as text made printable (:func:`document_or_text`), and
its summary says ``invalid`` with the problems.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping
from typing import Any

from flagstaff.admin import COMMENT_MARK
from flagstaff.document import is_segment_key, segment_name
from flagstaff.errors import ValidationError
from flagstaff.model import Flag, Kind, Switch, decode_document, encode_document, parse_text, printable_text
from flagstaff.parts import PARTS_KEY
from flagstaff.segments import Segment, parse_segment, parse_segment_text
from flagstaff.stores.base import HistoryEntry, Record

__all__ = [
    "compiled",
    "compiled_segment",
    "document_or_text",
    "flag_state",
    "flag_summary",
    "history_entry",
    "json_changes",
    "parse_author",
    "problems",
    "segment_summary",
    "segment_users",
]

_KINDS = frozenset(k.value for k in Kind)
_AUTHOR = re.compile(r"^(?P<actor>.*) \[token (?P<token>[^,\]]+), request (?P<request>[^\]]+)\]$")


def parse_author(author: str | None) -> dict[str, Any]:
    """Split an author written by the API into actor, token id and request id, and the
    ``comment`` written with the change (:func:`flagstaff.admin.with_comment`; None if none).

    ``author`` is ``None`` for a change made straight in the store (by hand, or
    by another program), which is reported as ``out_of_band``.
    """
    if author is None:
        return {"actor": None, "token_id": None, "request_id": None, "out_of_band": True, "comment": None}
    # A comment (flagstaff.admin.with_comment) follows the first " # ": no actor the API
    # writes has one, as a name with a space and a hash is not a token's or a user's.
    author, mark, comment = author.partition(COMMENT_MARK)
    note = comment if mark else None
    match = _AUTHOR.match(author)
    if match is None:  # the CLI or a program using flagstaff.admin
        return {"actor": author, "token_id": None, "request_id": None, "out_of_band": False, "comment": note}
    token = match["token"]
    return {
        "actor": match["actor"],
        "token_id": None if token == "none" else token,
        "request_id": match["request"],
        "out_of_band": False,
        "comment": note,
    }


def problems(exc: ValidationError) -> list[dict[str, str]]:
    """A validation error's problems as JSON: ``[{"path", "message"}]``."""
    return [{"path": p.path, "message": p.message} for p in exc.problems]


# Remembered by (name, text): listing 1,000 flags parses each only when it changed
# (measured: about 40 ms a listing with it, 65 ms without).
# 16,384: the dashboard lists up to 10,000 flags a request (flagstaff.http.listing) without
# re-parsing them.
@functools.lru_cache(maxsize=16384)
def compiled(name: str, raw: str) -> Flag | ValidationError:
    """The stored text as a flag (:func:`flagstaff.model.parse_text`), or why it is not one."""
    try:
        return parse_text(name, raw)
    except ValidationError as exc:
        return exc


@functools.lru_cache(maxsize=1024)
def compiled_segment(name: str, raw: str) -> Segment | ValidationError:
    """The stored text as a segment (:func:`flagstaff.segments.parse_segment_text`), or why it is not one.

    The head of a segment stored in parts (:mod:`flagstaff.parts`) is compiled without its
    users (for its description, owner, tags and holdout: a page does not compile a million
    members); a client following the store checks its parts (``status().invalid``)."""
    try:
        if PARTS_KEY in raw:
            value = decode_document(raw)
            if isinstance(value, dict) and PARTS_KEY in value and "users" not in value:
                return parse_segment(name, {k: v for k, v in value.items() if k != PARTS_KEY})
        return parse_segment_text(name, raw)
    except ValidationError as exc:
        return exc


def segment_users(records: Mapping[str, Record]) -> dict[str, list[str]]:
    """The flags (sorted) that name each segment, by segment name, from the flags' documents
    (:attr:`flagstaff.model.Flag.segments`); a flag that does not parse names none."""
    users: dict[str, list[str]] = {}
    for key in sorted(records):
        if is_segment_key(key):
            continue
        flag = compiled(key, records[key].raw)
        if isinstance(flag, Flag):
            for name in flag.segments:
                users.setdefault(name, []).append(key)
    return users


def document_or_text(raw: str | None) -> Any:
    """A stored text as its JSON value; text that is not a document stays text (None stays None),
    made printable: bytes that were not UTF-8 and control characters are shown escaped."""
    if raw is None:
        return None
    try:
        return decode_document(raw)
    except ValidationError:
        return printable_text(raw)


def flag_state(flag: Flag | ValidationError) -> str:
    """``on``/``off`` when the flag answers the same for everyone, else ``partial``; ``invalid``."""
    if isinstance(flag, ValidationError):
        return "invalid"
    if flag.archived or flag.switch is Switch.OFF:
        return "off"
    if flag.constant is not None:
        return "on" if flag.constant.enabled else "off"
    return "partial"


def flag_summary(
    record: Record, last: HistoryEntry | None, *, stale_days: float, now: float | None = None
) -> dict[str, Any]:
    """A flag as the API lists it (see the ``Flag`` schema in the OpenAPI document)."""
    flag = compiled(record.name, record.raw)
    document = document_or_text(record.raw)
    meta = document if isinstance(document, dict) else {}
    out: dict[str, Any] = {"name": record.name, "version": record.version, "document": document}
    out["state"] = flag_state(flag)
    if isinstance(flag, Flag):
        out["percentage"] = flag.percentages.get("percentage")
        out["description"] = flag.description
        out["owner"] = flag.owner
        out["kind"] = flag.kind.value if flag.kind else None
        out["tags"] = list(flag.tags)
        out["archived"] = flag.archived
        out["problems"] = []
    else:
        out["percentage"] = None
        out["description"] = meta.get("description") if isinstance(meta.get("description"), str) else None
        out["owner"] = meta.get("owner") if isinstance(meta.get("owner"), str) else None
        out["kind"] = meta.get("kind") if meta.get("kind") in _KINDS else None
        tags = meta.get("tags")
        out["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        out["archived"] = meta.get("archived") is True
        out["problems"] = problems(flag)
    out["updated_at"] = last.at if last else None
    out["updated_by"] = parse_author(last.author)["actor"] if last else None
    age = (now or time.time()) - last.at if last else 0.0
    temporary = out["kind"] is not None and Kind(out["kind"]).temporary
    out["stale"] = temporary and not out["archived"] and last is not None and age > stale_days * 86400
    return out


def segment_summary(record: Record, last: HistoryEntry | None, used_by: list[str]) -> dict[str, Any]:
    """A segment as the API lists it (the ``Segment`` schema of the OpenAPI document).

    ``used_by`` are the flags naming it (:func:`segment_users`). A stored text that is
    not a valid segment is still shown, with its ``problems``.
    """
    name = segment_name(record.name)
    segment = compiled_segment(name, record.raw)
    document = document_or_text(record.raw)
    meta = document if isinstance(document, dict) else {}
    out: dict[str, Any] = {"name": name, "key": record.name, "version": record.version, "document": document}
    if isinstance(segment, Segment):
        out["description"] = segment.description
        out["owner"] = segment.owner
        out["tags"] = list(segment.tags)
        out["holdout"] = segment.holdout
        out["problems"] = []
    else:
        out["description"] = meta.get("description") if isinstance(meta.get("description"), str) else None
        out["owner"] = meta.get("owner") if isinstance(meta.get("owner"), str) else None
        tags = meta.get("tags")
        out["tags"] = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        out["holdout"] = meta.get("holdout") is True
        out["problems"] = problems(segment)
    out["valid"] = isinstance(segment, Segment)
    out["used_by"] = list(used_by)
    out["updated_at"] = last.at if last else None
    out["updated_by"] = parse_author(last.author)["actor"] if last else None
    return out


def history_entry(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as the API shows it: the action, the author split, before and after."""
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
