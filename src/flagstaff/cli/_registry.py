"""How a module adds ``flagstaff`` commands: the :class:`Commands` it is handed.

The core CLI builds its parser and hands a :class:`Commands` to each module named in
:data:`flagstaff.cli.EXTENSIONS` (``register(commands)``). It lives apart from the
command modules so that an extension (``compat/``, ``http/``) imports only this and
:mod:`flagstaff.cli._output`, never the CLI that loads it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flagstaff.cli._output import Out

__all__ = ["Commands", "Handler", "add_comment_option"]


Handler = Callable[[argparse.Namespace, Out], int]
"""A command: runs with the parsed arguments, writes through ``out``, returns the exit code."""


class Commands:
    """The ``flagstaff`` commands being built: how a module adds its own.

    ``commands(name, fn, help)`` adds the command ``name``, run by ``fn``, and
    returns its parser for the caller to add arguments to. The global options
    (``--store``, ``--json``, ``--author``, ``--debug``) are on every command.
    :meth:`parser` is an existing command's parser (to add options to it), and
    :meth:`hand_over` gives an extension the runs of an existing command whose
    arguments are its own. A module in :data:`EXTENSIONS` receives this object
    in its ``register(commands)``.
    """

    def __init__(
        self,
        sub: argparse._SubParsersAction[argparse.ArgumentParser],
        common: argparse.ArgumentParser,
    ) -> None:
        self._sub = sub
        self._common = common

    def __call__(self, name: str, fn: Handler, help_: str) -> argparse.ArgumentParser:
        p = self._sub.add_parser(name, parents=[self._common], help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    def parser(self, name: str) -> argparse.ArgumentParser:
        """The parser of the command ``name`` (a KeyError when there is none)."""
        return self._sub.choices[name]

    def hand_over(self, name: str, when: Callable[[argparse.Namespace], bool], fn: Handler) -> None:
        """Run ``fn`` instead of the command ``name`` when ``when(args)`` says the run is ``fn``'s."""
        parser = self.parser(name)
        own: Handler = parser.get_default("fn")

        def run(args: argparse.Namespace, out: Out) -> int:
            return fn(args, out) if when(args) else own(args, out)

        parser.set_defaults(fn=run)


def add_comment_option(parser: argparse.ArgumentParser) -> None:
    """``--comment TEXT`` on a writing command: why, recorded in history after the author
    (:func:`flagstaff.admin.with_comment`; ``main`` folds it in as ``args.history_comment``)."""
    parser.add_argument(
        "--comment", dest="history_comment", metavar="TEXT", help="why: kept in history with the change"
    )
