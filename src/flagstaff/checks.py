"""Compiled checks: the closures a flag is compiled into, in evaluation order.

:mod:`flagstaff.model` validates a document once and builds its flag from the
factories here; :func:`flagstaff.evaluate.evaluate` then calls ``flag.run``.
A :data:`Check` answers a :class:`~flagstaff.decision.Decision` when it decides
and its ``miss`` (usually ``None``: let the next check decide) when it does not.
Every decision a check can answer is built once, when the flag is compiled, so
evaluating allocates nothing.

Evaluation order, which is the order of this module:

1. ``"enabled": "off"`` is a constant decision and never reaches a check
   (:func:`flagstaff.evaluate.evaluate`), nor does a schedule that is not active;
   a flag's :func:`deny` check comes first of all (even before the schedule), then
   its :func:`prerequisites` (issue 14, at the end of this module);
2. the selectors, in :data:`~flagstaff.document.SELECTOR_KEYS` order: ``url``
   first (a forced variant wins even over ``"enabled": "on"``), then ``everyone``,
   the group selectors (``admin``, ``employee``, ``gold``, ``beta``, ``groups``:
   one :func:`membership` test), ``loggedin``, ``loggedout``, ``users``, ``regex``,
   the places (``subreddits``, ``locations``, ``subdomains``), ``oauth_clients``
   and the attribute ``rules``;
3. the percentages: ``percentage``, ``percent_loggedin``, ``percent_loggedout``,
   each hashing the id its :data:`KEY_SOURCES` entry names;
4. the :func:`experiment`: an eligible context gets its variant, or is excluded;
5. :func:`chain` tries them in that order; the first decision wins, else the
   fallback (``Reason.DEFAULT``, or ``Reason.ON`` for ``"enabled": "on"``, whose
   flag keeps only the ``url`` check);
6. after the experiment, the ordered :func:`targeting` rules (each with its serve),
   then the ``default`` serve;
7. :func:`with_variants`: a flag with a top-level ``variants`` list gives every
   enabled context one of them.

Checks that read other documents (a segment's members, a prerequisite flag, the holdout
segments) are built per snapshot: :mod:`flagstaff.model` gives such a flag a ``link``
that builds them for an env, so evaluation itself still looks nothing up by name
beyond ``env.flags`` for a prerequisite.

No check touches a hash: the formulas are :mod:`flagstaff.bucketing`'s, whose
factories build the percentage, experiment and variant closures.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

from flagstaff.bucketing import (
    BucketBy,
    BucketingMode,
    attribute_key,
    native_percentage_check,
    percentage_test,
    reddit_loggedout_bucket,
)
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import Problem
from flagstaff.members import COMPACT_ABOVE, users_test
from flagstaff.rules import Condition, attribute_getter

__all__ = [
    "KEY_SOURCES",
    "MAX_PREREQUISITE_DEPTH",
    "TOO_DEEP",
    "Check",
    "KeySource",
    "Member",
    "Prerequisite",
    "Run",
    "Serve",
    "always",
    "bucket_source",
    "chain",
    "deny",
    "experiment",
    "experiment_in",
    "forced_variant",
    "key_source",
    "logged_in",
    "logged_out",
    "membership",
    "oauth_clients",
    "percentage",
    "percentage_by",
    "places",
    "prerequisites",
    "ramp",
    "reddit_loggedout",
    "regex",
    "rules",
    "targeting",
    "url_names",
    "users",
    "with_variants",
]

Check = Callable[[Context], Decision | None]
"""A compiled step of evaluation: a decision if it decides, else its miss."""

Run = Callable[[Context], Decision]
"""A whole compiled flag (the schedule aside): always a decision."""


def always(d: Decision) -> Check:
    """Decides ``d`` whoever asks (``everyone``, a 100% percentage)."""
    return lambda ctx: d


# --------------------------------------------------------------------------- 2. selectors


def url_names(d: Decision, names: frozenset[str], miss: Decision | None) -> Check:
    """``url``: ``d`` when a ``?feature=`` value of the request is one of ``names``."""
    if len(names) == 1:
        (only,) = names
        return lambda ctx: d if only in ctx.features else miss
    return lambda ctx: d if not names.isdisjoint(ctx.features) else miss


def forced_variant(forced: Mapping[str, Decision], miss: Decision | None) -> Check:
    """``url`` as an object: the first ``?feature=`` value, in request order, that
    names a variant forces it."""

    def force(ctx: Context) -> Decision | None:
        for feature in ctx.features:
            hit = forced.get(feature)
            if hit is not None:
                return hit
        return miss

    return force


def membership(selectors: tuple[tuple[frozenset[str], Decision], ...], miss: Decision | None) -> Check:
    """One check for all group selectors, ``selectors`` in evaluation order: a
    single set-intersection test answers the common miss."""
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


def logged_in(d: Decision, miss: Decision | None) -> Check:
    """``loggedin``: ``d`` for a logged-in user."""
    return lambda ctx: d if ctx.logged_in else miss


def logged_out(d: Decision, miss: Decision | None) -> Check:
    """``loggedout``: ``d`` for a logged-out visitor."""
    return lambda ctx: miss if ctx.logged_in else d


def users(d: Decision, names: Sequence[str], miss: Decision | None) -> Check:
    """``users``: ``d`` when the user id is one of ``names``, or the user name is,
    compared case-insensitively. A list longer than
    :data:`~flagstaff.members.COMPACT_ABOVE` is held in a compact
    :class:`~flagstaff.members.MemberSet` (same answers, a fifth of the memory)."""
    if len(names) > COMPACT_ABOVE:
        return passes(d, users_test(names), miss)
    exact = frozenset(names)
    lower = frozenset(u.lower() for u in names)

    def users_check(ctx: Context) -> Decision | None:
        if ctx.user_id in exact:
            return d
        name = ctx.user_name
        return d if name is not None and name.lower() in lower else miss

    return users_check


def passes(d: Decision, test: Member, miss: Decision | None) -> Check:
    """``d`` when ``test`` holds (a compiled membership test, such as a large ``users`` list's)."""
    return lambda ctx: d if test(ctx) else miss


def regex(d: Decision, search: Callable[[str], object | None], miss: Decision | None) -> Check:
    """``regex``: ``d`` when ``search`` finds a match in the user id."""
    return lambda ctx: d if ctx.user_id is not None and search(ctx.user_id) is not None else miss


def places(d: Decision, attr: str, names: Sequence[str], miss: Decision | None) -> Check:
    """``subreddits``, ``locations``, ``subdomains``: ``d`` when the context's
    ``attr`` is one of ``names``, compared case-insensitively."""
    wanted = frozenset(n.lower() for n in names)
    return lambda ctx: d if (v := getattr(ctx, attr)) is not None and v.lower() in wanted else miss


def oauth_clients(d: Decision, clients: Sequence[str], miss: Decision | None) -> Check:
    """``oauth_clients``: ``d`` for a request from one of ``clients`` (case-sensitive, as reddit)."""
    ids = frozenset(clients)
    return lambda ctx: d if ctx.oauth_client in ids else miss


def rules(compiled: Sequence[tuple[Decision, tuple[Condition, ...]]], miss: Decision | None) -> Check:
    """``rules``: the decision of the first rule whose conditions all hold."""
    if len(compiled) == 1 and len(compiled[0][1]) == 1:
        (d, (only,)) = compiled[0]
        return lambda ctx: d if only(ctx) else miss
    ordered = tuple(compiled)

    def rules_check(ctx: Context) -> Decision | None:
        for decision, conditions in ordered:
            for condition in conditions:
                if not condition(ctx):
                    break
            else:
                return decision
        return miss

    return rules_check


# --------------------------------------------------------------------------- 3. percentages

KeySource = Callable[[Context], "tuple[bytes, str] | None"]
"""Which id of a context a percentage hashes, as ``(UTF-8 bytes, text)``."""


def _logged_in_key(ctx: Context) -> tuple[bytes, str] | None:
    return ctx.user_bucket_key() if ctx.logged_in else None


def _logged_out_key(ctx: Context) -> tuple[bytes, str] | None:
    return None if ctx.logged_in else ctx.cookie_bucket_key()


KEY_SOURCES: Mapping[BucketBy, KeySource] = {
    BucketBy.USER: Context.bucket_key,
    BucketBy.COOKIE: Context.cookie_bucket_key,
    BucketBy.LOGGED_IN: _logged_in_key,
    BucketBy.LOGGED_OUT: _logged_out_key,
}
"""The key source of each :class:`~flagstaff.bucketing.BucketBy`."""


def percentage(
    mode: BucketingMode, salt: str, by: BucketBy, pct: float, hit: Decision, miss: Decision | None
) -> Check:
    """``hit`` for the ``pct`` percent of contexts whose ``by`` id falls inside,
    under ``mode`` and ``salt``; ``miss`` for the others and for a context
    without that id (a 100% ``percentage`` takes everyone, id or not)."""
    if pct >= 100 and by in (BucketBy.USER, BucketBy.COOKIE):
        return always(hit)  # everyone, with or without an id
    if mode is BucketingMode.FLAGSTAFF and pct < 100:
        return native_percentage_check(salt, pct, by, hit, miss)
    source = KEY_SOURCES[by]
    test = percentage_test(mode, salt, pct)

    def percentage(ctx: Context) -> Decision | None:
        key = source(ctx)
        return hit if key is not None and test(*key) else miss

    return percentage


def ramp(ats: Sequence[float], steps: Sequence[Check | None]) -> Check:
    """A progressive rollout: ``steps[i]`` (a percentage check answering ``None`` for a
    miss; ``None`` for a 0% step) decides from ``ats[i]`` on, read from ``ctx.time``;
    before ``ats[0]``, or with no time, nobody (``None``: the next check decides)."""
    times = tuple(ats)
    checks = tuple(steps)

    def ramp(ctx: Context) -> Decision | None:
        when = ctx.time
        if when is None:
            return None
        i = bisect_right(times, when) - 1
        if i < 0:
            return None
        check = checks[i]
        return None if check is None else check(ctx)

    return ramp


def reddit_loggedout(d: Decision, pct: float, miss: Decision | None) -> Check:
    """reddit mode's ``percent_loggedout``: ``int(loid[-4:], 36) % 100 < p`` for
    logged-out visitors, unsalted (:func:`~flagstaff.bucketing.reddit_loggedout_bucket`)."""

    def loggedout(ctx: Context) -> Decision | None:
        if ctx.logged_in or ctx.cookie_id is None:
            return miss
        b = reddit_loggedout_bucket(ctx.cookie_id)
        return d if b is not None and b < pct else miss

    return loggedout


# --------------------------------------------------------------------------- 4. the experiment


def experiment(
    eligible: Sequence[Check],
    choose: Callable[[bytes, str], Decision],
    excluded: Decision,
    miss: Decision | None,
) -> Check:
    """An experiment: for a context one of ``eligible`` selects (each compiled
    with miss ``None``), the decision ``choose`` gives its id (see
    :func:`~flagstaff.bucketing.variant_chooser`), ``excluded`` without an id.
    Logged-in users bucket by user id, logged-out visitors by cookie id."""
    first = eligible[0]
    rest = tuple(eligible[1:])

    def experiment(ctx: Context) -> Decision | None:
        if first(ctx) is None:
            for check in rest:
                if check(ctx) is not None:
                    break
            else:
                return miss
        if ctx.logged_in:
            key, uid = ctx.user_key, ctx.user_id
            if key is not None and uid is not None:
                return choose(key, uid)
        key, cid = ctx.cookie_key, ctx.cookie_id
        if key is None or cid is None:
            return excluded
        return choose(key, cid)

    return experiment


# --------------------------------------------------------------------------- 5. the chain


def chain(checks: Sequence[Check], fallback: Decision) -> Run:
    """One function trying ``checks`` in order; ``fallback`` when none decides."""
    # Default arguments, not closed-over names: as fast to read, and one tuple for
    # the collector instead of a cell each (a cold build re-chains every flag).
    if not checks:
        return lambda ctx: fallback
    if len(checks) == 1:

        def run_one(ctx: Context, only: Check = checks[0], fallback: Decision = fallback) -> Decision:
            d = only(ctx)
            return fallback if d is None else d

        return run_one

    if len(checks) == 2:

        def run_two(
            ctx: Context, first: Check = checks[0], second: Check = checks[1], fallback: Decision = fallback
        ) -> Decision:
            d = first(ctx)
            if d is None:
                d = second(ctx)
            return fallback if d is None else d

        return run_two

    def run(
        ctx: Context, ordered: tuple[Check, ...] = tuple(checks), fallback: Decision = fallback
    ) -> Decision:
        for check in ordered:
            d = check(ctx)
            if d is not None:
                return d
        return fallback

    return run


# --------------------------------------------------------------------------- 6. variants


def with_variants(run: Run, name: str, pick: Callable[[bytes], str], source: KeySource | None = None) -> Run:
    """For a top-level variant list: every enabled context with an id (the user
    id, else the cookie id; the ``source`` key when given, an attribute
    ``bucket_by``) gets the variant ``pick`` gives it (see
    :func:`~flagstaff.bucketing.variant_picker`)."""
    cache: dict[tuple[str | None, Reason, str], Decision] = {}

    def run_with_variant(ctx: Context) -> Decision:
        d = run(ctx)
        if not d.enabled or d.variant is not None:
            return d
        if source is None:
            key = ctx.user_key if ctx.user_key is not None else ctx.cookie_key
        else:
            pair = source(ctx)
            key = None if pair is None else pair[0]
        if key is None:
            return d
        variant = pick(key)
        slot = (d.rule, d.reason, variant)
        hit = cache.get(slot)
        if hit is None:
            hit = Decision(name, True, d.reason, variant=variant, rule=d.rule)
            cache[slot] = hit  # bounded: rules x reasons x variants
        return hit

    return run_with_variant


# --------------------------------------------------------------------------- issue 14
# deny (before the schedule), prerequisites (after it), the experiment's layer and holdout,
# and the ordered targeting rules with their serves (after the experiment).


def key_source(names: Sequence[str]) -> KeySource:
    """An attribute ``bucket_by``: the first of ``names`` the context has, as the hash
    input :func:`~flagstaff.bucketing.attribute_key` makes of it; ``"user"`` in the list
    is the user id else the cookie id, ``"cookie"`` the cookie id. ``None`` when the
    context has none of them (it is not bucketed)."""
    getters: list[KeySource] = []
    for name in names:
        if name == "user":
            getters.append(Context.bucket_key)
        elif name == "cookie":
            getters.append(Context.cookie_bucket_key)
        else:
            get = attribute_getter(name)
            getters.append(lambda ctx, get=get: attribute_key(get(ctx)))  # type: ignore[misc]
    if len(getters) == 1:
        return getters[0]
    ordered = tuple(getters)

    def first(ctx: Context) -> tuple[bytes, str] | None:
        for source in ordered:
            key = source(ctx)
            if key is not None:
                return key
        return None

    return first


def bucket_source(value: Any, path: str, problems: list[Problem]) -> tuple[BucketBy, KeySource | None]:
    """Read a ``bucket_by``: ``"user"`` and ``"cookie"`` keep their meaning
    (:class:`~flagstaff.bucketing.BucketBy`, no key source); any other attribute name, or a
    list of names (the first present), gives a :func:`key_source`. A bad value is recorded
    in ``problems`` and read as ``"user"``."""
    if value in ("user", "cookie"):
        return BucketBy(value), None
    if isinstance(value, str) and value:
        return BucketBy.USER, key_source((value,))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and v for v in value)
        and len(set(value)) == len(value)
    ):
        return BucketBy.USER, key_source(tuple(value))
    problems.append(
        Problem(
            path,
            "must be 'user' (the user id, else the cookie id), 'cookie', a context attribute "
            "name such as 'account', or a non-empty list of distinct names (the first present)",
        )
    )
    return BucketBy.USER, None


def percentage_by(
    mode: BucketingMode, salt: str, source: KeySource, pct: float, hit: Decision, miss: Decision | None
) -> Check:
    """:func:`percentage` over an attribute key: ``hit`` when the ``source`` key is inside
    ``pct``; a context without the key is never inside (even at 100%)."""
    if pct <= 0:
        return lambda ctx: miss
    test = percentage_test(mode, salt, pct)

    def percentage_by(ctx: Context) -> Decision | None:
        key = source(ctx)
        return hit if key is not None and test(*key) else miss

    return percentage_by


Member = Callable[[Context], bool]
"""A condition of a targeting rule or a deny entry (a segment's ``contains``...)."""


def deny(entries: Sequence[tuple[Member, Decision]]) -> Check:
    """``deny``: the decision of the first entry that holds the context, else ``None``."""
    ordered = tuple(entries)
    if len(ordered) == 1:
        ((only, d),) = ordered
        return lambda ctx: d if only(ctx) else None

    def deny_check(ctx: Context) -> Decision | None:
        for holds, d in ordered:
            if holds(ctx):
                return d
        return None

    return deny_check


Serve = Callable[[Context], Decision]
"""What a matched targeting rule (or the ``default``) answers: always a decision."""


def targeting(rules: Sequence[tuple[tuple[Member, ...], Decision | Serve]], miss: Decision | None) -> Check:
    """``targeting``: the serve of the first rule whose conditions all hold (a rule without
    a condition holds for everyone), else ``miss``. A serve is a decision (``on``, ``off``,
    a variant) or a function of the context (a rollout, a split)."""
    ordered: list[tuple[Member, Decision | None, Serve | None]] = []
    for conditions, serve in rules:
        if not conditions:
            holds: Member = _everyone
        elif len(conditions) == 1:
            holds = conditions[0]
        else:
            holds = _all_of(conditions)
        if isinstance(serve, Decision):
            ordered.append((holds, serve, None))
        else:
            ordered.append((holds, None, serve))

    # Default arguments rather than a closure, for the collector (see chain()).
    only, served, _ = ordered[0] if len(ordered) == 1 else (_everyone, None, None)
    if served is not None:
        # One rule serving a constant (the commonest shape): no loop, no tuples.

        def one_rule(
            ctx: Context, holds: Member = only, d: Decision = served, miss: Decision | None = miss
        ) -> Decision | None:
            return d if holds(ctx) else miss

        return one_rule

    def targeting_check(
        ctx: Context,
        frozen: tuple[tuple[Member, Decision | None, Serve | None], ...] = tuple(ordered),
        miss: Decision | None = miss,
    ) -> Decision | None:
        for holds, d, serve in frozen:
            if holds(ctx):
                return d if serve is None else serve(ctx)
        return miss

    return targeting_check


def _everyone(ctx: Context) -> bool:
    return True


def _all_of(conditions: tuple[Member, ...]) -> Member:
    def all_hold(ctx: Context) -> bool:
        for condition in conditions:  # noqa: SIM110 (no generator per call on the hot path)
            if not condition(ctx):
                return False
        return True

    return all_hold


def experiment_in(  # noqa: PLR0913 (the parts of one experiment)
    eligible: Sequence[Check],
    choose: Callable[[bytes, str], Decision],
    excluded: Decision,
    miss: Decision | None,
    source: KeySource | None,
    in_layer: Callable[[bytes], bool] | None,
    holdouts: Sequence[tuple[Member, Decision]],
) -> Check:
    """:func:`experiment` with the issue-14 additions, in this order: an eligible context
    outside the ``in_layer`` range is not in the experiment (``miss``, as an ineligible
    one); a member of a holdout gets its decision; then its variant. ``source`` is an
    attribute ``bucket_by`` (else the user id when logged in, else the cookie id); a
    context without that key is ``excluded``."""
    first = eligible[0]
    rest = tuple(eligible[1:])
    held = tuple(holdouts)

    def experiment_in(ctx: Context) -> Decision | None:
        if first(ctx) is None:
            for check in rest:
                if check(ctx) is not None:
                    break
            else:
                return miss
        pair: tuple[bytes, str] | None
        if source is not None:
            pair = source(ctx)
        elif ctx.logged_in and ctx.user_key is not None and ctx.user_id is not None:
            pair = ctx.user_key, ctx.user_id
        else:
            pair = ctx.cookie_bucket_key()
        if pair is None:
            return excluded
        if in_layer is not None and not in_layer(pair[0]):
            return miss
        for holds, d in held:
            if holds(ctx):
                return d
        return choose(*pair)

    return experiment_in


# The depth of prerequisite evaluation under way in this thread (or greenlet, or task): a
# cycle the snapshot did not break stops here instead of exhausting the stack.
_DEPTH: ContextVar[int] = ContextVar("flagstaff_prerequisite_depth", default=0)
MAX_PREREQUISITE_DEPTH = 16
TOO_DEEP = "prerequisite chain too deep or cyclic"


class Prerequisite(NamedTuple):
    """One compiled prerequisite and the decisions it can answer (built once)."""

    flag: str
    holds: Callable[[Decision], bool]
    failed: Decision  # the requirement does not hold (or the flag errs)
    missing: Decision  # no flag of that name in the snapshot
    too_deep: Decision  # the chain is deeper than MAX_PREREQUISITE_DEPTH (a cycle)


def prerequisites(
    required: Sequence[Prerequisite],
    decide: Callable[[str, Context], Decision | None],
    too_deep: Decision,
) -> Check:
    """``prerequisites``: for each prerequisite in order, ``decide`` the named flag for
    the same context (``None``: no such flag); its ``failed``/``missing`` decision unless
    its requirement holds. ``None`` when every prerequisite holds. A chain deeper than
    :data:`MAX_PREREQUISITE_DEPTH` answers ``too_deep`` (its error is :data:`TOO_DEEP`),
    and each flag up the chain its own ``too_deep``: a cycle ends, never recurses."""

    # Default arguments rather than a closure, for the collector (see chain()).
    def prerequisites_check(
        ctx: Context,
        ordered: tuple[Prerequisite, ...] = tuple(required),
        decide: Callable[[str, Context], Decision | None] = decide,
        too_deep: Decision = too_deep,
    ) -> Decision | None:
        depth = _DEPTH.get()
        if depth >= MAX_PREREQUISITE_DEPTH:
            return too_deep
        token = _DEPTH.set(depth + 1)
        try:
            for p in ordered:
                d = decide(p.flag, ctx)
                if d is None:
                    return p.missing
                if d.error == TOO_DEEP:
                    return p.too_deep
                if d.reason is Reason.ERROR or not p.holds(d):
                    return p.failed
            return None
        finally:
            _DEPTH.reset(token)

    return prerequisites_check
