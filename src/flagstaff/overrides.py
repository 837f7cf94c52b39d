"""Overrides for local work: pin flags on one client without touching its store.

An override is written ``NAME=VALUE``, where ``VALUE`` is one of

==================  ===========================================================
``on`` / ``off``    on (off) for everyone
``NUMBER``          a percentage of users, 0 to 100 (``25``)
``variant:NAME``    on for everyone, with the variant ``NAME``
``JSON``            any flag document (``{"users": ["alice"]}``, ``true``…)
==================  ===========================================================

They come from the command line (``--flag NAME=VALUE``, repeatable, through
:func:`add_argument` for argparse or :func:`click_option` for click) and from
the environment variable ``FLAGSTAFF_OVERRIDES`` (``"a=on,b=off,c=variant:blue"``;
a comma inside JSON brackets or quotes does not split). :func:`install` puts
them on a client, the command line winning over the environment::

    parser = argparse.ArgumentParser()
    flagstaff.overrides.add_argument(parser)
    args = parser.parse_args()
    client = flagstaff.connect("sqlite:///flagstaff.db")
    flagstaff.overrides.install(client, args.flag_overrides)

Guarantees
    * Nothing is written to the store; the override lives in this client only,
      on top of its snapshot (:meth:`flagstaff.Client.set_overrides`). Store
      changes to an overridden flag are held, not served, until it is removed.
    * Every decision from an override has ``Reason.OVERRIDE`` and ``rule``
      naming its source (``--flag``, ``FLAGSTAFF_OVERRIDES``…), so a log or
      ``flagstaff check`` shows it was not the store's answer. An override never
      reports an experiment exposure: local pins must not count in experiments.
    * An override whose document names segments or prerequisites is evaluated
      against the client's current segments and flags, and the store's flags that
      require an overridden flag see the override (an override of ``new_checkout``
      reaches ``new_checkout_v2``, which keeps its own reasons).
    * Bad input raises :class:`~flagstaff.errors.ValidationError` naming the
      override at fault, before anything is applied (all or nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from flagstaff.checks import Run
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import Problem, ValidationError
from flagstaff.model import Env, Flag, parse_flag

if TYPE_CHECKING:
    from flagstaff.client import Client

__all__ = [
    "ENV_VAR",
    "add_argument",
    "click_option",
    "compile_overrides",
    "from_env",
    "install",
    "override_flag",
    "parse_override",
    "parse_overrides",
]

log = logging.getLogger("flagstaff.overrides")

ENV_VAR = "FLAGSTAFF_OVERRIDES"

_SYNTAX = "on, off, a number 0-100, variant:NAME or a JSON flag document"

F = TypeVar("F", bound=Callable[..., Any])


def parse_override(spec: str) -> tuple[str, Any]:
    """``"NAME=VALUE"`` -> ``(name, flag document)``. Raises ``ValidationError``."""
    name, sep, value = spec.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ValidationError([Problem("", f"override {spec!r} must look like NAME=VALUE ({_SYNTAX})")])
    if value in ("on", "off"):
        return name, value
    if value.startswith("variant:"):
        variant = value[len("variant:") :].strip()
        if not variant:
            raise ValidationError([Problem("", f"override {spec!r}: variant:NAME needs a NAME")], flag=name)
        return name, {"enabled": "on", "variants": [variant]}
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        raise ValidationError(
            [Problem("", f"override {spec!r}: the value must be {_SYNTAX}")], flag=name
        ) from None
    return name, document


def parse_overrides(specs: Iterable[str]) -> dict[str, Any]:
    """Several ``NAME=VALUE`` specs -> ``{name: document}`` (a later one wins)."""
    return dict(parse_override(spec) for spec in specs)


def from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The overrides in ``FLAGSTAFF_OVERRIDES`` (``{}`` when unset or blank)."""
    text = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return parse_overrides(spec for spec in _split(text) if spec.strip())


def _split(text: str) -> list[str]:
    """Split on commas that are outside JSON brackets and strings."""
    parts: list[str] = []
    depth, quoted, escaped, start = 0, False, False, 0
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def override_flag(name: str, document: Any, source: str) -> Flag:
    """Validate ``document`` and compile it into a flag whose decisions say
    ``Reason.OVERRIDE`` (``rule=source``). Raises ``ValidationError``."""
    flag = parse_flag(name, document)
    # variant:NAME is one variant for everyone, anonymous visitors too (who have no
    # id to bucket by, so the evaluator alone would give them no variant).
    only = flag.variants[0] if len(flag.variants) == 1 else None

    def tag(decision: Decision) -> Decision:
        if decision.reason is Reason.ERROR:
            return decision  # an error stays an error: it says what went wrong
        variant = decision.variant or (only if decision.enabled else None)
        # No experiment_id: an override is not an experiment exposure.
        return Decision(name, decision.enabled, Reason.OVERRIDE, variant=variant, rule=source)

    def tagged(inner: Run) -> Run:
        def run(context: Context) -> Decision:
            return tag(inner(context))

        return run

    # A document naming segments or prerequisites keeps a link (the client links it to
    # its snapshot), and a linked run is tagged too.
    link = flag.link

    def linked(env: Env) -> Run:
        assert link is not None
        return tagged(link(env))

    return dataclasses.replace(
        flag,
        constant=None if flag.constant is None else tag(flag.constant),
        scheduled_off=None if flag.scheduled_off is None else tag(flag.scheduled_off),
        run=tagged(flag.run),
        quick=None,  # served through the client's full path, which tags the decision
        gate=None,
        link=None if link is None else linked,
    )


def compile_overrides(documents: Mapping[str, Any], source: str) -> dict[str, Flag]:
    """``{name: document}`` -> ``{name: override flag}``; every problem in one error."""
    flags: dict[str, Flag] = {}
    problems: list[Problem] = []
    for name, document in documents.items():
        try:
            flags[name] = override_flag(name, document, source)
        except ValidationError as exc:
            problems.extend(Problem(f"{name}.{p.path}" if p.path else name, p.message) for p in exc.problems)
    if problems:
        raise ValidationError(problems)
    return flags


def install(
    client: Client,
    flags: Iterable[str | tuple[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Replace ``client``'s overrides with those of ``FLAGSTAFF_OVERRIDES`` in
    ``environ`` (default ``os.environ``) and, on top, ``flags``: ``NAME=VALUE``
    strings or ``(name, document)`` pairs (what :func:`add_argument` parses).
    Returns the documents applied, ``{}`` clearing them. All or nothing."""
    try:
        env = from_env(environ)
        env_flags = compile_overrides(env, ENV_VAR)
    except ValidationError as exc:
        # Name the variable: the message is read by someone who did not type the value.
        raise ValidationError(
            [Problem(f"{ENV_VAR}: {p.path}".rstrip(": "), p.message) for p in exc.problems],
            flag=exc.flag,
        ) from None
    given = dict(parse_override(f) if isinstance(f, str) else f for f in flags or ())
    compiled = {**env_flags, **compile_overrides(given, "--flag")}
    if compiled:
        # Loud on purpose: an override left in a shell must not go unnoticed.
        log.warning("flag overrides in force (not from the store): %s", ", ".join(sorted(compiled)))
    client.set_overrides(compiled)
    return {**env, **given}


def _argparse_type(text: str) -> tuple[str, Any]:
    try:
        name, document = parse_override(text)
        # The document itself is checked here too, so `--flag x={"percentage": 150}` is a
        # usage error (exit 2) at parse time rather than a traceback from install() later.
        parse_flag(name, document)
        return name, document
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_argument(parser: argparse.ArgumentParser, *names: str) -> argparse.Action:
    """Add ``--flag NAME=VALUE`` (repeatable) to ``parser``. The parsed
    ``(name, document)`` pairs land in ``args.flag_overrides`` (a list, empty if
    none); pass them to :func:`install`. A bad value is a usage error."""
    return parser.add_argument(
        *(names or ("--flag",)),
        dest="flag_overrides",
        action="append",
        default=[],
        type=_argparse_type,
        metavar="NAME=VALUE",
        help=f"override a flag locally ({_SYNTAX}); repeatable",
    )


def click_option(*names: str) -> Callable[[F], F]:
    """A click decorator adding ``--flag NAME=VALUE`` (repeatable); the command
    receives ``flag_overrides``: a list of ``(name, document)`` pairs for
    :func:`install`. Needs click (already installed by any click application)."""
    import click

    def convert(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str, Any]]:
        try:
            pairs = [parse_override(v) for v in values]
            for name, document in pairs:
                parse_flag(name, document)  # as for argparse: a bad document is a usage error
            return pairs
        except ValidationError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None

    return click.option(
        *(names or ("--flag",)),
        "flag_overrides",
        multiple=True,
        callback=convert,
        metavar="NAME=VALUE",
        help=f"Override a flag locally ({_SYNTAX}); repeatable.",
    )
