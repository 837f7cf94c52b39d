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
import json
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flagstaff.bucketing import (
    REDDIT_CONTROLS,
    VARIANT_SALT_SUFFIX,
    BucketingMode,
    flagstaff_hash,
    fmix32,
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
from flagstaff.rules import compile_clause, compile_regex, parse_instant

__all__ = [
    "Experiment",
    "Flag",
    "Kind",
    "Schedule",
    "Switch",
    "decode_document",
    "encode_document",
    "parse_flag",
    "validate_name",
]

Check = Callable[[Context], Decision | None]
"""A compiled step of evaluation: a decision if it decides, else ``None``."""

_NAME = re.compile(r"^[^\s/\x00-\x1f\x7f.][^\s/\x00-\x1f\x7f]{0,199}$")

# Selector keys, in the order evaluation tries them. They OR together; the
# order only decides which one the reason names when several match.
GROUP_SELECTORS = ("admin", "employee", "gold", "beta")
SELECTOR_KEYS = (
    "everyone",
    "url",
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

    ``checks`` are the compiled evaluation steps, tried in order by
    :func:`flagstaff.evaluate.evaluate`; ``constant`` is set when the answer does
    not depend on the context at all (``"on"``, ``"off"``, a kill switch).
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
    checks: tuple[Check, ...] = field(repr=False, compare=False)
    pick: Callable[[Context, Decision], Decision] | None = field(repr=False, compare=False)
    default: Decision = field(repr=False)
    scheduled_off: Decision = field(repr=False)

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
        return self.assemble(switch, {}, percentages, (), None, (), None)

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
            try:
                self.mode = BucketingMode(doc["bucketing"])
            except ValueError:
                modes = ", ".join(m.value for m in BucketingMode)
                self.problem("bucketing", f"unknown mode {doc['bucketing']!r}; expected one of {modes}")
        bucket_by = doc.get("bucket_by", "user")
        if bucket_by not in ("user", "cookie"):
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
        if self.problems:
            return None
        checks.extend(self.percentage_checks(percentages, bucket_by))
        exp_check = self.experiment_check(doc.get("experiment"), experiment)
        if exp_check is not None:
            checks.append(exp_check)
        return self.assemble(
            switch, meta, percentages, tuple(selectors), experiment, variants, schedule, checks
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
        checks: list[Check] | None = None,
    ) -> Flag:
        checks = list(checks or [])
        if not checks and percentages:
            checks.extend(self.percentage_checks(percentages, "user"))
        constant: Decision | None = None
        if switch is Switch.OFF:
            constant = self.decision(False, Reason.OFF, "enabled")
        elif switch is Switch.ON and not variants and schedule is None:
            constant = self.decision(True, Reason.ON, "enabled")
        elif not checks and schedule is None and switch is Switch.TARGETED:
            constant = self.decision(False, Reason.DEFAULT)
        if switch is Switch.ON:
            on = self.decision(True, Reason.ON, "enabled")
            checks = [lambda ctx: on]
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
            checks=tuple(checks),
            pick=self.variant_picker(variants) if variants else None,
            default=self.decision(False, Reason.DEFAULT),
            scheduled_off=self.decision(False, Reason.SCHEDULE, "schedule"),
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
        bounds: dict[str, float | None] = {"start": None, "end": None}
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
        """Compile the selectors present in ``doc`` (top level or experiment)."""
        names: list[str] = []
        checks: list[Check] = []
        for key in SELECTOR_KEYS:
            if key not in doc:
                continue
            path = prefix + key
            check = self.selector(key, doc[key], path)
            if check is not None:
                names.append(key)
                checks.append(check)
        return names, checks

    def selector(self, key: str, value: Any, path: str) -> Check | None:
        d = self.decision(True, Reason.TARGET, key)
        if key == "everyone" or key in GROUP_SELECTORS or key in ("loggedin", "loggedout"):
            flag = self.flag_bool(value, path)
            if not flag:  # false selectors select nobody: drop them
                return None
            if key == "everyone":
                return lambda ctx: d
            if key == "loggedin":
                return lambda ctx: d if ctx.logged_in else None
            if key == "loggedout":
                return lambda ctx: None if ctx.logged_in else d
            return lambda ctx: d if key in ctx.groups else None
        if key == "url":
            return self.url_selector(value, path)
        if key == "groups":
            groups = self.string_list(value, path)
            if groups is None:
                return None
            wanted = frozenset(groups)
            return lambda ctx: d if not wanted.isdisjoint(ctx.groups) else None
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
                return d if name is not None and name.lower() in lower else None

            return users_check
        if key == "regex":
            rx = compile_regex(value, path, self.problems)
            if rx is None:
                return None
            search = rx.search
            return lambda ctx: d if ctx.user_id is not None and search(ctx.user_id) is not None else None
        if key in ("subreddits", "locations", "subdomains"):
            items = self.string_list(value, path)
            if items is None:
                return None
            places = frozenset(i.lower() for i in items)
            attr = "subdomain" if key == "subdomains" else "location"
            return lambda ctx: d if (v := getattr(ctx, attr)) is not None and v.lower() in places else None
        if key == "oauth_clients":
            items = self.string_list(value, path)
            if items is None:
                return None
            clients = frozenset(items)  # case-sensitive, as reddit
            return lambda ctx: d if ctx.oauth_client in clients else None
        if key == "rules":
            return self.rules(value, path)
        raise AssertionError(key)  # pragma: no cover

    def url_selector(self, value: Any, path: str) -> Check | None:
        if isinstance(value, str):
            d = self.decision(True, Reason.TARGET, "url")
            return lambda ctx: d if value in ctx.features else None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            names = frozenset(value)
            d = self.decision(True, Reason.TARGET, "url")
            return lambda ctx: d if not names.isdisjoint(ctx.features) else None
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
                return None

            return force
        self.problem(path, "must be a name, a list of names, or an object mapping names to variants")
        return None

    def rules(self, value: Any, path: str) -> Check | None:
        if not isinstance(value, list) or not value:
            self.problem(path, "must be a non-empty list of rules")
            return None
        compiled: list[tuple[Decision, list[tuple[str, Callable[[Any], bool]]]]] = []
        for i, rule in enumerate(value):
            rpath = f"{path}[{i}]"
            clauses = rule.get("all") if isinstance(rule, dict) and "all" in rule else [rule]
            if isinstance(rule, dict) and "all" in rule and set(rule) != {"all"}:
                self.problem(rpath, "a rule with 'all' may have no other keys")
            if not isinstance(clauses, list) or not clauses:
                self.problem(rpath + ".all", "must be a non-empty list of clauses")
                continue
            parts: list[tuple[str, Callable[[Any], bool]]] = []
            for j, clause in enumerate(clauses):
                cpath = rpath if clauses is not rule.get("all") else f"{rpath}.all[{j}]"
                test = self.clause(clause, cpath)
                if test is not None:
                    parts.append(test)
            compiled.append((self.decision(True, Reason.TARGET, f"rules[{i}]"), parts))

        def rules_check(ctx: Context) -> Decision | None:
            for decision, parts in compiled:
                if all(test(ctx.attribute(attr)) for attr, test in parts):
                    return decision
            return None

        return rules_check

    def clause(self, clause: Any, path: str) -> tuple[str, Callable[[Any], bool]] | None:
        if not isinstance(clause, dict):
            self.problem(path, 'must be an object such as {"attribute": "plan", "op": "eq", "value": "pro"}')
            return None
        allowed = frozenset({"attribute", "op", "value", "negate"})
        for key in clause:
            if key not in allowed:
                self.problem(f"{path}.{key}", f"unknown key{_suggest(str(key), allowed)}")
        attr, op = clause.get("attribute"), clause.get("op")
        if not isinstance(attr, str) or not attr:
            self.problem(f"{path}.attribute", "must name a context attribute")
            return None
        if not isinstance(op, str):
            self.problem(f"{path}.op", "must be an operator name such as 'eq' or 'in'")
            return None
        if op != "exists" and "value" not in clause:
            self.problem(f"{path}.value", f"op {op!r} needs a value")
            return None
        negate = clause.get("negate", False)
        if not isinstance(negate, bool):
            self.problem(f"{path}.negate", "must be true or false")
            return None
        test = compile_clause(op, clause.get("value"), negate, f"{path}.value", self.problems)
        return None if test is None else (attr, test)

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

    def percentage_checks(self, percentages: dict[str, float], bucket_by: str) -> list[Check]:
        checks: list[Check] = []
        for key, pct in percentages.items():
            d = self.decision(True, Reason.PERCENTAGE, key)
            if pct <= 0:
                continue
            if key == "percent_loggedout" and self.mode is BucketingMode.REDDIT:
                # reddit: int(loid[-4:], 36) % 100 < p, with no feature salt.
                def loggedout(ctx: Context, d: Decision = d, pct: float = pct) -> Decision | None:
                    if ctx.logged_in or ctx.cookie_id is None:
                        return None
                    b = reddit_loggedout_bucket(ctx.cookie_id)
                    return d if b is not None and b < pct else None

                checks.append(loggedout)
                continue
            test = percentage_test(self.mode, self.salt, pct)
            if key == "percent_loggedin":

                def loggedin(ctx: Context, d: Decision = d, test: Any = test) -> Decision | None:
                    k = ctx.user_key
                    return d if ctx.logged_in and k is not None and test(k, ctx.user_id) else None

                checks.append(loggedin)
            elif key == "percent_loggedout":

                def loggedout_native(ctx: Context, d: Decision = d, test: Any = test) -> Decision | None:
                    k = ctx.cookie_key
                    return d if not ctx.logged_in and k is not None and test(k, ctx.cookie_id) else None

                checks.append(loggedout_native)
            elif bucket_by == "cookie":

                def by_cookie(ctx: Context, d: Decision = d, test: Any = test) -> Decision | None:
                    k = ctx.cookie_key
                    return d if k is not None and test(k, ctx.cookie_id) else None

                checks.append(by_cookie)
            else:

                def by_user(ctx: Context, d: Decision = d, test: Any = test) -> Decision | None:
                    k = ctx.user_key
                    if k is not None:
                        return d if test(k, ctx.user_id) else None
                    k = ctx.cookie_key
                    return d if k is not None and test(k, ctx.cookie_id) else None

                checks.append(by_user)
        return checks

    def experiment_check(self, raw: Any, exp: Experiment | None) -> Check | None:
        if exp is None or not exp.enabled or not exp.eligibility:
            # reddit: an experiment with no eligibility selector has nobody eligible.
            return None
        _, eligible = self.selectors(raw, "experiment.")
        outcomes: dict[str | None, Decision] = {None: self.decision(False, Reason.EXCLUDED, "experiment")}
        for vname in exp.variants:
            control = vname in REDDIT_CONTROLS
            outcomes[vname] = self.decision(
                not control,
                Reason.CONTROL if control else Reason.EXPERIMENT,
                "experiment",
                variant=vname,
                experiment_id=exp.experiment_id,
            )
        choose = self.chooser(exp.variants)

        def experiment(ctx: Context) -> Decision | None:
            for check in eligible:
                if check(ctx) is not None:
                    break
            else:
                return None
            seed = ctx.user_id if ctx.logged_in and ctx.user_id is not None else ctx.cookie_id
            if seed is None:
                return outcomes[None]
            return outcomes[choose(seed)]

        return experiment

    def chooser(self, weights: Mapping[str, float]) -> Callable[[str], str | None]:
        """``seed -> variant or None`` over weighted variants."""
        if self.mode is BucketingMode.REDDIT:
            salt = self.salt
            pool = dict(weights)
            return lambda seed: reddit_variant(reddit_bucket(salt, seed), pool)
        names = sorted(weights)
        n = len(names)
        limits = [threshold(weights[v]) for v in names]
        seed0 = salt_seed(self.salt + VARIANT_SALT_SUFFIX)
        crc = zlib.crc32

        def native(seed: str) -> str | None:
            hv = fmix32(crc(seed.encode(), seed0))
            lane = hv % n
            return names[lane] if hv // n < limits[lane] else None

        return native

    def variant_picker(self, variants: tuple[str, ...]) -> Callable[[Context, Decision], Decision]:
        """For a top-level variant list: every enabled user gets one, equal weights."""
        cache: dict[tuple[str | None, Reason, str], Decision] = {}
        name = self.name
        if self.mode is BucketingMode.HANOI:

            def index(seed: str) -> str:
                return variants[zlib.crc32(seed.encode()) % len(variants)]
        else:
            ordered = sorted(variants)
            vsalt = self.salt + VARIANT_SALT_SUFFIX

            def index(seed: str) -> str:
                return ordered[flagstaff_hash(vsalt, seed) % len(ordered)]

        def pick(ctx: Context, d: Decision) -> Decision:
            seed = ctx.bucketing_id
            if seed is None:
                return d
            variant = index(seed)
            key = (d.rule, d.reason, variant)
            hit = cache.get(key)
            if hit is None:
                hit = Decision(name, True, d.reason, variant=variant, rule=d.rule)
                cache[key] = hit  # bounded: rules x reasons x variants
            return hit

        return pick


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
