"""``flagstaff force-token VALUE``: a signed, expiring ``?feature=`` token for QA.

::

    $ export FLAGSTAFF_FORCE_KEY=...        # the key the site verifies with (>= 16 bytes)
    $ flagstaff force-token new_checkout --ttl 2h
    bmV3X2NoZWNrb3V0.1765000000.Jx...

Open ``https://example.com/cart?feature=<token>`` and the site's middleware forces
``new_checkout`` for that request until the token expires (see :mod:`flagstaff.forcing`).
The token goes to stdout alone (for ``$(...)``); ``--json`` adds the value and the expiry.
The key is read from the environment variable ``--key-env`` names, never from an
argument, so it stays out of shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import os

from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.forcing import KEY_ENV, check_key, issue
from flagstaff.forcing import parse_ttl as _parse_ttl

__all__ = ["cmd_force_token", "parse_ttl", "register"]


def parse_ttl(text: str) -> float:
    """:func:`flagstaff.forcing.parse_ttl` for argparse."""
    try:
        return _parse_ttl(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(command: Commands) -> None:
    """Add ``flagstaff force-token`` (see the module doc)."""
    p = command("force-token", cmd_force_token, "make a signed, expiring ?feature= token for QA forcing")
    p.add_argument("value", metavar="VALUE", help="the feature value to force (a url selector's name)")
    p.add_argument("--ttl", type=parse_ttl, default=3600.0, metavar="DURATION", help="lifetime (default 1h)")
    p.add_argument(
        "--key-env",
        default=KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the signing key (default {KEY_ENV})",
    )


def cmd_force_token(args: argparse.Namespace, out: Out) -> int:
    raw = os.environ.get(args.key_env)
    if not raw:
        raise UsageError(
            f"no signing key: set ${args.key_env} to the key the site verifies tokens with "
            "(at least 16 bytes)"
        )
    try:
        made = issue(args.value, check_key(raw, source=f"${args.key_env}"), args.ttl)
    except ValueError as exc:  # a ForceKeyError is one too
        raise UsageError(str(exc)) from None
    if out.json:
        out.emit(made.to_dict())
    else:
        out.line(made.token)
    return EXIT.OK
