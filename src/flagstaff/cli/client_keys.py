"""``flagstaff client-key``: public keys for client-side evaluation (docs/clientside.md).

::

    $ flagstaff client-key create web-app      # prints fsc_1a2b3c4d_… once
    $ flagstaff client-key create web-app --env staging   # a key for staging's flags only
    $ flagstaff client-key list
    $ flagstaff client-key revoke 1a2b3c4d

A client key can only ask ``/api/v1/client/evaluate`` for the decisions of flags marked
``"client_visible": true``, in one environment (``--env``; without it, the server's default
environment); it is meant to be shipped in a page or an app. Keys live in the token database
(``--token-db``, default beside a SQLite store), hashed.
"""

from __future__ import annotations

import argparse

from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.cli._registry import Commands

__all__ = ["cmd_client_key", "register"]


def register(command: Commands) -> None:
    """Add ``flagstaff client-key`` (see the module doc)."""
    p = command("client-key", cmd_client_key, "public client keys: create NAME, list, revoke ID")
    p.add_argument("action", choices=("create", "list", "revoke"))
    p.add_argument(
        "arg", nargs="?", metavar="NAME|ID", help="the new key's name (the app), or the id to revoke"
    )
    p.add_argument("--token-db", metavar="PATH", help="token database (default: beside a SQLite store)")
    p.add_argument(
        "--env",
        metavar="ENV",
        help="create: the environment whose flags the key evaluates (default: the server's default one)",
    )


def cmd_client_key(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.http.clientside import ClientKeyError, ClientKeyStore
    from flagstaff.http.environments import EnvironmentConfigError, check_name
    from flagstaff.http.tokens import default_token_db

    if args.env is not None:
        if args.action != "create":
            raise UsageError("--env is for client-key create (a key's environment is fixed when it is made)")
        try:
            check_name(args.env)
        except EnvironmentConfigError as exc:
            raise UsageError(f"--env: {exc}") from None
    keys = ClientKeyStore(args.token_db or default_token_db(args.store))
    try:
        if args.action == "create":
            if not args.arg:
                raise UsageError("client-key create needs a NAME (the app that will ship the key)")
            info, key = keys.create(args.arg, args.env)
            if out.json:
                out.emit({**info.to_dict(), "key": key})
            else:
                where = f"environment {info.environment!r}" if info.environment else "the default environment"
                out.note(f"created client key {info.id} for {info.name!r} in {where}; it is shown only once:")
                out.line(key)
        elif args.action == "list":
            listed = keys.list()
            if out.json:
                out.emit([k.to_dict() for k in listed])
            else:
                out.table(
                    ["id", "name", "environment", "active"],
                    [
                        [k.id, k.name, k.environment or "(default)", "yes" if k.active else "no"]
                        for k in listed
                    ],
                )
        else:
            if not args.arg:
                raise UsageError("client-key revoke needs the key's ID (see: flagstaff client-key list)")
            info = keys.revoke(args.arg)
            out.emit(info.to_dict()) if out.json else out.line(
                f"revoked client key {info.id} ({info.name!r})"
            )
    except ClientKeyError as exc:
        raise UsageError(str(exc)) from None
    finally:
        keys.close()
    return EXIT.OK
