"""``flagstaff blast NAME DOCUMENT``: who a new document would move, before writing it.

::

    $ flagstaff blast checkout '{"percentage": 0}' --events flagstaff.db.events
    98 of 1,010 units seen in the last 7 days would change: 98 on -> off

The units are the distinct keys the event store (``--events``, by default the
file ``serve`` ingests into beside a SQLite store: ``flagstaff.db.events``) saw in
the last ``--days``; each is decided as a user id alone (see :mod:`flagstaff.blast`
for the approximation). Nothing is written. ``--json`` prints the whole count,
with the matrix of transitions. Exit 0 whatever the count; 3 for an unknown flag,
1 for an invalid document, 2 when there is no event store.

``flagstaff set NAME DOCUMENT --blast[=DAYS]`` shows the same line before it writes
and asks to confirm (:func:`confirm_write`): ``--yes`` writes without asking, and
without a terminal to ask on (a script, CI) the write is refused unless ``--yes``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO
from urllib.parse import urlsplit

from flagstaff.blast import DEFAULT_LIMIT, NoEventStore, blast_radius
from flagstaff.cli._files import opened, read_flags_file
from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.cli.segments import store_env
from flagstaff.document import decode_document
from flagstaff.errors import NotFoundError

__all__ = ["add_set_options", "cmd_blast", "confirm_write", "default_events", "register"]


def register(command: Commands) -> None:
    """Add ``flagstaff blast`` (see the module doc)."""
    p = command("blast", cmd_blast, "count the recent units a new document would move (writes nothing)")
    p.add_argument("name", metavar="NAME", help="the flag")
    p.add_argument("document", nargs="?", metavar="DOCUMENT", help="the new document (JSON, on/off, @file)")
    p.add_argument("-f", "--file", metavar="FILE", help="read the new document from FILE ('-': stdin)")
    p.add_argument("--events", metavar="PATH", help="the SQLite event store (default: beside a SQLite store)")
    p.add_argument("--days", type=_positive, default=7.0, metavar="N", help="the last N days (7)")
    p.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N units ({DEFAULT_LIMIT:,})",
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def default_events(store_url: str) -> str | None:
    """The event store ``serve`` ingests into for ``store_url``: beside a SQLite
    store's file (``flagstaff.db`` -> ``flagstaff.db.events``), else none.
    Kept equal to :func:`flagstaff.http.state.default_events_db`, which needs the
    server's dependencies to import."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return parts.path[1:] + ".events"
    return None


def _document(args: argparse.Namespace) -> Any:
    if args.document is not None and args.file is not None:
        raise UsageError("give the document as an argument or with -f FILE, not both")
    if args.file is not None:
        return read_flags_file(args.file)
    if args.document is not None:
        if args.document.startswith("@"):
            return read_flags_file(args.document[1:])
        return decode_document(args.document)
    if sys.stdin.isatty():
        raise UsageError("blast needs a DOCUMENT, -f FILE, or the document on stdin")
    return read_flags_file("-")


def cmd_blast(args: argparse.Namespace, out: Out) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    document = _document(args)
    events = args.events or default_events(args.store)
    if events is None:
        raise UsageError("no event store: give --events PATH (the SQLite file exposures are recorded in)")
    with opened(args.store) as store:
        state = store.load()
    if args.name not in state.records:
        raise NotFoundError(args.name)
    snapshot, _ = store_env(state.records, state.revision)
    try:
        radius = blast_radius(snapshot, args.name, document, events, args.days, limit=args.limit)
    except NoEventStore as exc:
        raise UsageError(f"{exc} (give --events PATH; nothing has been recorded there yet)") from None
    if out.json:
        out.emit(radius.to_dict())
    else:
        out.line(radius.summary())
    return EXIT.OK


def add_set_options(p: argparse.ArgumentParser) -> None:
    """``set``'s ``--blast[=DAYS]``, ``--yes`` and ``--events`` (see :func:`confirm_write`)."""
    p.add_argument(
        "--blast",
        nargs="?",
        type=_positive,
        const=7.0,
        default=None,
        metavar="DAYS",
        help="first show how many units seen in the last DAYS (7) the write would move, and ask",
    )
    p.add_argument("--yes", action="store_true", help="with --blast: write without asking")
    p.add_argument("--events", metavar="PATH", help="with --blast: the SQLite event store")


def confirm_write(args: argparse.Namespace, out: Out, document: Any, stdin: TextIO | None = None) -> bool:
    """With ``--blast``: print the blast radius of writing ``document`` to ``args.name``
    (on stderr) and ask to confirm on the terminal. True: write. Without ``--blast``,
    True. Raises :class:`UsageError` when there is no event store to ask, or no
    terminal to confirm on and no ``--yes``; an invalid document raises
    :class:`~flagstaff.errors.ValidationError` (nothing written either way)."""
    if args.blast is None:
        if args.yes or args.events:
            raise UsageError("--yes and --events go with --blast")
        return True
    events = args.events or default_events(args.store)
    if events is None:
        raise UsageError("--blast needs an event store: give --events PATH (the SQLite file of exposures)")
    with opened(args.store) as store:
        state = store.load()
    snapshot, _ = store_env(state.records, state.revision)
    try:
        radius = blast_radius(snapshot, args.name, document, events, args.blast)
    except NoEventStore:  # nothing recorded there yet: nobody seen
        out.note(f"no event store at {events} yet: no unit seen, so none to move")
        radius = None
    if radius is not None:
        out.note(radius.summary())
    if args.yes:
        return True
    stdin = sys.stdin if stdin is None else stdin
    if not stdin.isatty():
        raise UsageError(
            "not written: --blast asks to confirm on a terminal; pass --yes to write without asking"
        )
    out.stderr.write(f"Write {args.name}? [y/N] ")
    out.stderr.flush()
    answer = stdin.readline().strip().lower()
    if answer in ("y", "yes"):
        return True
    out.note(f"{args.name}: not written")
    return False
