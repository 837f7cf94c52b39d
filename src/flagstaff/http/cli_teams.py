"""``flagstaff user`` and ``flagstaff promote``: people and environments from the command line.

Registered through :data:`flagstaff.cli.EXTENSIONS`. Neither needs the server extra:
users are a SQLite file (:mod:`flagstaff.http.users`), promotion reads and writes
two stores (:mod:`flagstaff.http.promote`).

* ``flagstaff user add NAME [--role ROLE] [--env ENV]``: the password is read from
  the terminal (twice) or, with ``--password-stdin``, from the first line of stdin;
* ``user list``, ``user remove NAME``, ``user passwd NAME``, ``user disable NAME`` (its
  sessions end, it cannot log in; roles kept), ``user enable NAME``;
* ``user role NAME ROLE [--env ENV]``: ``ROLE`` is viewer, editor, approver, admin, or
  ``none`` to take the role in ``ENV`` away (``--env`` default ``*``: every environment
  not given a role of its own).
* ``flagstaff promote NAME --from A --to B``: the diff first, then (after ``y``, or
  with ``--yes``) the write, compare-and-set on the destination version the diff was
  made from. ``A`` and ``B`` are environment names (from ``--environments FILE``,
  ``--env NAME=URL`` or ``$FLAGSTAFF_ENVIRONMENTS``) or store URLs.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from typing import Any

from flagstaff.cli._output import Failed, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.errors import StoreUnavailable
from flagstaff.http.environments import (
    EnvironmentConfigError,
    check_name,
    load_environments,
    parse_environment,
)
from flagstaff.http.roles import Permission, RoleError
from flagstaff.http.tokens import default_token_db
from flagstaff.http.users import UserError, UserStore, default_user_db

__all__ = ["register"]


def register(command: Commands) -> None:
    p = command(
        "user",
        cmd_user,
        "dashboard users: add NAME, list, remove NAME, passwd NAME, role NAME ROLE, disable/enable NAME",
    )
    p.add_argument("action", choices=("add", "list", "remove", "passwd", "role", "disable", "enable"))
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("role", nargs="?", metavar="ROLE", help="(role) viewer, editor, approver, admin or none")
    p.add_argument("--role", dest="add_role", metavar="ROLE", help="(add) the user's role (default viewer)")
    p.add_argument(
        "--env",
        default="*",
        metavar="ENV",
        help="(add, role) the environment the role holds in (default *: every one not named)",
    )
    p.add_argument("--password-stdin", action="store_true", help="(add, passwd) read the password from stdin")
    p.add_argument("--token-db", metavar="PATH", help="token database; users live beside it")
    p.add_argument("--user-db", metavar="PATH", help="user database (default: beside the token database)")

    p = command("promote", cmd_promote, "copy a flag's configuration from one environment to another")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--from", dest="source", required=True, metavar="ENV", help="environment name or store URL"
    )
    p.add_argument("--to", dest="target", required=True, metavar="ENV", help="environment name or store URL")
    p.add_argument(
        "--env", action="append", dest="envs", metavar="NAME=URL", help="an environment (repeatable)"
    )
    p.add_argument("--environments", metavar="FILE", help="environments from a JSON file (as serve takes)")
    p.add_argument("--yes", "-y", action="store_true", help="write without asking (the diff is still shown)")
    p.add_argument("--dry-run", action="store_true", help="show the diff, write nothing")


# --------------------------------------------------------------------------- user


def _user_db(args: argparse.Namespace) -> str:
    if args.user_db:
        return str(args.user_db)
    return default_user_db(args.token_db or default_token_db(args.store))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask the password on: use --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def cmd_user(args: argparse.Namespace, out: Out) -> int:
    path = _user_db(args)
    try:
        users = UserStore(path)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot use the user database {path}: {exc}") from None
    try:
        return _user_action(args, out, users)
    except (UserError, RoleError, EnvironmentConfigError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        users.close()


def _environment(text: str) -> str:
    return text if text == "*" else check_name(text)


def _user_action(args: argparse.Namespace, out: Out, users: UserStore) -> int:
    if args.action == "list":
        listed = users.list()
        if out.json:
            out.emit([u.to_dict() for u in listed])
        else:
            rows = [
                [
                    u.name,
                    ", ".join(f"{env}: {lv.role}" for env, lv in u.roles) or "(none)",
                    "disabled" if u.disabled else "",
                ]
                for u in listed
            ]
            out.table(["name", "roles", "status"], rows)
        return 0
    if not args.name:
        raise UsageError(f"user {args.action} needs a NAME")
    name = args.name
    if args.action == "add":
        role = Permission.parse(args.add_role or "viewer")
        user = users.add(name, _password(args), {_environment(args.env): role})
        out.emit(user.to_dict()) if out.json else out.line(f"added user {name!r} ({args.env}: {role.role})")
    elif args.action == "remove":
        users.remove(name)
        out.line(f"removed user {name!r}; their sessions ended")
    elif args.action == "passwd":
        users.set_password(name, _password(args))
        out.line(f"changed the password of {name!r}; their sessions ended")
    elif args.action in ("disable", "enable"):
        user = users.set_disabled(name, args.action == "disable")
        if out.json:
            out.emit(user.to_dict())
        elif user.disabled:
            out.line(f"disabled {name!r}: their sessions ended and they cannot log in (roles kept)")
        else:
            out.line(f"enabled {name!r}")
    else:
        if not args.role:
            raise UsageError("user role needs NAME and ROLE (viewer, editor, approver, admin or none)")
        level = None if args.role.lower() == "none" else Permission.parse(args.role)
        user = users.set_role(name, _environment(args.env), level)
        if out.json:
            out.emit(user.to_dict())
        else:
            what = "no role" if level is None else level.role
            out.line(f"{name!r} now has {what} in {args.env}")
    return 0


# --------------------------------------------------------------------------- promote


def _urls(args: argparse.Namespace) -> dict[str, str]:
    envs = []
    file = args.environments or os.environ.get("FLAGSTAFF_ENVIRONMENTS")
    if file:
        envs += load_environments(file)
    envs += [parse_environment(text) for text in args.envs or ()]
    return {e.name: e.url for e in envs}


def _where(text: str, urls: dict[str, str]) -> tuple[str, str]:
    """(label, store URL) for ``--from``/``--to``: an environment name or a URL."""
    if "://" in text:
        return text, text
    if text not in urls:
        known = ", ".join(urls) or "none given (--environments FILE or --env NAME=URL)"
        raise UsageError(f"unknown environment {text!r} (known: {known})")
    return text, urls[text]


def cmd_promote(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.admin import Admin
    from flagstaff.http.promote import apply, plan
    from flagstaff.stores import open_store

    try:
        urls = _urls(args)
    except EnvironmentConfigError as exc:
        raise UsageError(str(exc)) from None
    source_env, source_url = _where(args.source, urls)
    target_env, target_url = _where(args.target, urls)
    source = open_store(source_url)
    try:
        target = open_store(target_url)
        try:
            promotion = plan(args.name, source, target, source_env=source_env, target_env=target_env)
            if out.json and (args.dry_run or not promotion.changed):
                out.emit(promotion.to_dict())
                return 0
            _show(out, promotion)
            if not promotion.changed:
                out.note(f"{args.name!r} is the same in {target_env}: nothing to promote")
                return 0
            if args.dry_run:
                return 0
            if not args.yes and not _confirm(f"Promote {args.name!r} to {target_env}? [y/N] "):
                raise Failed("not promoted")
            outcome = apply(promotion, source, Admin(target, author=args.author))
            version = outcome.record.version if outcome.record else None
            if out.json:
                out.emit({**promotion.to_dict(), "version": version})
            else:
                out.line(f"promoted {args.name!r} from {source_env} to {target_env} (now version {version})")
        finally:
            target.close()
    finally:
        source.close()
    return 0


def _show(out: Out, promotion: Any) -> None:
    """The diff: on stdout as text, on stderr beside JSON (stdout is then the JSON answer)."""
    say = out.note if out.json else out.line
    where = f"version {promotion.target_version}" if promotion.target_version else "no such flag"
    source = f"{promotion.source} version {promotion.source_version}"
    say(f"{promotion.name}: {source} -> {promotion.target} ({where})")
    for line in promotion.diff:
        say(line)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise UsageError("no terminal to confirm on: pass --yes (the diff above is what would be written)")
    return input(question).strip().lower() in ("y", "yes")
