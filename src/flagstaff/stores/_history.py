"""History entries as stores keep them: one JSON object per change, and the trim rule.

Every store that records history (etcd, Redis, ZooKeeper, the file store's sidecar) writes
the same object, in this key order, so entries written before this module existed read the
same: ``name``, ``version`` (None for a delete), ``at`` (``time.time()``), ``author``, then
``before`` and ``after`` (the document texts, None where there is none). A store whose
backend numbers the entry itself (etcd's ``mod_revision``, ZooKeeper's ``czxid``) stores no
``revision``; Redis stores it after ``name``, and ``prev`` (the revision before) first.
An entry too large to carry its texts (ZooKeeper's packet limit) says ``truncated`` instead.

Each store keeps the newest :data:`HISTORY_LIMIT` entries (the file store fewer, see
``file.LOG_LIMIT``); :func:`entries_to_trim` is the one rule for how many old ones go.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flagstaff.stores.base import HistoryEntry

__all__ = ["HISTORY_LIMIT", "decode_entry", "encode_entry", "entries_to_trim", "entry_fields"]

#: Entries a store keeps (the newest).
HISTORY_LIMIT = 1000


def entry_fields(
    entry: HistoryEntry, *, with_revision: bool = False, prev: int | None = None, texts: bool = True
) -> dict[str, Any]:
    """``entry`` as the stored object: ``revision`` only ``with_revision``, ``prev`` (first) only
    when given, ``before``/``after`` only with ``texts`` (else ``truncated``)."""
    fields: dict[str, Any] = {} if prev is None else {"prev": prev}
    fields["name"] = entry.name
    if with_revision:
        fields["revision"] = entry.revision
    fields.update(version=entry.version, at=entry.at, author=entry.author)
    if texts:
        fields.update(before=entry.before, after=entry.after)
    else:
        fields["truncated"] = True
    return fields


def encode_entry(
    entry: HistoryEntry, *, with_revision: bool = False, prev: int | None = None, texts: bool = True
) -> str:
    """The stored text of ``entry`` (see :func:`entry_fields`)."""
    return json.dumps(entry_fields(entry, with_revision=with_revision, prev=prev, texts=texts))


def decode_entry(data: str | bytes | Mapping[str, Any], revision: int | None = None) -> HistoryEntry:
    """A stored entry (its text, or the object already parsed) as a :class:`HistoryEntry`.

    ``revision`` is the backend's number for the entry; None reads the stored ``revision``.
    Raises ``ValueError`` for an entry that cannot be read (the store skips it and logs).
    """
    try:
        doc = json.loads(data) if isinstance(data, str | bytes) else data
        return HistoryEntry(
            str(doc["name"]),
            int(doc["revision"]) if revision is None else revision,
            doc.get("version"),
            float(doc.get("at", 0.0)),
            doc.get("author"),
            doc.get("before"),
            doc.get("after"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None


def entries_to_trim(count: int, limit: int, *, slack: int = 0) -> int:
    """How many of the oldest of ``count`` entries to delete: none while there are at most
    ``limit + slack`` (a store that trims in batches sets ``slack``), else down to ``limit``."""
    if count <= limit + slack:
        return 0
    return count - limit
