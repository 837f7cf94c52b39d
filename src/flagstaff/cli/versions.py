"""A flag's past versions: ``flagstaff rollback NAME VERSION`` and ``flagstaff diff NAME V1 [V2]``.

::

    $ flagstaff diff checkout 3          # version 3 against the current document
    --- checkout v3
    +++ checkout v5 (current)
    @@ -1,4 +1,4 @@
     {
       "enabled": true,
    -  "percentage": 10
    +  "percentage": 50
     }
    $ flagstaff rollback checkout 3      # write version 3's document back (as version 6)

Both read the store's history (:meth:`Store.history`), which holds each
version's document as the ``after`` of the change that wrote it; a store keeps
a bounded history (docs/stores.md), so a version older than it is not found
(exit 3). After a flag was deleted and created again its versions start over:
the newest entry of a version number counts.

``rollback`` writes that document through :meth:`Admin.set
<flagstaff.admin.Admin.set>` (validated, references checked), compare-and-set on
the current version it read: a change made meanwhile is a conflict (exit 4),
never overwritten. A deleted flag is created again. Rolling back to the document
the flag already has writes nothing.

``diff NAME V1 [V2]`` is the ``diff`` command's third form, taken when its second
argument is a version number (and no file of that name exists); ``diff A [B]``
still compares stores and files. Exit 0 when the two versions are the same
document, 1 when they differ.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

from flagstaff.admin import Admin
from flagstaff.cli._files import opened
from flagstaff.cli._output import EXIT, Out, UsageError, decoded
from flagstaff.cli._registry import Commands
from flagstaff.document import decode_document
from flagstaff.errors import NotFoundError
from flagstaff.stores.base import Store

__all__ = ["cmd_rollback", "cmd_version_diff", "document_at", "register"]

#: How far back ``rollback`` and ``diff`` look in a flag's history (entries).
HISTORY_DEPTH = 1000


def register(command: Commands) -> None:
    """Add ``flagstaff rollback`` and the ``diff NAME V1 [V2]`` form (see the module doc)."""
    p = command("rollback", cmd_rollback, "write a flag's document of an earlier VERSION back")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", type=_version, metavar="VERSION")
    diff = command.parser("diff")
    diff.add_argument("c", metavar="V2", nargs="?", help="(NAME V1 [V2]) a second version (default: current)")
    diff.description = (
        "compare flags: the store with A, or A with B (URLs or files); "
        "or NAME V1 [V2]: two versions of a flag from its history"
    )
    command.hand_over("diff", _is_version_form, cmd_version_diff)


def _version(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a version is a number from 1, not {text!r}")
    return int(text)


def _is_version_form(args: argparse.Namespace) -> bool:
    b = args.b
    if args.c is not None:
        return True
    return b is not None and b.isdigit() and "://" not in args.a and not Path(b).exists()


class VersionNotFound(NotFoundError):
    """No history entry holds that version of the flag."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(name)
        self.args = (
            f"no version {version} of {name!r} in the store's history "
            f"(it keeps a bounded number of changes: see `flagstaff history {name}`)",
        )


def document_at(store: Store, name: str, version: int) -> str:
    """The text of version ``version`` of ``name``, from the history (newest entry first).
    Raises :class:`NotFoundError` when the history has no such version."""
    for entry in store.history(name, limit=HISTORY_DEPTH):
        if entry.version == version and entry.after is not None:
            return entry.after
    raise VersionNotFound(name, version)


def cmd_rollback(args: argparse.Namespace, out: Out) -> int:
    with opened(args.store) as store:
        raw = document_at(store, args.name, args.version)
        current = store.get(args.name)
        document = decode_document(raw)
        outcome = Admin(store, author=args.author).set(
            args.name, document, expect=0 if current is None else current.version
        )
    result = {
        "flag": args.name,
        "rolled_back_to": args.version,
        "changed": outcome.changed,
        "version": outcome.record.version if outcome.record else None,
        "document": document,
    }
    if out.json:
        out.emit(result)
    elif not outcome.changed:
        out.note(f"{args.name} already holds the document of version {args.version}: nothing written")
    else:
        assert outcome.record is not None
        out.line(
            f"{args.name}: version {args.version}'s document written back as version {outcome.record.version}"
        )
    return EXIT.OK


def cmd_version_diff(args: argparse.Namespace, out: Out) -> int:
    name = args.a
    first = _version_arg(args.b)
    second = None if args.c is None else _version_arg(args.c)
    with opened(args.store) as store:
        left = document_at(store, name, first)
        if second is None:
            record = store.get(name)
            if record is None:
                raise NotFoundError(name)
            right, right_label = record.raw, f"{name} v{record.version} (current)"
        else:
            right, right_label = document_at(store, name, second), f"{name} v{second}"
    left_doc, right_doc = decoded(left), decoded(right)
    same = _pretty(left_doc) == _pretty(right_doc)
    if out.json:
        out.emit(
            {
                "flag": name,
                "left": {"version": first, "document": left_doc},
                "right": {"version": second, "current": second is None, "document": right_doc},
                "same": same,
            }
        )
    elif same:
        out.note(f"no differences between {name} v{first} and {right_label}")
    else:
        lines = difflib.unified_diff(
            _pretty(left_doc).splitlines(),
            _pretty(right_doc).splitlines(),
            fromfile=f"{name} v{first}",
            tofile=right_label,
            lineterm="",
        )
        for line in lines:
            out.line(line)
    return EXIT.OK if same else EXIT.NO


def _version_arg(text: str) -> int:
    try:
        return _version(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"diff NAME V1 [V2]: {exc}") from None


def _pretty(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
