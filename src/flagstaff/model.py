"""Flags: documents validated once into frozen, precompiled :class:`Flag` objects.

:func:`parse_flag` takes a decoded document (its wire format is
:mod:`flagstaff.document`'s) and checks every key, collecting every problem with
its path; it raises :class:`~flagstaff.errors.ValidationError` listing them all
and never repairs a document silently. A valid document is compiled, in the same
pass, into one function of the context from the factories of
:mod:`flagstaff.checks`. :func:`parse_text` is the one step from a stored record
(text or bytes) to a flag.

A flag that refers to other documents (segments, prerequisite flags, the holdout
segments its experiment respects) is compiled once too, into ``Flag.link``: a
function from an :class:`Env` (one snapshot's flags and segments) to the flag's
run; :meth:`Flag.linked` binds it. Such a flag's own ``run`` is linked to
:data:`EMPTY_ENV` (no segment has a member, every prerequisite is missing).

``"enabled"`` in an object is the master switch: ``"off"`` or ``false`` turns
the flag off for everyone whatever the other keys say; ``"on"`` turns it on for
everyone; ``true`` (the default) lets the other keys decide. An object with no
selector at all is off.

The wire-format names this module used to define (``decode_document``,
``encode_document``, ``validate_name``, the key tables…) live in
:mod:`flagstaff.document` and are re-exported here, so ``flagstaff.model``
imports keep working.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, cast

from flagstaff import checks, document
from flagstaff.bucketing import (
    REDDIT_CONTROLS,
    BucketBy,
    BucketingMode,
    layer_test,
    split_chooser,
    user_gate,
    variant_chooser,
    variant_picker,
)
from flagstaff.checks import Check, Run
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.document import (
    DENY_KEYS,
    EXPERIMENT_KEYS,
    GROUP_SELECTORS,
    GUARDRAIL_KEYS,
    LAYER_KEYS,
    PERCENT_KEYS,
    PREREQUISITE_KEYS,
    RAMP_KEYS,
    RAMP_STEP_KEYS,
    SCHEDULE_KEYS,
    SELECTOR_KEYS,
    SERVE_KEYS,
    TARGETING_KEYS,
    check_new_name,
    decode_document,
    encode_document,
    json_schema,
    name_key,
    printable_text,
    validate_name,
)
from flagstaff.errors import Problem, ValidationError
from flagstaff.members import COMPACT_ABOVE, users_test
from flagstaff.rules import Condition, compile_regex, parse_clause, parse_instant, parse_rules, show, suggest
from flagstaff.segments import Segment

__all__ = [
    "EMPTY_ENV",
    "Env",
    "Experiment",
    "Flag",
    "Guardrail",
    "Kind",
    "Layer",
    "Ramp",
    "Reference",
    "Schedule",
    "Switch",
    "check_new_name",
    "decide_flag",
    "decode_document",
    "encode_document",
    "json_schema",
    "name_key",
    "parse_flag",
    "parse_flags",
    "parse_text",
    "printable_text",
    "references",
    "validate_name",
]

# flagstaff.document's, importable from here too (outer modules do); new code imports them
# from flagstaff.document.
MAX_DOCUMENT_BYTES = document.MAX_DOCUMENT_BYTES
TOP_KEYS = document.TOP_KEYS


class Switch(StrEnum):
    """The master switch of a flag."""

    ON = "on"  # on for everyone
    OFF = "off"  # off for everyone: the kill switch
    TARGETED = "targeted"  # the other keys decide


class Kind(StrEnum):
    """What a flag is for, and so whether it is meant to be removed once rolled out.

    ``temporary`` and ``permanent`` say only that; the four purposes (issue 16) say
    why: a ``release`` or an ``experiment`` flag is temporary (it goes once the
    feature ships or the experiment ends; a stale one is reported), an ``ops``
    switch (a kill switch, a circuit breaker) or a ``permission`` (entitlement) is
    permanent.
    """

    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    RELEASE = "release"
    EXPERIMENT = "experiment"
    OPS = "ops"
    PERMISSION = "permission"

    @property
    def temporary(self) -> bool:
        """Whether a flag of this kind is meant to be removed (a stale one is reported)."""
        return self in _TEMPORARY_KINDS


_TEMPORARY_KINDS = frozenset({Kind.TEMPORARY, Kind.RELEASE, Kind.EXPERIMENT})


@dataclass(frozen=True, slots=True)
class Schedule:
    """On from ``start`` (inclusive) until ``end`` (exclusive), epoch seconds."""

    start: float | None = None
    end: float | None = None

    def active(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class Ramp:
    """``ramp``: a progressive rollout. ``steps`` are ``(at, percentage)`` pairs, times
    (epoch seconds) strictly increasing and percentages non-decreasing: from ``at``
    the flag-level percentage is that step's; before the first step it is 0."""

    steps: tuple[tuple[float, float], ...]

    def step(self, now: float) -> int:
        """The index of the step in force at ``now``; -1 before the first."""
        return bisect_right([at for at, _ in self.steps], now) - 1

    def percentage(self, now: float) -> float:
        """The percentage in force at ``now`` (0 before the first step)."""
        i = self.step(now)
        return 0.0 if i < 0 else self.steps[i][1]


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A ``guardrails`` entry: the rate of ``metric`` (the share of units with at least
    one such event) in the treatment may exceed control's by at most ``max_increase``
    (absolute, 0.02 = 2 points); judged once both arms have ``min_units`` units.
    Metadata for :mod:`flagstaff.guard`: evaluation never reads it."""

    metric: str
    max_increase: float
    min_units: int = 100


@dataclass(frozen=True, slots=True)
class Layer:
    """``experiment.layer``: experiments of one layer whose ranges do not overlap never
    share a context (each reads the same bucket, ``"layer:" + name``, in [0, 100))."""

    name: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B experiment: who is eligible, and the variant weights (percent)."""

    experiment_id: int | None
    variants: Mapping[str, float]
    enabled: bool
    eligibility: tuple[str, ...]
    layer: Layer | None = None
    holdout: bool = True
    """Whether members of holdout segments are kept out (``experiment.holdout``)."""

    @property
    def controls(self) -> tuple[str, ...]:
        return tuple(v for v in self.variants if v in REDDIT_CONTROLS)


class Env(Protocol):
    """What a flag that refers to other documents evaluates against: the flags and
    segments of one snapshot (:mod:`flagstaff.snapshot` builds it)."""

    @property
    def flags(self) -> Mapping[str, Flag]: ...

    @property
    def segments(self) -> Mapping[str, Segment]: ...

    @property
    def holdouts(self) -> tuple[Segment, ...]:
        """The segments with ``holdout: true``: their members see no experiment."""
        ...


@dataclass(frozen=True, slots=True)
class _EmptyEnv:
    flags: Mapping[str, Flag] = field(default_factory=lambda: MappingProxyType({}))
    segments: Mapping[str, Segment] = field(default_factory=lambda: MappingProxyType({}))
    holdouts: tuple[Segment, ...] = ()


EMPTY_ENV: Env = _EmptyEnv()
"""No other flag, no segment: what an unlinked flag evaluates against (a segment it
names has no member, a prerequisite it names is missing)."""

_NO_VALUES: Mapping[str, Any] = MappingProxyType({})
_NO_SEGMENTS: frozenset[str] = frozenset()  # shared: frozenset() is a new object each call


@dataclass(frozen=True, slots=True)
class Flag:
    """A validated flag. Build it with :func:`parse_flag`, never by hand.

    ``run`` is the whole flag compiled into one function of the context (the
    schedule aside, which needs the clock): :func:`flagstaff.evaluate.evaluate`
    calls it. ``constant`` is set when the answer does not depend on the context
    at all (``"on"``, ``"off"``, a kill switch), so evaluation is one attribute
    read.
    """

    name: str
    document: str = field(repr=False)  # canonical JSON text of what was given
    switch: Switch
    mode: BucketingMode
    salt: str
    description: str | None
    owner: str | None
    kind: Kind | None
    tags: tuple[str, ...]
    created: str | None
    schedule: Schedule | None
    percentages: Mapping[str, float]
    variants: tuple[str, ...]
    experiment: Experiment | None
    selectors: tuple[str, ...]
    constant: Decision | None = field(repr=False)
    run: Run = field(repr=False, compare=False)
    scheduled_off: Decision | None = field(repr=False)  # set when there is a schedule
    requires: tuple[str, ...] = ()
    """The flags named as prerequisites, in document order."""
    segments: frozenset[str] = _NO_SEGMENTS
    """The segments the flag names (targeting rules, ``deny``), without the prefix."""
    experiments: bool = False
    """Whether the flag runs an experiment (holdout segments apply to it)."""
    values: Mapping[str, Any] = field(default_factory=lambda: _NO_VALUES, repr=False)
    """``values``: the JSON value served with each variant (and with ``on``/``off``)."""
    link: Callable[[Env], Run] | None = field(default=None, repr=False, compare=False)
    """For a flag that refers to other documents (:attr:`needs_env`): its compiled
    function given the snapshot it is evaluated in. ``run`` is ``link(EMPTY_ENV)``
    until :meth:`linked` binds it."""
    timed: bool = False
    """Whether the evaluator reads the time before ``run``: a schedule, or prerequisites
    (which are decided at the same moment, through ``ctx.time``)."""
    denies: bool = False
    """Whether the flag has a ``deny`` list: it is checked before the schedule (``run``
    checks it first, and the evaluator asks ``run`` when the schedule is not active)."""
    ramp: Ramp | None = None
    """``ramp``: the flag-level percentage by time. A flag with a ramp also has a
    :attr:`schedule` (``Schedule()``, always active, when the document gives none), so
    every caller that reads the clock for a schedule reads it for the ramp; its ``run``
    reads the time from ``ctx.time``, which the evaluator sets."""
    guardrails: tuple[Guardrail, ...] = ()
    """``guardrails``, for :mod:`flagstaff.guard`."""
    archived: bool = False
    """``"archived": true``: the flag is retired. It evaluates off for everyone (reason
    ``archived``) whatever its other keys say, which are kept (with its history) so
    :meth:`flagstaff.admin.Admin.restore` brings it back as it was."""
    client_visible: bool = False
    """``client_visible``: browsers and mobile apps may see this flag's decisions, through a
    public client key (``/api/v1/client/evaluate``, docs/clientside.md). Default false."""
    quick: Run | None = field(default=None, repr=False, compare=False)
    """The decision in one call when it needs nothing but the context and can never be an
    exposure: the :attr:`constant`'s, or :attr:`run` for a flag with no schedule, ramp or
    prerequisite (nothing reads the clock) and no experiment. ``Client.is_enabled`` answers
    such a flag with that call alone; ``None`` for every other flag (the full path decides)."""
    gate: tuple[int, int] | None = field(default=None, repr=False, compare=False)
    """``(seed, limit)`` when :attr:`quick` is a plain by-user percentage (on inside, off
    outside): ``Client.is_enabled`` then buckets inline (see
    :func:`flagstaff.bucketing.user_gate`). ``None`` otherwise."""

    @property
    def value(self) -> Any:
        """The document as a JSON value (a fresh copy)."""
        return json.loads(self.document)

    @property
    def needs_env(self) -> bool:
        """Whether evaluation reads other documents (segments, prerequisites, holdouts)."""
        return self.link is not None

    def linked(self, env: Env) -> Flag:
        """This flag evaluating against ``env`` (itself when it refers to nothing)."""
        link = self.link
        if link is None:
            return self
        return _copy_flag(self, link(env))

    def value_of(self, decision: Decision) -> Any:
        """The value ``decision`` serves: ``values[variant]``, else ``values["on"]`` or
        ``values["off"]`` (by ``decision.enabled``), else the variant's name, else
        ``decision.enabled``."""
        values = self.values
        variant = decision.variant
        if variant is not None and variant in values:
            return values[variant]
        key = "on" if decision.enabled else "off"
        if key in values:
            return values[key]
        return variant if variant is not None else decision.enabled

    @property
    def needs_clock(self) -> bool:
        return self.schedule is not None


_FLAG_SLOTS = tuple(f.name for f in fields(Flag))


def _generated(signature: str, value: Callable[[str], str]) -> Any:
    """A function ``def f(<signature>)`` returning a new :class:`Flag` whose slot ``s``
    is the expression ``value(s)``, set without ``__init__``.

    Straight-line calls of each slot's own descriptor (which a frozen class does not
    intercept): a frozen dataclass's ``__init__`` goes through ``object.__setattr__``
    per field (~3 us for a flag), a loop of it ~3.3 us, this ~1.2 us. Flag has no
    ``__post_init__``, so nothing is skipped; a field added to :class:`Flag` is
    handled with no change here."""
    namespace: dict[str, Any] = {"new": object.__new__, "Flag": Flag}
    lines = [f"def f({signature}):", "    out = new(Flag)"]
    for i, slot in enumerate(_FLAG_SLOTS):
        namespace[f"set{i}"] = Flag.__dict__[slot].__set__
        lines.append(f"    set{i}(out, {value(slot)})")
    lines.append("    return out")
    exec("\n".join(lines), namespace)  # built from the slot names only
    return namespace["f"]


# ``copy(flag, run)``: ``flag`` with ``run`` replaced. A segment change re-links every
# flag using it (dataclasses.replace: ~8 us a flag, this: ~1.2 us).
_copy_flag: Callable[[Flag, Run], Flag] = _generated(
    "flag, run",
    lambda slot: {"run": "run", "quick": "None if flag.quick is None else run", "gate": "None"}.get(
        slot, "flag." + slot
    ),
)

# ``Flag(**fields)`` for the parser, every field given (~1.2 us less a flag); typed as
# Flag itself so mypy checks the parser's call against the fields.
if TYPE_CHECKING:
    _new_flag = Flag
else:
    _new_flag = _generated("*, " + ", ".join(_FLAG_SLOTS), lambda slot: slot)

# --------------------------------------------------------------------------- parsing


def parse_flag(name: str, value: Any) -> Flag:
    """Validate ``value`` (a decoded JSON document) and compile it into a :class:`Flag`.

    Raises :class:`ValidationError` naming every field at fault.
    """
    problems = validate_name(name)
    if problems:
        raise ValidationError(problems, flag=str(name))
    try:
        text = encode_document(value)
        size = len(text.encode())  # UnicodeEncodeError (a ValueError) for a lone surrogate
    except (TypeError, ValueError) as exc:
        raise ValidationError([Problem("", f"not representable as JSON: {exc}")], flag=name) from None
    if size > MAX_DOCUMENT_BYTES:
        message = f"document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB"
        if isinstance(value, dict) and '"users":[' in text:
            # A flag is one document; a segment's users may fill 64 MiB (stored in parts).
            message += (
                ": use a segment for lists this large (a segment's users are stored in parts, "
                "up to 64 MiB; name it in a targeting rule's segments)"
            )
        raise ValidationError([Problem("", message)], flag=name)
    builder = _Builder(name, text, problems)
    flag = builder.build(value)
    if problems or flag is None:
        raise ValidationError(problems or [Problem("", "invalid document")], flag=name)
    return flag


def parse_text(name: str, raw: str | bytes) -> Flag:
    """The one step from a stored record to a :class:`Flag`: decode ``raw`` (the
    record's text, or its bytes) and compile it.

    Anything wrong with it, including a value no check foresaw (a store's bug, a
    parser's), is a :class:`ValidationError` naming the flag: a caller following a
    store skips one bad document and goes on, never ends its watch on it.
    """
    try:
        return parse_flag(name, decode_document(raw))
    except ValidationError:
        raise
    except Exception as exc:
        problem = Problem("", f"cannot read the document: {type(exc).__name__}: {exc}")
        raise ValidationError([problem], flag=str(name)) from exc


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class _Builder:
    """Parses one document, collecting problems rather than stopping at the first."""

    def __init__(self, name: str, text: str, problems: list[Problem]) -> None:
        self.name = name
        self.text = text
        self.problems = problems
        self.mode = BucketingMode.FLAGSTAFF
        self.salt = name
        self.bucket_by = BucketBy.USER
        self.default = Decision(name, False, Reason.DEFAULT)
        # What a compiled check answers when it does not match: None lets the
        # next check decide; ``default`` when the check is the whole flag.
        self.miss: Decision | None = None
        # An attribute ``bucket_by``: the key every bucketed part reads (None: user/cookie).
        self.source: checks.KeySource | None = None
        self.declared: set[str] = set()  # variant names the document declares (for values)
        # Large users lists compiled so far, by the id of the document's list (held, so the
        # id stays its own): a terminal selector is compiled twice (see obj()), and a
        # million-member list should be hashed and sorted once.
        self.large: dict[int, tuple[Any, checks.Member]] = {}
        self.segment_refs: dict[str, str] = {}  # segment name -> first path naming it
        self.requires: tuple[str, ...] = ()

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- decisions ---------------------------------------------------------

    def decision(self, enabled: bool, reason: Reason, rule: str | None = None, **kw: Any) -> Decision:
        return Decision(self.name, enabled, reason, rule=rule, **kw)

    # -- entry ---------------------------------------------------------------

    def build(self, value: Any) -> Flag | None:
        if isinstance(value, bool):
            return self.simple(Switch.ON if value else Switch.OFF, {})
        if isinstance(value, str):
            if value in ("on", "off"):
                return self.simple(Switch(value), {})
            self.problem(
                "",
                f"a string flag must be 'on' or 'off', not {value!r}; "
                "for a percentage write a number such as 25",
            )
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem("", f"a percentage must be a finite number between 0 and 100, not {value}")
            return None
        if _is_number(value):
            if not 0 <= value <= 100:
                self.problem("", f"a percentage must be between 0 and 100, not {value}")
                return None
            return self.simple(Switch.TARGETED, {"percentage": float(value)})
        if not isinstance(value, dict):
            self.problem("", f"a flag must be 'on', 'off', a percentage or an object, not {_kind(value)}")
            return None
        if len(value) == 1 and "percentage" in value:
            p = value["percentage"]
            if _is_number(p) and 0 <= p <= 100:
                # The commonest document compiles exactly as its bare number (obj()
                # reaches the same parts; a test holds them equal), at a third of the cost.
                return self.simple(Switch.TARGETED, {"percentage": float(p)})
        return self.obj(value)

    def simple(self, switch: Switch, percentages: dict[str, float]) -> Flag:
        # A bare percentage compiles its single check to answer ``default`` itself.
        steps: list[Part] = []
        if switch is Switch.TARGETED:
            steps.extend(self.percentage_checks(percentages, self.default))
        return self.assemble(switch, {}, percentages, (), None, (), None, steps, None, True, _Extras())

    def obj(self, doc: dict[str, Any]) -> Flag | None:
        for key in doc:
            if key not in TOP_KEYS:
                self.problem(str(key), f"unknown key{suggest(str(key), TOP_KEYS)}")
        switch = self.switch(doc.get("enabled", True), "enabled")
        meta = self.meta(doc)
        if "salt" in doc:
            if isinstance(doc["salt"], str) and doc["salt"]:
                self.salt = doc["salt"]
            else:
                self.problem("salt", "must be a non-empty string")
        if "bucketing" in doc:
            mode = doc["bucketing"]
            if isinstance(mode, str) and mode in _MODES:
                self.mode = BucketingMode(mode)
            else:
                modes = ", ".join(m.value for m in BucketingMode)
                self.problem("bucketing", f"unknown mode {show(mode)}; expected one of {modes}")
        if "bucket_by" in doc:
            self.bucket_by, self.source = checks.bucket_source(doc["bucket_by"], "bucket_by", self.problems)
        schedule = self.schedule(doc["schedule"]) if "schedule" in doc else None
        ramp = self.ramp(doc["ramp"]) if "ramp" in doc else None
        if "ramp" in doc and "percentage" in doc:
            self.problem(
                "ramp",
                "a flag has either a 'percentage' or a 'ramp' (whose steps set the percentage "
                "over time), not both; put the current percentage in a ramp step",
            )
        if ramp is not None and schedule is None:
            schedule = Schedule()  # always active: routes every caller through the clock
        guardrails = self.guardrails(doc["guardrails"]) if "guardrails" in doc else ()
        selectors, legacy = self.selectors(doc, "")
        steps: list[Part] = list(legacy)
        percentages: dict[str, float] = {}
        for key in PERCENT_KEYS:
            if key in doc:
                p = doc[key]
                if not _is_number(p) or not 0 <= p <= 100:
                    self.problem(key, f"must be a number between 0 and 100, not {show(p)}")
                else:
                    percentages[key] = float(p)
        variants = self.variant_list(doc["variants"]) if "variants" in doc else ()
        experiment = self.experiment(doc["experiment"]) if "experiment" in doc else None
        if variants and experiment is not None:
            self.problem(
                "variants",
                "a flag has either a top-level 'variants' list or an 'experiment', not both; "
                "put weighted variants in experiment.variants",
            )
        extras = _Extras()
        if "deny" in doc:
            extras.deny = self.deny(doc["deny"])
        if "prerequisites" in doc:
            extras.prerequisites = self.prerequisites(doc["prerequisites"])
        if "targeting" in doc:
            extras.targeting = self.targeting(doc["targeting"])
        if "default" in doc:
            extras.default = self.serve(doc["default"], "default", Reason.DEFAULT, "default")
        if variants:
            self.declared.update(variants)
        if experiment is not None:
            self.declared.update(experiment.variants)
        if "values" in doc:
            extras.values = self.values(doc["values"])
        if self.problems:
            return None
        # The url selector forces a variant even when "enabled" is "on", as in reddit.
        forcing = "url" in selectors and isinstance(doc["url"], dict)
        url_check = legacy[selectors.index("url")] if forcing else None
        plain = extras.plain
        # A lone percentage (the commonest flag) compiles to answer ``default``
        # itself, saving a call per evaluation; see assemble().
        exp_check = self.experiment_check(doc.get("experiment"), experiment)
        extras.experiments = exp_check is not None and experiment is not None and experiment.holdout
        ramp_check = None if ramp is None else self.ramp_check(ramp)
        lone = (
            plain
            and not steps
            and exp_check is None
            and ramp_check is None
            and sum(p > 0 for p in percentages.values()) == 1
        )
        steps.extend(self.percentage_checks(percentages, self.default if lone else None))
        if ramp_check is not None:
            steps.append(ramp_check)  # the flag-level percentage, by time
        if exp_check is not None:
            steps.append(exp_check)
        terminal = plain and switch is Switch.TARGETED and len(steps) == 1 and ramp_check is None
        if terminal and not lone:
            # One selector or the experiment is the whole flag: compile it again
            # answering ``default`` itself, saving a call per evaluation.
            self.miss = self.default
            if exp_check is not None:
                again = self.experiment_check(doc.get("experiment"), experiment)
                steps = [] if again is None else [again]
            else:
                _, legacy = self.selectors(doc, "")
                steps = list(legacy)
            self.miss = None
        extras.ramp, extras.guardrails = ramp, guardrails
        return self.assemble(
            switch,
            meta,
            percentages,
            tuple(selectors),
            experiment,
            variants,
            schedule,
            steps,
            url_check,
            terminal,
            extras,
        )

    def assemble(  # noqa: PLR0913 (the parts of one flag, in build order)
        self,
        switch: Switch,
        meta: dict[str, Any],
        percentages: dict[str, float],
        selectors: tuple[str, ...],
        experiment: Experiment | None,
        variants: tuple[str, ...],
        schedule: Schedule | None,
        steps: list[Part],
        url_check: Check | None,
        terminal: bool,
        extras: _Extras,
    ) -> Flag:
        """Build the flag. ``terminal``: a single check in ``steps`` was compiled
        to answer ``default`` itself and is used as the flag's ``run``.

        Evaluation order: ``deny`` and ``prerequisites`` first (the schedule sits
        between them, in :func:`flagstaff.evaluate.evaluate`), then ``steps`` (url
        forcing, selectors, percentages, the experiment), then ``targeting`` and the
        ``default`` serve. A part that reads the snapshot (segments, prerequisites,
        holdouts) is a :class:`_Late`: the flag gets a ``link`` that builds its run
        for a given :class:`Env`."""
        default = self.default
        fallback = default
        constant: Decision | None = None
        head: list[Part] = [p for p in (extras.deny, extras.prerequisites) if p is not None]
        archived = bool(meta.get("archived"))
        if archived:  # retired: off for everyone, before the kill switch and every key
            constant = self.decision(False, Reason.ARCHIVED, "archived")
            steps = []
        elif switch is Switch.OFF:
            constant = self.decision(False, Reason.OFF, "enabled")
            steps = []
        elif switch is Switch.ON:
            fallback = self.decision(True, Reason.ON, "enabled")
            steps = [*head, *([] if url_check is None else [url_check])]
            if not steps and not variants and schedule is None:
                constant = fallback
        else:
            if isinstance(extras.default, Decision):
                fallback = extras.default
            steps = [*head, *steps]
            if extras.targeting is not None:
                steps.append(extras.targeting)
            if extras.default is not None and not isinstance(extras.default, Decision):
                steps.append(cast(Check, extras.default))
            if not steps and schedule is None and (not variants or not fallback.enabled):
                constant = fallback
        pick = variant_picker(self.mode, self.salt, variants) if variants else None
        single = switch is Switch.TARGETED and terminal and len(steps) == 1
        link: _Link | None = None
        if any(isinstance(p, _Late) for p in steps):
            link = _Link(tuple(steps), single, fallback, pick, self.name, self.source)
            run = link(EMPTY_ENV)
            constant = None
        else:
            run = _finish(cast(list[Check], steps), single, fallback, pick, self.name, self.source)
        quick = _quick(run, constant, schedule is None and not self.requires and experiment is None)
        return _new_flag(
            name=self.name,
            document=self.text,
            switch=switch,
            mode=self.mode,
            salt=self.salt,
            description=meta.get("description"),
            owner=meta.get("owner"),
            kind=meta.get("kind"),
            tags=meta.get("tags", ()),
            created=meta.get("created"),
            schedule=schedule,
            percentages=percentages,
            variants=variants,
            experiment=experiment,
            selectors=selectors,
            constant=constant,
            run=run,
            scheduled_off=None if schedule is None else self.decision(False, Reason.SCHEDULE, "schedule"),
            requires=self.requires,
            segments=frozenset(self.segment_refs) if self.segment_refs else _NO_SEGMENTS,
            experiments=extras.experiments and switch is Switch.TARGETED,
            values=extras.values,
            link=link,
            timed=schedule is not None or bool(self.requires),
            denies=extras.deny is not None and switch is not Switch.OFF,
            ramp=extras.ramp,
            guardrails=extras.guardrails,
            archived=archived,
            client_visible=meta.get("client_visible", False),
            quick=quick,
            gate=user_gate(quick),
        )

    # -- pieces ----------------------------------------------------------------

    def switch(self, value: Any, path: str) -> Switch:
        if value is True:
            return Switch.TARGETED
        if value is False or value == "off":
            return Switch.OFF
        if value == "on":
            return Switch.ON
        self.problem(path, f"must be 'on', 'off', true or false, not {show(value)}")
        return Switch.TARGETED

    def meta(self, doc: dict[str, Any]) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        for key in ("description", "owner", "created"):
            if key in doc:
                if isinstance(doc[key], str):
                    meta[key] = doc[key]
                else:
                    self.problem(key, "must be a string")
        if "kind" in doc:
            try:
                meta["kind"] = Kind(doc["kind"])
            except ValueError:
                kinds = ", ".join(repr(k.value) for k in Kind)
                self.problem("kind", f"must be one of {kinds}, not {show(doc['kind'])}")
        if "client_visible" in doc:
            if isinstance(doc["client_visible"], bool):
                meta["client_visible"] = doc["client_visible"]
            else:
                self.problem("client_visible", "must be true or false")
        if "tags" in doc:
            tags = doc["tags"]
            if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
                meta["tags"] = tuple(tags)
            else:
                self.problem("tags", "must be a list of strings")
        if "archived" in doc:
            if isinstance(doc["archived"], bool):
                meta["archived"] = doc["archived"]
            else:
                self.problem("archived", f"must be true or false, not {show(doc['archived'])}")
        return meta

    def schedule(self, value: Any) -> Schedule | None:
        if not isinstance(value, dict):
            self.problem("schedule", "must be an object with 'start' and/or 'end'")
            return None
        bounds: dict[str, float | None] = dict.fromkeys(SCHEDULE_KEYS)
        for key, item in value.items():
            if key not in bounds:
                self.problem(f"schedule.{key}", "unknown key; expected 'start' or 'end'")
                continue
            when = parse_instant(item)
            if when is None:
                self.problem(
                    f"schedule.{key}",
                    f"{show(item)} is not a time: use ISO 8601 with a UTC offset "
                    "(e.g. '2027-01-01T00:00:00Z') or epoch seconds",
                )
            bounds[key] = when
        start, end = bounds["start"], bounds["end"]
        if start is not None and end is not None and end <= start:
            self.problem("schedule", "'end' must be after 'start'")
        if start is None and end is None and not any(p.path.startswith("schedule") for p in self.problems):
            self.problem("schedule", "needs 'start', 'end' or both")
        return Schedule(start, end)

    def ramp(self, value: Any) -> Ramp | None:
        if not isinstance(value, dict):
            self.problem("ramp", "must be an object with 'steps': [{'at': TIME, 'percentage': P}, ...]")
            return None
        for key in value:
            if key not in RAMP_KEYS:
                hint = suggest(str(key), RAMP_KEYS) or "; expected 'steps'"
                self.problem(f"ramp.{key}", f"unknown key{hint}")
        raw = value.get("steps")
        if not isinstance(raw, list) or not raw:
            self.problem("ramp.steps", "must be a non-empty list of {'at': TIME, 'percentage': P}")
            return None
        steps: list[tuple[float, float]] = []
        bad = False
        for i, item in enumerate(raw):
            path = f"ramp.steps[{i}]"
            if not isinstance(item, dict):
                self.problem(path, f"must be an object with 'at' and 'percentage', not {_kind(item)}")
                bad = True
                continue
            for key in item:
                if key not in RAMP_STEP_KEYS:
                    self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), RAMP_STEP_KEYS)}")
            missing = [k for k in RAMP_STEP_KEYS if k not in item]
            if missing:
                self.problem(path, "needs " + " and ".join(repr(k) for k in missing))
                bad = True
                continue
            when = parse_instant(item["at"])
            if when is None:
                self.problem(
                    f"{path}.at",
                    f"{show(item['at'])} is not a time: use ISO 8601 with a UTC offset "
                    "(e.g. '2027-01-01T00:00:00Z') or epoch seconds",
                )
            p = item["percentage"]
            if not _is_number(p) or not 0 <= p <= 100:
                self.problem(f"{path}.percentage", f"must be a number between 0 and 100, not {show(p)}")
                p = None
            if when is None or p is None:
                bad = True
                continue
            if steps and not bad:
                prev_at, prev_p = steps[-1]
                if when <= prev_at:
                    self.problem(
                        f"{path}.at", f"must be after ramp.steps[{i - 1}].at (steps go in time order)"
                    )
                if p < prev_p:
                    self.problem(
                        f"{path}.percentage",
                        f"{p:g} is less than ramp.steps[{i - 1}].percentage ({prev_p:g}): a ramp "
                        "only goes up (to roll back, turn the flag off or edit the steps)",
                    )
            steps.append((when, float(p)))
        return None if bad else Ramp(tuple(steps))

    def guardrails(self, value: Any) -> tuple[Guardrail, ...]:
        if not isinstance(value, list):
            self.problem("guardrails", "must be a list of {'metric': M, 'max_increase': X, 'min_units': N}")
            return ()
        out: list[Guardrail] = []
        for i, item in enumerate(value):
            path = f"guardrails[{i}]"
            if not isinstance(item, dict):
                self.problem(path, f"must be an object with 'metric' and 'max_increase', not {_kind(item)}")
                continue
            for key in item:
                if key not in GUARDRAIL_KEYS:
                    self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), GUARDRAIL_KEYS)}")
            metric: Any = item.get("metric")
            bound: Any = item.get("max_increase")
            units: Any = item.get("min_units", 100)
            ok = True
            if not isinstance(metric, str) or not metric:
                self.problem(f"{path}.metric", f"must be a metric (event) name, not {show(metric)}")
                ok = False
            if not _is_number(bound) or not 0 < bound <= 1:
                self.problem(
                    f"{path}.max_increase",
                    f"must be a rate increase above 0 and at most 1 (0.02 is 2 points), not {show(bound)}",
                )
                ok = False
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                self.problem(f"{path}.min_units", f"must be a whole number, at least 1, not {show(units)}")
                ok = False
            if ok:
                out.append(Guardrail(str(metric), float(cast(float, bound)), int(units)))
        return tuple(out)

    def ramp_check(self, ramp: Ramp) -> Check:
        """The ramp as a check: the step in force at ``ctx.time`` decides as a
        flag-level ``percentage`` of that step's size would (same bucket, same salt:
        a unit in at one step is in at every later one); rule ``ramp[i]``."""
        ats = [at for at, _ in ramp.steps]
        compiled: list[Check | None] = []
        for i, (_, pct) in enumerate(ramp.steps):
            if pct <= 0:
                compiled.append(None)
                continue
            d = self.decision(True, Reason.PERCENTAGE, f"ramp[{i}]")
            if self.source is not None:
                compiled.append(checks.percentage_by(self.mode, self.salt, self.source, pct, d, None))
            else:
                compiled.append(checks.percentage(self.mode, self.salt, self.bucket_by, pct, d, None))
        return checks.ramp(ats, tuple(compiled))

    def string_list(self, value: Any, path: str) -> list[str] | None:
        if (
            isinstance(value, list) and set(map(type, value)) <= _STR
        ):  # C speed: a list may hold 1,000,000 ids
            return list(value)
        if isinstance(value, list) and all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in value
        ):
            return [str(v) for v in value]
        self.problem(path, "must be a list of strings")
        return None

    def flag_bool(self, value: Any, path: str) -> bool | None:
        # reddit compares selector values for truthiness; we insist on booleans
        # so that {"admin": "false"} is refused rather than silently true.
        if isinstance(value, bool):
            return value
        self.problem(path, f"must be true or false, not {show(value)}")
        return None

    def selectors(self, doc: dict[str, Any], prefix: str) -> tuple[list[str], list[Check]]:
        """Compile the selectors present in ``doc`` (top level or experiment).

        Group-membership selectors (``admin``, ``employee``, ``gold``, ``beta``,
        ``groups``) are adjacent in evaluation order and compile into one check
        that does a single set-intersection test for the common miss.
        """
        names: list[str] = []
        steps: list[Check] = []
        membership: list[tuple[frozenset[str], Decision]] = []
        position = 0
        for key in SELECTOR_KEYS:
            if key not in doc:
                continue
            path = prefix + key
            if key in GROUP_SELECTORS or key == "groups":
                wanted = self.group_selector(key, doc[key], path)
                if wanted:
                    if not membership:
                        position = len(steps)
                    membership.append((wanted, self.decision(True, Reason.TARGET, key)))
                    names.append(key)
                continue
            check = self.selector(key, doc[key], path)
            if check is not None:
                names.append(key)
                steps.append(check)
        if membership:
            steps.insert(position, checks.membership(tuple(membership), self.miss))
        return names, steps

    def group_selector(self, key: str, value: Any, path: str) -> frozenset[str] | None:
        if key == "groups":
            groups = self.string_list(value, path)
            return None if groups is None else frozenset(groups)
        # admin, employee, gold, beta: true means "members of that group"; false
        # selects nobody, as in reddit, so it is dropped.
        return frozenset({key}) if self.flag_bool(value, path) else None

    def selector(self, key: str, value: Any, path: str) -> Check | None:
        d = self.decision(True, Reason.TARGET, key)
        miss = self.miss
        if key in ("everyone", "loggedin", "loggedout"):
            if not self.flag_bool(value, path):  # false selectors select nobody: drop them
                return None
            if key == "everyone":
                return checks.always(d)
            return checks.logged_in(d, miss) if key == "loggedin" else checks.logged_out(d, miss)
        if key == "url":
            return self.url_selector(value, path)
        if key == "regex":
            rx = compile_regex(value, path, self.problems)
            return None if rx is None else checks.regex(d, rx.search, miss)
        if key == "rules":
            return self.rules(value, path)
        items = self.string_list(value, path)
        if items is None:
            return None
        if key == "users":
            if len(items) > COMPACT_ABOVE:
                return checks.passes(d, self.large_users(value, items), miss)
            return checks.users(d, items, miss)
        if key in ("subreddits", "locations", "subdomains"):
            return checks.places(d, "subdomain" if key == "subdomains" else "location", items, miss)
        if key == "oauth_clients":
            return checks.oauth_clients(d, items, miss)
        raise AssertionError(key)  # pragma: no cover

    def url_selector(self, value: Any, path: str) -> Check | None:
        miss = self.miss
        if isinstance(value, str):
            return checks.url_names(self.decision(True, Reason.TARGET, "url"), frozenset([value]), miss)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return checks.url_names(self.decision(True, Reason.TARGET, "url"), frozenset(value), miss)
        if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
            forced = {
                param: self.decision(variant not in REDDIT_CONTROLS, Reason.FORCED, "url", variant=variant)
                for param, variant in value.items()
            }
            self.declared.update(value.values())
            return checks.forced_variant(forced, miss)
        self.problem(path, "must be a name, a list of names, or an object mapping names to variants")
        return None

    def rules(self, value: Any, path: str) -> Check | None:
        compiled = parse_rules(value, path, self.problems)
        if compiled is None:
            return None
        decided = [
            (self.decision(True, Reason.TARGET, f"rules[{i}]"), conditions)
            for i, conditions in enumerate(compiled)
        ]
        return checks.rules(decided, self.miss)

    def clause(self, clause: Any, path: str) -> Condition | None:
        return parse_clause(clause, path, self.problems)

    def variant_list(self, value: Any) -> tuple[str, ...]:
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, str) and v for v in value)
            and len(set(value)) == len(value)
        ):
            return tuple(value)
        self.problem("variants", "must be a non-empty list of distinct variant names")
        return ()

    def experiment(self, value: Any) -> Experiment | None:
        if not isinstance(value, dict):
            self.problem("experiment", "must be an object with 'variants' and eligibility selectors")
            return None
        for key in value:
            if key in ("percent_loggedin", "percent_loggedout", "percentage"):
                self.problem(
                    f"experiment.{key}", "percentages do not apply inside an experiment; use variant weights"
                )
            elif key not in EXPERIMENT_KEYS:
                self.problem(f"experiment.{key}", f"unknown key{suggest(str(key), EXPERIMENT_KEYS)}")
        exp_id = value.get("experiment_id")
        if exp_id is not None and (not isinstance(exp_id, int) or isinstance(exp_id, bool)):
            self.problem("experiment.experiment_id", "must be an integer, unique across all time")
        enabled = value.get("enabled", True)
        if not isinstance(enabled, bool):
            self.problem("experiment.enabled", "must be true or false")
        raw = value.get("variants")
        weights: dict[str, float] = {}
        if not isinstance(raw, dict) or not raw:
            self.problem("experiment.variants", "must be an object mapping variant names to percentages")
        else:
            for vname, pct in raw.items():
                if not _is_number(pct) or not 0 <= pct <= 100:
                    self.problem(f"experiment.variants.{vname}", f"must be a percentage, not {show(pct)}")
                elif not vname:
                    self.problem("experiment.variants", "variant names must be non-empty")
                else:
                    weights[vname] = float(pct)
        pool = {c: 10.0 for c in REDDIT_CONTROLS}
        pool.update(weights)
        n = len(pool)
        if self.mode is not BucketingMode.REDDIT:
            # Each variant owns a lane of 1/n of the users (see bucketing.py), so a
            # weight above 100/n cannot be honoured; say so instead of capping.
            for vname, pct in weights.items():
                if pct > 100 / n + 1e-9:
                    self.problem(
                        f"experiment.variants.{vname}",
                        f"{pct:g}% is more than 100/{n} = {100 / n:.4g}%, the most one of {n} variants "
                        "(control_1 and control_2 included) can hold",
                    )
        names, _ = self.selectors(value, "experiment.")
        layer = self.layer(value["layer"]) if "layer" in value else None
        holdout = value.get("holdout", True)
        if not isinstance(holdout, bool):
            self.problem("experiment.holdout", "must be true (holdout segments see no experiment) or false")
            holdout = True
        return Experiment(exp_id, pool, enabled is not False, tuple(names), layer, holdout)

    def layer(self, value: Any) -> Layer | None:
        path = "experiment.layer"
        if not isinstance(value, dict):
            self.problem(path, 'must be an object such as {"name": "checkout", "range": [0, 50]}')
            return None
        for key in value:
            if key not in LAYER_KEYS:
                self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), LAYER_KEYS)}")
        name = value.get("name")
        if not isinstance(name, str) or not name:
            self.problem(f"{path}.name", "must be a non-empty string naming the layer")
            return None
        bounds = value.get("range")
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(_is_number(b) for b in bounds)
            or not 0 <= bounds[0] < bounds[1] <= 100
        ):
            self.problem(
                f"{path}.range", f"must be [start, end] with 0 <= start < end <= 100, not {show(bounds)}"
            )
            return None
        return Layer(name, float(bounds[0]), float(bounds[1]))

    # -- issue 14: deny, prerequisites, targeting, serves, values -------------------

    def names_list(self, value: Any, path: str, what: str) -> tuple[str, ...] | None:
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        self.problem(path, f"must be a list of {what}")
        return None

    def segment_list(self, value: Any, path: str) -> tuple[str, ...] | None:
        names = self.names_list(value, path, "segment names")
        if names is None:
            return None
        if not names:
            self.problem(path, "must name at least one segment")
            return None
        for i, n in enumerate(names):
            if document.is_segment_key(n):
                self.problem(
                    f"{path}[{i}]", f"name the segment without the prefix: {document.segment_name(n)!r}"
                )
            self.segment_refs.setdefault(document.segment_name(n), f"{path}[{i}]")
        return tuple(document.segment_name(n) for n in names)

    def large_users(self, value: Any, items: list[str]) -> checks.Member:
        """The compact ``users`` test of a long list (:mod:`flagstaff.members`), built once per list."""
        held = self.large.get(id(value))
        if held is None or held[0] is not value:
            held = self.large[id(value)] = (value, users_test(items))
        return held[1]

    def users_member(self, value: Any, path: str) -> checks.Member | None:
        items = self.string_list(value, path)
        if items is None:
            return None
        if len(items) > COMPACT_ABOVE:
            return self.large_users(value, items)
        exact = frozenset(items)
        lower = frozenset(u.lower() for u in items)

        def users(ctx: Context) -> bool:
            if ctx.user_id in exact:
                return True
            name = ctx.user_name
            return name is not None and name.lower() in lower

        return users

    def groups_member(self, value: Any, path: str) -> checks.Member | None:
        items = self.string_list(value, path)
        if items is None:
            return None
        wanted = frozenset(items)
        return lambda ctx: not wanted.isdisjoint(ctx.groups)

    def deny(self, value: Any) -> Part | None:
        if not isinstance(value, dict) or not value:
            self.problem("deny", "must be an object with 'users', 'groups', 'segments' and/or 'rules'")
            return None
        for key in value:
            if key not in DENY_KEYS:
                self.problem(f"deny.{key}", f"unknown key{suggest(str(key), DENY_KEYS)}")
        static: list[tuple[checks.Member, Decision]] = []
        late: _Late | None = None
        position = 0
        for key in DENY_KEYS:
            if key not in value:
                continue
            path = f"deny.{key}"
            if key == "users":
                m = self.users_member(value[key], path)
                if m is not None:
                    static.append((m, self.decision(False, Reason.DENIED, path)))
            elif key == "groups":
                m = self.groups_member(value[key], path)
                if m is not None:
                    static.append((m, self.decision(False, Reason.DENIED, path)))
            elif key == "segments":
                names = self.segment_list(value[key], path)
                if names is not None:
                    position = len(static)
                    late = _Late(_in_segments, names)
            else:
                compiled = parse_rules(value[key], path, self.problems)
                for i, conditions in enumerate(compiled or ()):
                    static.append((_all_of(conditions), self.decision(False, Reason.DENIED, f"{path}[{i}]")))
        if late is None:
            return checks.deny(static) if static else None
        segments_d = self.decision(False, Reason.DENIED, "deny.segments")
        members = late

        def bind(env: Env) -> Check:
            entries = list(static)
            entries.insert(position, (cast(checks.Member, members.at(env)), segments_d))
            return checks.deny(entries)

        return _Late(_apply, bind)

    def prerequisites(self, value: Any) -> Part | None:
        if not isinstance(value, list) or not value:
            self.problem("prerequisites", 'must be a non-empty list of flag names or {"flag": ...} objects')
            return None
        required: list[checks.Prerequisite] = []
        names: list[str] = []
        for i, item in enumerate(value):
            path = f"prerequisites[{i}]"
            req = self.prerequisite(item, path)
            if req is None:
                continue
            name, holds = req
            if name in names:
                self.problem(path, f"{name!r} is already a prerequisite")
                continue
            names.append(name)
            failed = self.decision(False, Reason.PREREQUISITE, name)
            missing = self.decision(False, Reason.PREREQUISITE, name, error=f"no flag named {name!r}")
            deep = self.decision(False, Reason.PREREQUISITE, name, error=checks.TOO_DEEP)
            required.append(checks.Prerequisite(name, holds, failed, missing, deep))
        self.requires = tuple(names)
        too_deep = self.decision(False, Reason.PREREQUISITE, error=checks.TOO_DEEP)
        return _Late(_prerequisites_check, (tuple(required), too_deep))

    def prerequisite(self, item: Any, path: str) -> tuple[str, Callable[[Decision], bool]] | None:
        if isinstance(item, str):
            item = {"flag": item}
        if not isinstance(item, dict):
            self.problem(
                path, 'must be a flag name or an object such as {"flag": "new_checkout", "variant": "b"}'
            )
            return None
        for key in item:
            if key not in PREREQUISITE_KEYS:
                self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), PREREQUISITE_KEYS)}")
        name = item.get("flag")
        if not isinstance(name, str) or validate_name(name):
            self.problem(f"{path}.flag" if "flag" in item else path, f"must name a flag, not {show(name)}")
            return None
        if name == self.name:
            self.problem(path, "a flag cannot be its own prerequisite")
            return None
        given = [k for k in ("variant", "variants", "enabled") if k in item]
        if len(given) > 1:
            self.problem(path, f"give one of 'variant', 'variants' or 'enabled', not {' and '.join(given)}")
            return None
        if "variant" in item:
            v = item["variant"]
            if not isinstance(v, str) or not v:
                self.problem(f"{path}.variant", "must be a variant name")
                return None
            return name, lambda d: d.variant == v
        if "variants" in item:
            vs = self.names_list(item["variants"], f"{path}.variants", "variant names")
            if vs is None:
                return None
            if not vs:
                self.problem(f"{path}.variants", "must name at least one variant")
                return None
            wanted = frozenset(vs)
            return name, lambda d: d.variant in wanted
        want = item.get("enabled", True)
        if not isinstance(want, bool):
            self.problem(f"{path}.enabled", "must be true or false")
            return None
        return name, _is_enabled if want else _is_disabled

    def targeting(self, value: Any) -> Part | None:
        if not isinstance(value, list) or not value:
            self.problem("targeting", "must be a non-empty list of rules, each with a 'serve'")
            return None
        rules: list[tuple[tuple[checks.Member | _Late, ...], Decision | checks.Serve]] = []
        for i, rule in enumerate(value):
            path = f"targeting[{i}]"
            parsed = self.targeting_rule(rule, path, f"targeting[{i}]")
            if parsed is not None:
                rules.append(parsed)
        if any(isinstance(c, _Late) for conds, _ in rules for c in conds):
            return _Late(_targeting_check, tuple(rules))
        return checks.targeting(
            cast(list[tuple[tuple[checks.Member, ...], Decision | checks.Serve]], rules), None
        )

    def targeting_rule(
        self, rule: Any, path: str, label: str
    ) -> tuple[tuple[checks.Member | _Late, ...], Decision | checks.Serve] | None:
        if not isinstance(rule, dict):
            self.problem(path, 'must be an object such as {"groups": ["beta"], "serve": {"percentage": 10}}')
            return None
        for key in rule:
            if key not in TARGETING_KEYS:
                self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), TARGETING_KEYS)}")
        if "name" in rule and not isinstance(rule["name"], str):
            self.problem(f"{path}.name", "must be a string")
        conditions: list[checks.Member | _Late] = []
        for key in TARGETING_KEYS:
            if key not in rule or key in ("name", "serve"):
                continue
            kpath = f"{path}.{key}"
            if key == "groups":
                m = self.groups_member(rule[key], kpath)
                if m is not None:
                    conditions.append(m)
            elif key == "users":
                m = self.users_member(rule[key], kpath)
                if m is not None:
                    conditions.append(m)
            elif key in ("segments", "not_segments"):
                names = self.segment_list(rule[key], kpath)
                if names is not None:
                    conditions.append(_Late(_in_no_segment if key == "not_segments" else _in_segments, names))
            else:  # when
                clauses = rule[key]
                if not isinstance(clauses, list) or not clauses:
                    self.problem(kpath, "must be a non-empty list of clauses")
                    continue
                for j, clause in enumerate(clauses):
                    c = parse_clause(clause, f"{kpath}[{j}]", self.problems)
                    if c is not None:
                        conditions.append(c)
        if "serve" not in rule:
            self.problem(f"{path}.serve", "a targeting rule needs a 'serve': 'on', 'off', or an object")
            return None
        serve = self.serve(rule["serve"], f"{path}.serve", Reason.RULE, label)
        return None if serve is None else (tuple(conditions), serve)

    def serve(self, value: Any, path: str, reason: Reason, rule: str) -> Decision | checks.Serve | None:
        """A serve: a constant decision (on, off, a variant) or a function of the context
        (a rollout, a split) that always decides."""
        if value in ("on", "off") or isinstance(value, bool):
            return self.decision(value in ("on", True), reason, rule)
        if not isinstance(value, dict):
            self.problem(
                path,
                f"must be 'on', 'off', {{\"variant\": name}}, {{\"percentage\": p}} or "
                f'{{"variants": {{name: weight}}}}, not {show(value)}',
            )
            return None
        for key in value:
            if key not in SERVE_KEYS:
                self.problem(f"{path}.{key}", f"unknown key{suggest(str(key), SERVE_KEYS)}")
        forms = [k for k in ("variant", "percentage", "variants") if k in value]
        if len(forms) != 1:
            self.problem(
                path,
                "needs exactly one of 'variant', 'percentage' or 'variants'"
                + (f", not {' and '.join(forms)}" if forms else ""),
            )
            return None
        by, source = self.bucket_by, self.source
        if "bucket_by" in value:
            by, source = checks.bucket_source(value["bucket_by"], f"{path}.bucket_by", self.problems)
        miss = self.decision(False, reason, rule)
        if "variant" in value:
            v = value["variant"]
            if not isinstance(v, str) or not v:
                self.problem(f"{path}.variant", "must be a variant name")
                return None
            self.declared.add(v)
            return self.decision(True, reason, rule, variant=v)
        if "percentage" in value:
            p = value["percentage"]
            if not _is_number(p) or not 0 <= p <= 100:
                self.problem(f"{path}.percentage", f"must be a number between 0 and 100, not {show(p)}")
                return None
            hit = self.decision(True, reason, rule)
            if source is not None:
                return cast(checks.Serve, checks.percentage_by(self.mode, self.salt, source, p, hit, miss))
            if p <= 0:
                return miss
            return cast(checks.Serve, checks.percentage(self.mode, self.salt, by, float(p), hit, miss))
        raw = value["variants"]
        if not isinstance(raw, dict) or not raw:
            self.problem(f"{path}.variants", "must be an object mapping variant names to percentages")
            return None
        weights: list[tuple[Decision, float]] = []
        for vname, w in raw.items():
            if not vname:
                self.problem(f"{path}.variants", "variant names must be non-empty")
            elif not _is_number(w) or not 0 <= w <= 100:
                self.problem(f"{path}.variants.{vname}", f"must be a percentage, not {show(w)}")
            else:
                self.declared.add(vname)
                weights.append((self.decision(True, reason, rule, variant=vname), float(w)))
        total = sum(w for _, w in weights)
        if total > 100 + 1e-9:
            self.problem(f"{path}.variants", f"the weights add up to {total:g}%, more than 100%")
            return None
        choose = split_chooser(self.mode, self.salt, weights, miss)
        key = source if source is not None else checks.KEY_SOURCES[by]

        def split(ctx: Context) -> Decision:
            pair = key(ctx)
            return miss if pair is None else choose(*pair)

        return split

    def values(self, value: Any) -> Mapping[str, Any]:
        if not isinstance(value, dict) or not value:
            self.problem("values", "must be an object mapping variant names (or 'on'/'off') to values")
            return _NO_VALUES
        known = {"on", "off", *self.declared}
        for key in value:
            if key not in known:
                declared = ", ".join(sorted(known))
                self.problem(
                    f"values.{key}",
                    f"not a variant of this flag (it has {declared}){suggest(str(key), known)}",
                )
        return MappingProxyType(dict(value))

    # -- compiled steps ----------------------------------------------------------

    def percentage_checks(self, percentages: dict[str, float], miss: Decision | None = None) -> list[Check]:
        """One check per positive percentage; each answers ``miss`` when the
        context is outside it (``None``: let the next check decide)."""
        steps: list[Check] = []
        for key, pct in percentages.items():
            if pct <= 0:
                continue  # nobody: no check at all
            d = self.decision(True, Reason.PERCENTAGE, key)
            if key == "percent_loggedout" and self.mode is BucketingMode.REDDIT:
                steps.append(checks.reddit_loggedout(d, pct, miss))
                continue
            if key == "percentage" and self.source is not None:
                steps.append(checks.percentage_by(self.mode, self.salt, self.source, pct, d, miss))
                continue
            by = _PERCENT_BY.get(key, self.bucket_by)
            steps.append(checks.percentage(self.mode, self.salt, by, pct, d, miss))
        return steps

    def experiment_check(self, raw: Any, exp: Experiment | None) -> Part | None:
        if exp is None or not exp.enabled or not exp.eligibility:
            # reddit: an experiment with no eligibility selector has nobody eligible.
            return None
        miss, self.miss = self.miss, None  # eligibility checks must say "no" with None
        _, eligible = self.selectors(raw, "experiment.")
        self.miss = miss
        excluded = self.decision(False, Reason.EXCLUDED, "experiment")  # eligible, in no variant
        outcomes: dict[str | None, Decision] = {None: excluded}
        for vname in exp.variants:
            control = vname in REDDIT_CONTROLS
            outcomes[vname] = self.decision(
                not control,
                Reason.CONTROL if control else Reason.EXPERIMENT,
                "experiment",
                variant=vname,
                experiment_id=exp.experiment_id,
            )
        choose = variant_chooser(self.mode, self.salt, exp.variants, outcomes)
        source = self.source
        layer = exp.layer
        in_layer = None if layer is None else layer_test(layer.name, layer.start, layer.end)
        if not exp.holdout:
            if in_layer is None and source is None:
                return checks.experiment(eligible, choose, excluded, miss)
            return checks.experiment_in(eligible, choose, excluded, miss, source, in_layer, ())
        name = self.name

        def bind(env: Env) -> Check:
            holdouts = env.holdouts
            if not holdouts and in_layer is None and source is None:
                return checks.experiment(eligible, choose, excluded, miss)
            held = tuple(
                (seg.contains, Decision(name, False, Reason.HOLDOUT, rule=seg.name)) for seg in holdouts
            )
            return checks.experiment_in(eligible, choose, excluded, miss, source, in_layer, held)

        return _Late(_apply, bind)


# --------------------------------------------------------------------------- linking


@dataclass(frozen=True, slots=True)
class _Late:
    """A part of a flag that reads the snapshot: built for each :class:`Env` by ``link``,
    as ``bind(data, env)``.

    A module-level ``bind`` and its ``data`` rather than a closure: a closure is a
    function, a tuple and a cell per name it holds, all tracked by the garbage
    collector, and a cold build of 10,000 flags spent half its time collecting."""

    bind: Callable[[Any, Env], Any]
    data: Any = None

    def at(self, env: Env) -> Any:
        return self.bind(self.data, env)


Part = Check | _Late


def _apply(bind: Callable[[Env], Any], env: Env) -> Any:
    """The ``bind`` of a :class:`_Late` whose data is a closure of the env (rarer parts)."""
    return bind(env)


@dataclass(frozen=True, slots=True)
class _Link:
    """A flag's ``link``: its parts in evaluation order (some :class:`_Late`), the run
    built for an env as :meth:`_Builder.assemble` builds the run of a flag without one.
    One object rather than nested closures, for the collector (see :class:`_Late`)."""

    parts: tuple[Part, ...]
    single: bool
    fallback: Decision
    pick: Callable[[bytes], str] | None
    name: str
    source: checks.KeySource | None

    def __call__(self, env: Env) -> Run:
        resolved: list[Check] = []
        for p in self.parts:
            check = p.bind(p.data, env) if isinstance(p, _Late) else p
            if check is not None:  # None: a part that cannot decide in env (see _targeting_check)
                resolved.append(check)
        return _finish(resolved, self.single, self.fallback, self.pick, self.name, self.source)


def _quick(run: Run, constant: Decision | None, contextual: bool) -> Run | None:
    """:attr:`Flag.quick`: the constant's answer, or ``run`` when the decision needs only the
    context (``contextual``), else ``None``."""
    if constant is not None:
        return cast(Run, checks.always(constant))  # a check that always decides
    return run if contextual else None


def _finish(
    resolved: list[Check],
    single: bool,
    fallback: Decision,
    pick: Callable[[bytes], str] | None,
    name: str,
    source: checks.KeySource | None,
) -> Run:
    """The run of a flag from its checks: the single check when it was compiled with
    miss = default (it never answers None), else the chain; then the variants list."""
    run: Run = cast(Run, resolved[0]) if single else checks.chain(resolved, fallback)
    if pick is not None:
        run = checks.with_variants(run, name, pick, source)
    return run


@dataclass(slots=True)
class _Extras:
    """The issue-14 parts of one document, as the builder reads them."""

    deny: Part | None = None
    prerequisites: Part | None = None
    targeting: Part | None = None
    default: Decision | checks.Serve | None = None
    values: Mapping[str, Any] = field(default_factory=lambda: _NO_VALUES)
    experiments: bool = False
    ramp: Ramp | None = None
    guardrails: tuple[Guardrail, ...] = ()

    @property
    def plain(self) -> bool:
        """No part that changes the shape of the chain: today's fast paths apply."""
        return (
            self.deny is None
            and self.prerequisites is None
            and self.targeting is None
            and self.default is None
        )


def _never(ctx: Context) -> bool:
    return False


def _is_enabled(d: Decision) -> bool:
    return d.enabled


def _is_disabled(d: Decision) -> bool:
    return not d.enabled


def _prerequisites_check(parts: tuple[tuple[checks.Prerequisite, ...], Decision], env: Env) -> Check:
    """The ``prerequisites`` check of a flag, deciding each prerequisite in ``env``."""
    required, too_deep = parts

    # env.flags read at each call: a snapshot may fill it after linking its flags.
    def decide(name: str, ctx: Context, env: Env = env) -> Decision | None:
        flag = env.flags.get(name)
        return None if flag is None else decide_flag(flag, ctx)

    return checks.prerequisites(required, decide, too_deep)


def _always(ctx: Context) -> bool:
    return True


def _in_segments(names: tuple[str, ...], env: Env) -> checks.Member:
    """``segments`` (member of any), bound to the segments of an env; a segment the env
    lacks has no member."""
    segments = env.segments
    found = tuple(segments[n].contains for n in names if n in segments)
    if not found:
        return _never
    if len(found) == 1:
        return found[0]
    return lambda ctx: any(c(ctx) for c in found)


def _in_no_segment(names: tuple[str, ...], env: Env) -> checks.Member:
    """``not_segments`` (member of none), bound to the segments of an env; a segment the
    env lacks has no member."""
    segments = env.segments
    found = tuple(segments[n].contains for n in names if n in segments)
    if not found:
        return _always
    if len(found) == 1:
        (only,) = found
        return lambda ctx: not only(ctx)
    return lambda ctx: not any(c(ctx) for c in found)


def _all_of(conditions: tuple[Condition, ...]) -> checks.Member:
    if len(conditions) == 1:
        return conditions[0]
    return lambda ctx: all(c(ctx) for c in conditions)


def _targeting_check(
    rules: tuple[tuple[tuple[checks.Member | _Late, ...], Decision | checks.Serve], ...], env: Env
) -> Check | None:
    """The targeting rules bound to ``env``; a rule naming only segments the env lacks
    can never match and is left out, and None when no rule is left (an unlinked flag's
    run, a segment deleted: no check at all rather than one that never decides)."""
    compiled = []
    for conditions, serve in rules:
        bound = tuple(c.bind(c.data, env) if isinstance(c, _Late) else c for c in conditions)
        if _never not in bound:
            compiled.append((bound, serve))
    return checks.targeting(compiled, None) if compiled else None


def decide_flag(flag: Flag, ctx: Context) -> Decision:
    """``flag`` decided for ``ctx`` as :func:`flagstaff.evaluate.evaluate` would (the time
    from ``ctx.time``), for a prerequisite: the evaluator's steps, without its import
    (evaluation sits above the model). Never raises."""
    constant = flag.constant
    if constant is not None:
        return constant
    try:
        if flag.schedule is not None:
            when = ctx.time
            active = when is not None and flag.schedule.active(when)
            if not active:
                d = flag.run(ctx) if flag.denies else None
                if d is not None and d.reason is Reason.DENIED:
                    return d
                if when is None:
                    return Decision(
                        flag.name, False, Reason.ERROR, error="flag has a schedule but no time was given"
                    )
                return flag.scheduled_off or Decision(flag.name, False, Reason.SCHEDULE, rule="schedule")
        return flag.run(ctx)
    except Exception as exc:  # a prerequisite that fails to evaluate fails the requirement
        return Decision(flag.name, False, Reason.ERROR, error=f"{type(exc).__name__}: {exc}")


# The id each percentage key hashes; ``percentage`` hashes the one ``bucket_by`` names.
_PERCENT_BY = {"percent_loggedin": BucketBy.LOGGED_IN, "percent_loggedout": BucketBy.LOGGED_OUT}

_MODES = frozenset(m.value for m in BucketingMode)
_STR = frozenset({str})


def _kind(value: Any) -> str:
    return {list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Reference:
    """A document a flag names: ``kind`` is ``"segment"`` or ``"flag"`` (a prerequisite),
    ``path`` where the document names it (``targeting[2].segments[0]``,
    ``prerequisites[0]``), for write-time messages."""

    kind: str
    name: str
    path: str


def references(flag: Flag) -> tuple[Reference, ...]:
    """Every segment and prerequisite flag ``flag`` names, in document order (the same
    names as :attr:`Flag.segments` and :attr:`Flag.requires`, with where they are)."""
    doc = flag.value
    if not isinstance(doc, dict):
        return ()
    out: list[Reference] = []
    deny = doc.get("deny")
    if isinstance(deny, dict):
        for i, name in enumerate(deny.get("segments") or ()):
            out.append(Reference("segment", document.segment_name(name), f"deny.segments[{i}]"))
    for i, item in enumerate(doc.get("prerequisites") or ()):
        name = item if isinstance(item, str) else item.get("flag")
        out.append(Reference("flag", name, f"prerequisites[{i}]"))
    for i, rule in enumerate(doc.get("targeting") or ()):
        for key in ("segments", "not_segments"):
            for j, name in enumerate(rule.get(key) or ()):
                out.append(Reference("segment", document.segment_name(name), f"targeting[{i}].{key}[{j}]"))
    return tuple(out)


def parse_flags(documents: Mapping[str, Any]) -> tuple[dict[str, Flag], list[ValidationError]]:
    """Parse many documents; returns the good flags and the errors of the bad ones."""
    flags: dict[str, Flag] = {}
    errors: list[ValidationError] = []
    for name, value in documents.items():
        try:
            flags[name] = parse_flag(name, value)
        except ValidationError as exc:
            errors.append(exc)
    return flags, errors
