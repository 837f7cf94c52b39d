"""Flag documents: parsed and validated once into frozen, precompiled flags.

This is the only module that knows the wire names of a flag document. The
format is described in ``docs/flags.md`` and published as a JSON Schema
(``flagstaff/schema/flag.schema.json``). In short, a flag document is one of:

* ``"on"`` / ``true``: on for everyone; ``"off"`` / ``false``: off for everyone;
* a number ``p`` in [0, 100]: on for ``p`` percent of users (``1`` means 1%);
* an object whose selectors OR together, e.g.
  ``{"admin": true, "users": ["umbrae"], "percent_loggedin": 25}``.

``"enabled"`` in an object is the master switch: ``"off"`` or ``false`` turns
the flag off for everyone whatever the other keys say; ``"on"`` turns it on for
everyone; ``true`` (the default) lets the other keys decide. An object with no
selector at all is off.

:func:`parse_flag` raises :class:`~flagstaff.errors.ValidationError` listing
every problem with its path; it never repairs a document silently.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any

from flagstaff.bucketing import (
    FMIX,
    HANOI_MODES,
    REDDIT_CONTROLS,
    VARIANT_SALT_SUFFIX,
    BucketingMode,
    percentage_test,
    reddit_bucket,
    reddit_loggedout_bucket,
    reddit_variant,
    salt_seed,
    threshold,
)
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import Problem, ValidationError
from flagstaff.rules import OPERATORS, Condition, compile_clause, compile_regex, parse_instant

__all__ = [
    "Experiment",
    "Flag",
    "Kind",
    "Schedule",
    "Switch",
    "decode_document",
    "encode_document",
    "json_schema",
    "parse_flag",
    "parse_flags",
    "validate_name",
]

Check = Callable[[Context], Decision | None]
"""A compiled step of evaluation: a decision if it decides, else ``None``."""

_NAME = re.compile(r"^[^\s/\x00-\x1f\x7f.][^\s/\x00-\x1f\x7f]{0,199}$")

# Selector keys, in the order evaluation tries them. They OR together; the
# order only decides which one the reason names when several match.
GROUP_SELECTORS = ("admin", "employee", "gold", "beta")
SELECTOR_KEYS = (
    "url",  # first: a forced variant wins over every other selector, as in reddit
    "everyone",
    *GROUP_SELECTORS,
    "groups",
    "loggedin",
    "loggedout",
    "users",
    "regex",
    "subreddits",
    "locations",
    "subdomains",
    "oauth_clients",
    "rules",
)
PERCENT_KEYS = ("percentage", "percent_loggedin", "percent_loggedout")
META_KEYS = ("description", "owner", "kind", "tags", "created")
TOP_KEYS = frozenset(
    {
        "enabled",
        *META_KEYS,
        "salt",
        "bucketing",
        "bucket_by",
        "schedule",
        *SELECTOR_KEYS,
        *PERCENT_KEYS,
        "variants",
        "experiment",
    }
)
EXPERIMENT_KEYS = frozenset({"experiment_id", "variants", "enabled", *SELECTOR_KEYS})
CLAUSE_KEYS = frozenset({"attribute", "op", "value", "negate"})
SCHEDULE_KEYS = ("start", "end")
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


class Switch(StrEnum):
    """The master switch of a flag."""

    ON = "on"  # on for everyone
    OFF = "off"  # off for everyone: the kill switch
    TARGETED = "targeted"  # the other keys decide


class Kind(StrEnum):
    """Whether a flag is meant to be removed once rolled out."""

    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Schedule:
    """On from ``start`` (inclusive) until ``end`` (exclusive), epoch seconds."""

    start: float | None = None
    end: float | None = None

    def active(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class Experiment:
    """An A/B experiment: who is eligible, and the variant weights (percent)."""

    experiment_id: int | None
    variants: Mapping[str, float]
    enabled: bool
    eligibility: tuple[str, ...]

    @property
    def controls(self) -> tuple[str, ...]:
        return tuple(v for v in self.variants if v in REDDIT_CONTROLS)


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
    run: Callable[[Context], Decision] = field(repr=False, compare=False)
    scheduled_off: Decision | None = field(repr=False)  # set when there is a schedule

    @property
    def value(self) -> Any:
        """The document as a JSON value (a fresh copy)."""
        return json.loads(self.document)

    @property
    def needs_clock(self) -> bool:
        return self.schedule is not None


# --------------------------------------------------------------------------- wire I/O


def decode_document(raw: str | bytes) -> Any:
    """Decode a document as stored: JSON, or a bare ``on``/``off`` as written by
    hand into ZooKeeper or reddit's live config. Raises ``ValidationError``."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    stripped = text.strip()
    if stripped in ("on", "off"):
        return stripped
    if not stripped:
        raise ValidationError([Problem("", "empty document")])
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ValidationError([Problem("", f"not JSON: {exc.msg} at {where}")]) from None
    except RecursionError:
        raise ValidationError([Problem("", "not JSON: nested too deeply")]) from None


def encode_document(value: Any) -> str:
    """Canonical JSON text of a document (sorted keys, compact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a flag document, as shipped in
    ``flagstaff/schema/flag.schema.json`` (a fresh copy each call).

    It is for editors and other tools; :func:`parse_flag` is authoritative and
    also checks what a schema cannot (RE2 syntax, experiment weights against
    ``100/n``, schedule order). A test keeps its keys equal to this module's.
    """
    schema: dict[str, Any] = json.loads(_schema_text())
    return schema


@functools.cache
def _schema_text() -> str:
    return (resources.files("flagstaff") / "schema" / "flag.schema.json").read_text(encoding="utf-8")


def validate_name(name: Any) -> list[Problem]:
    """Problems with a flag name (empty list when it is fine)."""
    if not isinstance(name, str) or not _NAME.match(name):
        return [
            Problem(
                "name",
                f"{name!r} is not a valid flag name: use 1-200 characters, no whitespace, no '/', "
                "not starting with '.'",
            )
        ]
    return []


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
    except (TypeError, ValueError) as exc:
        raise ValidationError([Problem("", f"not representable as JSON: {exc}")], flag=name) from None
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            [Problem("", f"document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB")], flag=name
        )
    builder = _Builder(name, text, problems)
    flag = builder.build(value)
    if problems or flag is None:
        raise ValidationError(problems or [Problem("", "invalid document")], flag=name)
    return flag


def _suggest(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


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
        self.bucket_by = "user"
        self.default = Decision(name, False, Reason.DEFAULT)
        # What a compiled check answers when it does not match: None lets the
        # next check decide; ``default`` when the check is the whole flag.
        self.miss: Decision | None = None

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
        return self.obj(value)

    def simple(self, switch: Switch, percentages: dict[str, float]) -> Flag:
        # A bare percentage compiles its single check to answer ``default`` itself.
        checks = self.percentage_checks(percentages, self.default) if switch is Switch.TARGETED else []
        return self.assemble(switch, {}, percentages, (), None, (), None, checks, None, True)

    def obj(self, doc: dict[str, Any]) -> Flag | None:
        for key in doc:
            if key not in TOP_KEYS:
                self.problem(str(key), f"unknown key{_suggest(str(key), TOP_KEYS)}")
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
                self.problem("bucketing", f"unknown mode {_show(mode)}; expected one of {modes}")
        bucket_by = doc.get("bucket_by", "user")
        if bucket_by in ("user", "cookie"):
            self.bucket_by = bucket_by
        else:
            self.problem("bucket_by", "must be 'user' (the user id, else the cookie id) or 'cookie'")
        schedule = self.schedule(doc["schedule"]) if "schedule" in doc else None
        selectors, checks = self.selectors(doc, "")
        percentages: dict[str, float] = {}
        for key in PERCENT_KEYS:
            if key in doc:
                p = doc[key]
                if not _is_number(p) or not 0 <= p <= 100:
                    self.problem(key, f"must be a number between 0 and 100, not {_show(p)}")
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
        if self.problems:
            return None
        # The url selector forces a variant even when "enabled" is "on", as in reddit.
        forcing = "url" in selectors and isinstance(doc["url"], dict)
        url_check = checks[selectors.index("url")] if forcing else None
        # A lone percentage (the commonest flag) compiles to answer ``default``
        # itself, saving a call per evaluation; see assemble().
        exp_check = self.experiment_check(doc.get("experiment"), experiment)
        lone = not checks and exp_check is None and sum(p > 0 for p in percentages.values()) == 1
        checks.extend(self.percentage_checks(percentages, self.default if lone else None))
        if exp_check is not None:
            checks.append(exp_check)
        terminal = switch is Switch.TARGETED and len(checks) == 1
        if terminal and not lone:
            # One selector or the experiment is the whole flag: compile it again
            # answering ``default`` itself, saving a call per evaluation.
            self.miss = self.default
            if exp_check is not None:
                checks = [self.experiment_check(doc.get("experiment"), experiment)]  # type: ignore[list-item]
            else:
                _, checks = self.selectors(doc, "")
            self.miss = None
        return self.assemble(
            switch,
            meta,
            percentages,
            tuple(selectors),
            experiment,
            variants,
            schedule,
            checks,
            url_check,
            terminal,
        )

    def assemble(
        self,
        switch: Switch,
        meta: dict[str, Any],
        percentages: dict[str, float],
        selectors: tuple[str, ...],
        experiment: Experiment | None,
        variants: tuple[str, ...],
        schedule: Schedule | None,
        checks: list[Check],
        url_check: Check | None,
        terminal: bool,
    ) -> Flag:
        """Build the flag. ``terminal``: a single check in ``checks`` was compiled
        to answer ``default`` itself and is used as the flag's ``run``."""
        default = self.default
        fallback = default
        constant: Decision | None = None
        if switch is Switch.OFF:
            constant = self.decision(False, Reason.OFF, "enabled")
        elif switch is Switch.ON:
            fallback = self.decision(True, Reason.ON, "enabled")
            checks = [] if url_check is None else [url_check]
            if not checks and not variants and schedule is None:
                constant = fallback
        elif not checks and schedule is None:
            constant = default
        if switch is Switch.TARGETED and terminal and len(checks) == 1:
            run: Callable[[Context], Decision] = checks[0]  # type: ignore[assignment]
        else:
            run = _chain(checks, fallback)
        if variants:
            run = self.with_variants(run, variants)
        return Flag(
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
        )

    # -- pieces ----------------------------------------------------------------

    def switch(self, value: Any, path: str) -> Switch:
        if value is True:
            return Switch.TARGETED
        if value is False or value == "off":
            return Switch.OFF
        if value == "on":
            return Switch.ON
        self.problem(path, f"must be 'on', 'off', true or false, not {_show(value)}")
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
                self.problem("kind", "must be 'temporary' or 'permanent'")
        if "tags" in doc:
            tags = doc["tags"]
            if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
                meta["tags"] = tuple(tags)
            else:
                self.problem("tags", "must be a list of strings")
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
                    f"{_show(item)} is not a time: use ISO 8601 with a UTC offset "
                    "(e.g. '2027-01-01T00:00:00Z') or epoch seconds",
                )
            bounds[key] = when
        start, end = bounds["start"], bounds["end"]
        if start is not None and end is not None and end <= start:
            self.problem("schedule", "'end' must be after 'start'")
        if start is None and end is None and not any(p.path.startswith("schedule") for p in self.problems):
            self.problem("schedule", "needs 'start', 'end' or both")
        return Schedule(start, end)

    def string_list(self, value: Any, path: str) -> list[str] | None:
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
        self.problem(path, f"must be true or false, not {_show(value)}")
        return None

    def selectors(self, doc: dict[str, Any], prefix: str) -> tuple[list[str], list[Check]]:
        """Compile the selectors present in ``doc`` (top level or experiment).

        Group-membership selectors (``admin``, ``employee``, ``gold``, ``beta``,
        ``groups``) are adjacent in evaluation order and compile into one check
        that does a single set-intersection test for the common miss.
        """
        names: list[str] = []
        checks: list[Check] = []
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
                        position = len(checks)
                    membership.append((wanted, self.decision(True, Reason.TARGET, key)))
                    names.append(key)
                continue
            check = self.selector(key, doc[key], path)
            if check is not None:
                names.append(key)
                checks.append(check)
        if membership:
            checks.insert(position, _membership(tuple(membership), self.miss))
        return names, checks

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
            flag = self.flag_bool(value, path)
            if not flag:  # false selectors select nobody: drop them
                return None
            if key == "everyone":
                return lambda ctx: d
            if key == "loggedin":
                return lambda ctx: d if ctx.logged_in else miss
            if key == "loggedout":
                return lambda ctx: miss if ctx.logged_in else d
        if key == "url":
            return self.url_selector(value, path)
        if key == "users":
            users = self.string_list(value, path)
            if users is None:
                return None
            exact = frozenset(users)
            lower = frozenset(u.lower() for u in users)

            def users_check(ctx: Context) -> Decision | None:
                if ctx.user_id in exact:
                    return d
                name = ctx.user_name
                return d if name is not None and name.lower() in lower else miss

            return users_check
        if key == "regex":
            rx = compile_regex(value, path, self.problems)
            if rx is None:
                return None
            search = rx.search
            return lambda ctx: d if ctx.user_id is not None and search(ctx.user_id) is not None else miss
        if key in ("subreddits", "locations", "subdomains"):
            items = self.string_list(value, path)
            if items is None:
                return None
            places = frozenset(i.lower() for i in items)
            attr = "subdomain" if key == "subdomains" else "location"
            return lambda ctx: d if (v := getattr(ctx, attr)) is not None and v.lower() in places else miss
        if key == "oauth_clients":
            items = self.string_list(value, path)
            if items is None:
                return None
            clients = frozenset(items)  # case-sensitive, as reddit
            return lambda ctx: d if ctx.oauth_client in clients else miss
        if key == "rules":
            return self.rules(value, path)
        raise AssertionError(key)  # pragma: no cover

    def url_selector(self, value: Any, path: str) -> Check | None:
        miss = self.miss
        if isinstance(value, str):
            d = self.decision(True, Reason.TARGET, "url")
            return lambda ctx: d if value in ctx.features else miss
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = frozenset(value)
            d = self.decision(True, Reason.TARGET, "url")
            return lambda ctx: d if not names.isdisjoint(ctx.features) else miss
        if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
            forced = {
                param: self.decision(variant not in REDDIT_CONTROLS, Reason.FORCED, "url", variant=variant)
                for param, variant in value.items()
            }

            def force(ctx: Context) -> Decision | None:
                # The first ?feature= value, in request order, that names a variant.
                for feature in ctx.features:
                    hit = forced.get(feature)
                    if hit is not None:
                        return hit
                return miss

            return force
        self.problem(path, "must be a name, a list of names, or an object mapping names to variants")
        return None

    def rules(self, value: Any, path: str) -> Check | None:
        if not isinstance(value, list) or not value:
            self.problem(path, "must be a non-empty list of rules")
            return None
        compiled: list[tuple[Decision, tuple[Condition, ...]]] = []
        for i, rule in enumerate(value):
            rpath = f"{path}[{i}]"
            if isinstance(rule, dict) and "all" in rule:
                if set(rule) != {"all"}:
                    self.problem(rpath, "a rule with 'all' may have no other keys")
                clauses = rule["all"]
                if not isinstance(clauses, list) or not clauses:
                    self.problem(rpath + ".all", "must be a non-empty list of clauses")
                    continue
                paths = [f"{rpath}.all[{j}]" for j in range(len(clauses))]
            else:
                clauses, paths = [rule], [rpath]
            parts = [self.clause(c, p) for c, p in zip(clauses, paths, strict=True)]
            conditions = tuple(c for c in parts if c is not None)
            compiled.append((self.decision(True, Reason.TARGET, f"rules[{i}]"), conditions))

        miss = self.miss
        if len(compiled) == 1 and len(compiled[0][1]) == 1:
            (d, (only,)) = compiled[0]
            return lambda ctx: d if only(ctx) else miss

        def rules_check(ctx: Context) -> Decision | None:
            for decision, conditions in compiled:
                for condition in conditions:
                    if not condition(ctx):
                        break
                else:
                    return decision
            return miss

        return rules_check

    def clause(self, clause: Any, path: str) -> Condition | None:
        if not isinstance(clause, dict):
            self.problem(path, 'must be an object such as {"attribute": "plan", "op": "eq", "value": "pro"}')
            return None
        for key in clause:
            if key not in CLAUSE_KEYS:
                self.problem(f"{path}.{key}", f"unknown key{_suggest(str(key), CLAUSE_KEYS)}")
        attr, op = clause.get("attribute"), clause.get("op")
        if not isinstance(attr, str) or not attr:
            self.problem(f"{path}.attribute", "must name a context attribute")
            return None
        if not isinstance(op, str) or op not in OPERATORS:
            self.problem(
                f"{path}.op", f"unknown operator {_show(op)}; expected one of {', '.join(OPERATORS)}"
            )
            return None
        if op != "exists" and "value" not in clause:
            self.problem(f"{path}.value", f"op {op!r} needs a value")
            return None
        negate = clause.get("negate", False)
        if not isinstance(negate, bool):
            self.problem(f"{path}.negate", "must be true or false")
            return None
        return compile_clause(attr, op, clause.get("value"), negate, f"{path}.value", self.problems)

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
                self.problem(f"experiment.{key}", f"unknown key{_suggest(str(key), EXPERIMENT_KEYS)}")
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
                    self.problem(f"experiment.variants.{vname}", f"must be a percentage, not {_show(pct)}")
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
        return Experiment(exp_id, pool, enabled is not False, tuple(names))

    # -- compiled steps ----------------------------------------------------------

    def percentage_checks(self, percentages: dict[str, float], miss: Decision | None = None) -> list[Check]:
        """One check per positive percentage; each answers ``miss`` when the
        context is outside it (``None``: let the next check decide)."""
        bucket_by = self.bucket_by
        checks: list[Check] = []
        for key, pct in percentages.items():
            if pct <= 0:
                continue  # nobody: no check at all
            d = self.decision(True, Reason.PERCENTAGE, key)
            if key == "percent_loggedout" and self.mode is BucketingMode.REDDIT:
                checks.append(_reddit_loggedout(d, pct, miss))
                continue
            source = (
                _LOGGED_IN
                if key == "percent_loggedin"
                else _LOGGED_OUT
                if key == "percent_loggedout"
                else _COOKIE
                if bucket_by == "cookie"
                else _USER_ELSE_COOKIE
            )
            if pct >= 100 and source in (_USER_ELSE_COOKIE, _COOKIE):
                checks.append(_always(d))  # everyone, with or without an id
            elif self.mode is BucketingMode.FLAGSTAFF and pct < 100:
                checks.append(_native_percentage(d, source, salt_seed(self.salt), threshold(pct), miss))
            else:
                checks.append(_percentage(d, source, percentage_test(self.mode, self.salt, pct), miss))
        return checks

    def experiment_check(self, raw: Any, exp: Experiment | None) -> Check | None:
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
        choose = self.chooser(exp.variants, outcomes)
        first = eligible[0]
        rest = tuple(eligible[1:])

        def experiment(ctx: Context) -> Decision | None:
            if first(ctx) is None:
                for check in rest:
                    if check(ctx) is not None:
                        break
                else:
                    return miss
            # Logged-in users bucket by user id, logged-out visitors by cookie id.
            if ctx.logged_in and ctx.user_key is not None:
                return choose(ctx.user_key, ctx.user_id)  # type: ignore[arg-type]
            if ctx.cookie_key is None:
                return excluded
            return choose(ctx.cookie_key, ctx.cookie_id)  # type: ignore[arg-type]

        return experiment

    def chooser(
        self, weights: Mapping[str, float], outcomes: Mapping[str | None, Decision]
    ) -> Callable[[bytes, str], Decision]:
        """``(seed bytes, seed) -> the decision for its variant (or exclusion)``."""
        if self.mode is BucketingMode.REDDIT:
            salt = self.salt
            pool = dict(weights)
            return lambda key, seed: outcomes[reddit_variant(reddit_bucket(salt, seed), pool)]
        names = sorted(weights)
        n = len(names)
        lanes = [(threshold(weights[v]), outcomes[v]) for v in names]
        excluded = outcomes[None]
        seed0 = salt_seed(self.salt + VARIANT_SALT_SUFFIX)
        crc = zlib.crc32
        fmix = FMIX

        def native(key: bytes, seed: str) -> Decision:
            # bucketing.variant_for inlined: lane h % n, position h // n.
            h = fmix(b"", crc(key, seed0))
            limit, decision = lanes[h % n]
            return decision if h // n < limit else excluded

        return native

    def with_variants(
        self, run: Callable[[Context], Decision], variants: tuple[str, ...]
    ) -> Callable[[Context], Decision]:
        """For a top-level variant list: every enabled user gets one, equal weights."""
        cache: dict[tuple[str | None, Reason, str], Decision] = {}
        name = self.name
        n = len(variants)
        crc = zlib.crc32
        if self.mode in HANOI_MODES:
            # hanoi: variants[crc32(id) % n] in the order given, unsalted.
            def index(key: bytes) -> str:
                return variants[crc(key) % n]
        else:
            ordered = sorted(variants)
            vseed = salt_seed(self.salt + VARIANT_SALT_SUFFIX)

            fmix = FMIX

            def index(key: bytes) -> str:
                return ordered[fmix(b"", crc(key, vseed)) % n]

        def run_with_variant(ctx: Context) -> Decision:
            d = run(ctx)
            if not d.enabled or d.variant is not None:
                return d
            key = ctx.user_key if ctx.user_key is not None else ctx.cookie_key
            if key is None:
                return d
            variant = index(key)
            slot = (d.rule, d.reason, variant)
            hit = cache.get(slot)
            if hit is None:
                hit = Decision(name, True, d.reason, variant=variant, rule=d.rule)
                cache[slot] = hit  # bounded: rules x reasons x variants
            return hit

        return run_with_variant


_MODES = frozenset(m.value for m in BucketingMode)

KeySource = Callable[[Context], "tuple[bytes, str] | None"]


def _user_else_cookie(ctx: Context) -> tuple[bytes, str] | None:
    if ctx.user_key is not None:
        return ctx.user_key, ctx.user_id  # type: ignore[return-value]
    if ctx.cookie_key is not None:
        return ctx.cookie_key, ctx.cookie_id  # type: ignore[return-value]
    return None


def _cookie(ctx: Context) -> tuple[bytes, str] | None:
    return None if ctx.cookie_key is None else (ctx.cookie_key, ctx.cookie_id)  # type: ignore[return-value]


def _logged_in(ctx: Context) -> tuple[bytes, str] | None:
    if not ctx.logged_in or ctx.user_key is None:
        return None
    return ctx.user_key, ctx.user_id  # type: ignore[return-value]


def _logged_out(ctx: Context) -> tuple[bytes, str] | None:
    if ctx.logged_in or ctx.cookie_key is None:
        return None
    return ctx.cookie_key, ctx.cookie_id  # type: ignore[return-value]


_USER_ELSE_COOKIE: KeySource = _user_else_cookie
_COOKIE: KeySource = _cookie
_LOGGED_IN: KeySource = _logged_in
_LOGGED_OUT: KeySource = _logged_out


def _percentage(
    d: Decision, source: KeySource, test: Callable[[bytes, str], bool], miss: Decision | None
) -> Check:
    def percentage(ctx: Context) -> Decision | None:
        key = source(ctx)
        return d if key is not None and test(*key) else miss

    return percentage


def _native_percentage(d: Decision, source: KeySource, seed: int, limit: int, miss: Decision | None) -> Check:
    """Native mode, fully inlined (this is the hot path of most flags).
    Equal to ``bucketing.in_percentage(FLAGSTAFF, salt, id, pct)``."""
    crc = zlib.crc32
    fmix = FMIX
    logged_in = source is _LOGGED_IN
    logged_out = source is _LOGGED_OUT

    if source is _USER_ELSE_COOKIE:
        # The commonest shape of all, without the branches below.
        def by_user(ctx: Context) -> Decision | None:
            key = ctx.user_key
            if key is None:
                key = ctx.cookie_key
                if key is None:
                    return miss
            return d if fmix(b"", crc(key, seed)) < limit else miss

        return by_user

    def native_percentage(ctx: Context) -> Decision | None:
        if logged_in:
            key = ctx.user_key if ctx.logged_in else None
        elif logged_out:
            key = None if ctx.logged_in else ctx.cookie_key
        else:
            key = ctx.cookie_key
        if key is None:
            return miss
        return d if fmix(b"", crc(key, seed)) < limit else miss

    return native_percentage


def _reddit_loggedout(d: Decision, pct: float, miss: Decision | None) -> Check:
    """reddit: ``int(loid[-4:], 36) % 100 < p`` for logged-out visitors, unsalted."""

    def loggedout(ctx: Context) -> Decision | None:
        if ctx.logged_in or ctx.cookie_id is None:
            return miss
        b = reddit_loggedout_bucket(ctx.cookie_id)
        return d if b is not None and b < pct else miss

    return loggedout


def _membership(selectors: tuple[tuple[frozenset[str], Decision], ...], miss: Decision | None) -> Check:
    """One check for all group selectors, ``selectors`` in evaluation order."""
    any_of = frozenset().union(*(wanted for wanted, _ in selectors))
    if len(selectors) == 1:
        (only,) = selectors
        d1 = only[1]
        return lambda ctx: miss if any_of.isdisjoint(ctx.groups) else d1

    def membership(ctx: Context) -> Decision | None:
        groups = ctx.groups
        if not groups or any_of.isdisjoint(groups):
            return miss
        for wanted, d in selectors:
            if not wanted.isdisjoint(groups):
                return d
        return miss  # pragma: no cover (any_of covers every selector)

    return membership


def _always(d: Decision) -> Check:
    return lambda ctx: d


def _chain(checks: list[Check], fallback: Decision) -> Callable[[Context], Decision]:
    """One function trying ``checks`` in order; ``fallback`` when none decides."""
    if not checks:
        return lambda ctx: fallback
    if len(checks) == 1:
        only = checks[0]

        def run_one(ctx: Context) -> Decision:
            d = only(ctx)
            return fallback if d is None else d

        return run_one
    ordered = tuple(checks)

    def run(ctx: Context) -> Decision:
        for check in ordered:
            d = check(ctx)
            if d is not None:
                return d
        return fallback

    return run


def _kind(value: Any) -> str:
    return {list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
