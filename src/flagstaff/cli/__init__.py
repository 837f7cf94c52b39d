"""``flagstaff``: the command line over any store URL.

Every write goes through :mod:`flagstaff.admin` (validated, compare-and-set).
Output is an aligned table for people, or JSON with ``--json`` for scripts.
Errors are one line on stderr (``--debug`` adds the traceback). Exit codes:

===  ==========================================================================
0    success (``check``: every flag asked about is enabled; ``diff``: no difference)
1    a "no": invalid documents (``set``, ``import``, ``validate``, a reference to
     a missing segment or flag), ``check`` found a flag disabled, ``diff`` found
     differences, ``enable`` had nothing to enable, ``delete`` of a segment or
     flag that other flags still use
2    usage: bad arguments, an unreadable file, an unsupported store URL
3    not found: no flag of that name
4    conflict: the flag kept changing under us (compare-and-set retries spent)
     or ``--expect`` did not match
5    the store is unavailable (unreachable, locked, full)
6    outcome unknown: a write reached the store but its answer was lost; it may
     have applied (read the flag, or retry with ``--expect``)
130  interrupted (Ctrl-C), except for ``watch``, where Ctrl-C is the normal end
===  ==========================================================================

See ``docs/cli.md`` for every command. The package holds one concept a module:

==========================  ===============================================================
``flagstaff.cli``           ``main``, the parser, the registry extensions add commands through
``flagstaff.cli._output``   exit codes, ``Out`` (table or JSON), ``UsageError``, ``Failed``
``flagstaff.cli._files``    flags files, and stores opened by URL
``flagstaff.cli.flags``     list, get, set, enable, disable, rollout, users, delete, history, diff
``flagstaff.cli.transfer``  export, import, watch, check, validate
``flagstaff.cli.segments``  segment list|get|set|delete (an extension), the env ``check`` links to
``flagstaff.cli.demo``      demo
``flagstaff.cli.scan``      scan (an extension, as are :mod:`flagstaff.http.cli` and
                            :mod:`flagstaff.compat.cli`)
``flagstaff.cli.forcing``   force-token (an extension too)
``flagstaff.cli.blast``     blast: who a new document would move (an extension)
``flagstaff.cli.report``    report: an experiment's results (an extension)
``flagstaff.cli.guard``     guard: a flag's guardrails checked, a breach halted (an extension)
``flagstaff.cli.apply``     apply: the store made to match a flags file, one atomic write (an extension)
``flagstaff.cli.versions``  rollback, and diff NAME V1 [V2]: a flag's past versions (an extension)
==========================  ===============================================================
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from flagstaff.admin import NothingToEnable, default_author, with_comment
from flagstaff.cli._output import EXIT, Failed, Out, UsageError
from flagstaff.cli._registry import Commands, Handler, add_comment_option
from flagstaff.cli.blast import add_set_options
from flagstaff.cli.demo import cmd_demo
from flagstaff.cli.flags import (
    cmd_add_user,
    cmd_delete,
    cmd_diff,
    cmd_disable,
    cmd_enable,
    cmd_get,
    cmd_history,
    cmd_list,
    cmd_remove_user,
    cmd_rollout,
    cmd_set,
)
from flagstaff.cli.transfer import cmd_check, cmd_export, cmd_import, cmd_validate, cmd_watch
from flagstaff.errors import (
    ConflictError,
    FlagstaffError,
    InUseError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    ValidationError,
    WriteOutcomeUnknown,
)

__all__ = ["EXIT", "EXTENSIONS", "Commands", "Handler", "build_parser", "main"]

log = logging.getLogger("flagstaff.cli")

DEFAULT_STORE = "sqlite:///flagstaff.db"


# --------------------------------------------------------------------------- registry

# Modules that add commands: each has ``register(commands)``, given the :class:`Commands`.
# They must import their heavy dependencies inside the command functions, so
# ``flagstaff --help`` works on a core install.
EXTENSIONS: tuple[str, ...] = (
    "flagstaff.compat.cli",
    "flagstaff.http.cli",
    "flagstaff.cli.scan",
    "flagstaff.cli.segments",
    "flagstaff.cli.forcing",
    "flagstaff.cli.blast",
    "flagstaff.cli.guard",
    "flagstaff.cli.report",
    "flagstaff.cli.changes",
    "flagstaff.cli.client_keys",
    "flagstaff.http.cli_teams",
    "flagstaff.cli.apply",
    "flagstaff.cli.versions",
    "flagstaff.cli.archive",
)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the command: the copies on
    # the subcommands default to SUPPRESS so they do not overwrite the top ones.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, metavar="URL", help="store URL")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON output")
    common.add_argument("--author", default=argparse.SUPPRESS, help="author recorded in history")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    parser = argparse.ArgumentParser(
        prog="flagstaff",
        description="Feature flags over any store URL. Exit codes: 0 ok, 1 no/invalid, 2 usage, "
        "3 not found, 4 conflict, 5 store unavailable.",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=None,
        help=f"store URL (default: $FLAGSTAFF_STORE, else {DEFAULT_STORE})",
    )
    parser.add_argument("--json", action="store_true", default=False, help="JSON output for scripts")
    parser.add_argument("--author", default=None, help="author recorded in history (default: user@host)")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"flagstaff {_version()}")
    # Not required: bare `flagstaff` prints the commands (main() handles it) instead of an error.
    command = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"), common)
    p = command("list", cmd_list, "list flags with their version and status")
    p.add_argument("--segments", action="store_true", help="list the segments too")
    p = command("get", cmd_get, "print one flag's document")
    p.add_argument("name")
    p = command("set", cmd_set, "write a flag document (validated first)")
    p.add_argument("name")
    p.add_argument("document", help="JSON, on/off, a percentage, or @FILE")
    p.add_argument("--expect", type=int, metavar="VERSION", help="only if the flag is at VERSION (0: new)")
    add_set_options(p)  # --blast[=DAYS] --yes --events PATH (flagstaff.cli.blast)
    p = command("enable", cmd_enable, "remove a flag's kill switch")
    p.add_argument("name")
    p.add_argument("--all", action="store_true", help="turn the flag on for everyone")
    p = command("disable", cmd_disable, "kill switch: turn a flag off for everyone, keeping its targeting")
    p.add_argument("name")
    p = command("rollout", cmd_rollout, "set the percentage of users a flag is on for")
    p.add_argument("name")
    p.add_argument("percent", type=_percent)
    p.add_argument("--create", action="store_true", help="create the flag if it does not exist")
    p = command("add-user", cmd_add_user, "turn a flag on for one user id")
    p.add_argument("name")
    p.add_argument("user")
    p.add_argument("--create", action="store_true", help="create the flag if it does not exist")
    p = command("remove-user", cmd_remove_user, "remove a user id from a flag")
    p.add_argument("name")
    p.add_argument("user")
    p = command("delete", cmd_delete, "delete a flag (refused while other flags require it)")
    p.add_argument("name")
    p.add_argument("--expect", type=int, metavar="VERSION", help="only if the flag is at VERSION")
    p.add_argument("--force", action="store_true", help="even while other flags require it")
    p = command("history", cmd_history, "who changed what, newest first")
    p.add_argument("name", nargs="?")
    p.add_argument("--limit", type=int, default=20)
    p = command("diff", cmd_diff, "compare flags: the store with A, or A with B (URLs or files)")
    p.add_argument("a", metavar="A")
    p.add_argument("b", metavar="B", nargs="?")
    for name, fn, help_ in (
        ("export", cmd_export, "write every flag to FILE (or stdout), or copy --from URL --to URL"),
        ("import", cmd_import, "load flags from FILE, or copy --from URL [--to URL]"),
    ):
        p = command(name, fn, help_)
        p.add_argument("file", nargs="?", metavar="FILE")
        p.add_argument("--from", dest="from_", metavar="URL", help="source store (default: --store)")
        p.add_argument("--to", metavar="URL", help="destination store")
        p.add_argument("--prune", action="store_true", help="delete destination flags not in the source")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    # import's --format rollout|hanoi|reddit and --dry-run come from flagstaff.compat.cli (EXTENSIONS).
    p = command("watch", cmd_watch, "print changes as they happen")
    p.add_argument("--count", type=int, metavar="N", help="stop after N changes")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop after SECONDS")
    p.add_argument("--since", type=int, metavar="REV", help="replay changes after revision REV first")
    p = command("check", cmd_check, "evaluate flags for a context and print the decision")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--user", help="user id")
    p.add_argument("--user-name", help="user name")
    p.add_argument("--group", action="append", metavar="G", help="group (repeatable)")
    p.add_argument("--logged-in", action="store_true", help="logged in (implied by --user)")
    p.add_argument(
        "--attr",
        action="append",
        type=_attr,
        metavar="K=V",
        help="any context attribute, e.g. account=acme (repeatable; VALUE read as JSON when it is JSON)",
    )
    p.add_argument("--cookie", help="cookie id of a logged-out visitor")
    p.add_argument("--feature", action="append", metavar="F", help="?feature= value (repeatable)")
    p.add_argument("--subdomain")
    p.add_argument("--location")
    p.add_argument("--oauth-client")
    p.add_argument(
        "--time",
        type=_time,
        metavar="WHEN",
        help="request time: epoch seconds or ISO 8601, e.g. 2026-01-31T18:00:00Z (default: now)",
    )
    p = command("validate", cmd_validate, "check flag documents in files (name -> document, or one)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--name", help="treat each file as one document for the flag NAME")
    p = command("demo", cmd_demo, "load examples/flags.json into a store and show decisions")
    p.add_argument("--flags", metavar="FILE", help="flags file (default: examples/flags.json)")
    # Why, recorded in history after the author: on the writes (``change`` has its own
    # --comment, the change request's; flagstaff.cli.archive adds it to its commands).
    for name in ("set", "enable", "disable", "rollout", "add-user", "remove-user", "delete"):
        add_comment_option(command.parser(name))
    for module_name in EXTENSIONS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not f"{module_name}.".startswith(f"{exc.name}."):
                raise  # a dependency of an existing module is missing: say so
            continue
        module.register(command)
    return parser


# --------------------------------------------------------------------------- arguments


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 100")
    return value


def _time(text: str) -> float:
    """Epoch seconds, or an ISO 8601 date/time (UTC when it names no offset)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        # 3.11's fromisoformat reads "Z" and most ISO 8601 forms.
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor an ISO 8601 time (e.g. 2026-01-31T18:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flagstaff")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _attr(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:  # numbers and booleans as JSON, anything else as a string
        return key, json.loads(value)
    except ValueError:
        return key, value


# --------------------------------------------------------------------------- main


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    if getattr(args, "fn", None) is None:
        # Bare `flagstaff`: what it can do, rather than "the following arguments are required".
        parser.print_help(stdout)
        return EXIT.USAGE
    env_store = os.environ.get("FLAGSTAFF_STORE")
    args.store_given = args.store is not None or bool(env_store)
    args.store = args.store or env_store or DEFAULT_STORE
    args.author = args.author or default_author()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, stream=stderr)
    out = Out(args.json, stdout, stderr)
    try:
        args.author = with_comment(args.author, getattr(args, "history_comment", None))
        code: int = args.fn(args, out)
        return code
    except KeyboardInterrupt:
        return EXIT.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`flagstaff list | head -3`): that is not an error.
        _silence_stdout(stdout)
        return EXIT.OK
    except Exception as exc:
        code = _exit_code(exc)
        if args.debug or code == 70:
            traceback.print_exc(file=stderr)
        _error(out, exc, code)
        return code


def _silence_stdout(stdout: TextIO) -> None:
    # Python flushes stdout at exit and would report the broken pipe again.
    try:
        fd = stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError) as exc:  # not a real file (tests pass a StringIO)
        log.debug("cannot silence stdout: %s", exc)


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, ValidationError | NothingToEnable | InUseError | Failed):
        return EXIT.NO
    if isinstance(exc, NotFoundError):
        return EXIT.NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT.CONFLICT
    if isinstance(exc, UsageError | UnsupportedStoreURL):
        return EXIT.USAGE
    if isinstance(exc, WriteOutcomeUnknown):  # before StoreUnavailable: it is one
        return EXIT.OUTCOME_UNKNOWN
    if isinstance(exc, StoreUnavailable | StoreError):
        return EXIT.UNAVAILABLE
    return 70  # a bug: EX_SOFTWARE, with the traceback


def _error(out: Out, exc: BaseException, code: int) -> None:
    message = str(exc) if isinstance(exc, FlagstaffError) else f"{type(exc).__name__}: {exc}"
    if out.json:
        data: dict[str, Any] = {"error": message, "exit": code}
        if isinstance(exc, ValidationError):
            data["problems"] = [{"path": p.path, "message": p.message} for p in exc.problems]
        out.note(json.dumps(data, ensure_ascii=False))
    else:
        out.note(f"flagstaff: error: {message}")


def run() -> NoReturn:
    """The console entry: ``python -m flagstaff`` (and ``python -m flagstaff.cli``)."""
    sys.exit(main())
