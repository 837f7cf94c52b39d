"""Promotion: copy one flag's configuration from one environment's store to another's.

Two steps, so that what is written is what was shown:

1. :func:`plan` reads the flag in both stores and returns a :class:`Promotion`: the
   source document and version, the destination's version (``0``: it has no such
   flag), and the difference (a unified diff of the pretty-printed documents, and the
   changed paths);
2. :func:`apply` writes the source document to the destination with compare-and-set
   on the destination version the plan read (and, if the source changed since,
   refuses too): a destination changed after the diff was shown is a
   :class:`~flagstaff.errors.ConflictError`, never overwritten.

The write goes through :class:`flagstaff.admin.Admin`, so the destination's own
checks apply (a segment or prerequisite the flag names must exist there) and its
history records the promotion with its author. Used by
``POST /api/v1/envs/{src}/flags/{name}/promote?to=DST`` and ``flagstaff promote``.
No Starlette here: the CLI uses this on a core install.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from flagstaff.admin import Admin, Outcome
from flagstaff.document import is_segment_key
from flagstaff.errors import ConflictError, NotFoundError, Problem, ValidationError
from flagstaff.http.present import json_changes
from flagstaff.stores import Store

__all__ = ["Promotion", "apply", "plan"]


@dataclass(frozen=True, slots=True)
class Promotion:
    """What promoting ``name`` would do: the source document, both versions, the difference."""

    name: str
    source: str
    target: str
    source_version: int
    target_version: int  # 0: the destination has no such flag
    document: Any  # the source's document, written as is
    before: Any  # the destination's document (None: none)
    diff: tuple[str, ...]  # unified diff lines, destination -> source
    changes: tuple[dict[str, Any], ...]  # json_changes: path, change, before, after

    @property
    def changed(self) -> bool:
        """Whether the write would change the destination."""
        return self.target_version == 0 or bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag": self.name,
            "from": self.source,
            "to": self.target,
            "source_version": self.source_version,
            "target_version": self.target_version,
            "changed": self.changed,
            "diff": list(self.diff),
            "changes": list(self.changes),
            "document": self.document,
        }


def _invalid(message: str) -> ValidationError:
    return ValidationError([Problem("", message)])


def _decoded(raw: str, name: str, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise _invalid(f"{name!r} in {where} is not JSON; fix it there first") from None


def _pretty(document: Any) -> list[str]:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def plan(name: str, source: Store, target: Store, *, source_env: str, target_env: str) -> Promotion:
    """Read ``name`` in both stores: what promoting it from ``source`` to ``target`` would write.

    :class:`~flagstaff.errors.NotFoundError` if the source has no such flag;
    :class:`~flagstaff.errors.ValidationError` for a segment's key (promote flags) or
    the same environment twice.
    """
    if is_segment_key(name):
        raise _invalid(f"{name!r} is a segment: promotion copies flags")
    if source_env == target_env:
        raise _invalid(f"promoting from {source_env!r} to itself changes nothing")
    record = source.get(name)
    if record is None:
        raise NotFoundError(name)
    document = _decoded(record.raw, name, source_env)
    current = target.get(name)
    before = None if current is None else _decoded(current.raw, name, target_env)
    old = [] if before is None else _pretty(before)
    diff = tuple(
        difflib.unified_diff(
            old, _pretty(document), f"{target_env}/{name}", f"{source_env}/{name}", lineterm="", n=3
        )
    )
    changes = tuple(json_changes(before, document)) if before is not None else ()
    return Promotion(
        name,
        source_env,
        target_env,
        record.version,
        0 if current is None else current.version,
        document,
        before,
        diff,
        changes,
    )


def apply(promotion: Promotion, source: Store, admin: Admin) -> Outcome:
    """Write the promotion's document to ``admin``'s store, if nothing moved since :func:`plan`.

    :class:`~flagstaff.errors.ConflictError` when the destination is no longer at
    ``target_version`` (0: created meanwhile) or the source no longer at
    ``source_version``: plan again, look at the new diff, and retry.
    """
    now = source.get(promotion.name)
    if now is None or now.version != promotion.source_version:
        raise ConflictError(promotion.name, promotion.source_version, None if now is None else now.version)
    return admin.set(promotion.name, promotion.document, expect=promotion.target_version)
