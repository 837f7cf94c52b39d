"""``flagstaff archive NAME`` and ``flagstaff restore NAME``: retire a flag, and bring it back.

::

    $ flagstaff archive old_checkout --comment "shipped in 4.2"
    old_checkout: archived (version 7)
    $ flagstaff restore old_checkout
    old_checkout: restored (version 8)

An archived flag (``"archived": true``) evaluates off for everyone with the reason
``archived``; its document and history are kept, and ``restore`` removes the key, so
the flag is back as it was (:meth:`flagstaff.admin.Admin.archive`). Both write through
:class:`~flagstaff.admin.Admin` (validated, compare-and-set; ``--expect VERSION``), and
a flag already in the asked-for state is ``unchanged``.
"""

from __future__ import annotations

import argparse

from flagstaff.cli._files import opened
from flagstaff.cli._output import EXIT, Out
from flagstaff.cli._registry import Commands, add_comment_option

__all__ = ["cmd_archive", "cmd_restore", "register"]


def register(command: Commands) -> None:
    """Add ``flagstaff archive`` and ``flagstaff restore`` (see the module doc)."""
    for name, fn, help_ in (
        ("archive", cmd_archive, "retire a flag: off for everyone (reason archived), kept with its history"),
        ("restore", cmd_restore, "bring an archived flag back as it was"),
    ):
        p = command(name, fn, help_)
        p.add_argument("name", metavar="NAME", help="the flag")
        p.add_argument("--expect", type=int, metavar="VERSION", help="only if the flag is at VERSION")
        add_comment_option(p)


def cmd_archive(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, archive=True)


def cmd_restore(args: argparse.Namespace, out: Out) -> int:
    return _write(args, out, archive=False)


def _write(args: argparse.Namespace, out: Out, *, archive: bool) -> int:
    from flagstaff.admin import Admin

    with opened(args.store) as store:
        admin = Admin(store, author=args.author)
        act = admin.archive if archive else admin.restore
        outcome = act(args.name, expect=args.expect)
    if out.json:
        out.emit(outcome.to_dict())
    elif not outcome.changed:
        out.line(f"{outcome.name}: unchanged (already {'archived' if archive else 'not archived'})")
    else:
        version = outcome.record.version if outcome.record else None
        out.line(f"{outcome.name}: {'archived' if archive else 'restored'} (version {version})")
    return EXIT.OK
