"""The bucketing contract: which users fall inside a percentage or a variant.

THIS FILE IS A COMPATIBILITY CONTRACT. Every formula here decides, for every
user of every deployment, whether they see a feature. Changing any of them —
the hash, the separator byte, the threshold rounding, the lane layout — moves
users between buckets in every process that upgrades, which silently restarts
every running experiment and flips features for people who had them. The
vectors in ``tests/engine/test_bucketing.py`` pin the formulas; if one fails, the change
is wrong, not the vector. New behaviour gets a new :class:`BucketingMode`.

Native mode (``flagstaff``)
---------------------------
``h(salt, id) = fmix32(crc32(utf8(salt) + b"\\x00" + utf8(id)))``

* ``crc32`` is zlib's CRC-32 (IEEE 802.3), unsigned; ``fmix32`` is MurmurHash3's
  32-bit finaliser. CRC-32 alone is affine in its input, so two flags' buckets
  would be correlated; the finaliser's multiplications break that, at a cost of
  a few integer operations instead of a cryptographic hash.
* A percentage ``p`` admits ``h < T(p)`` with ``T(p) = floor(p * 2**32 / 100)``
  computed exactly from the decimal text of ``p``. Granularity is 1/2**32 (far
  finer than 0.01%). ``T`` grows with ``p``, so raising a percentage never
  removes anyone (ramp-monotonic). ``p <= 0`` admits nobody, ``p >= 100`` everyone.
* Variants hash with the salt ``salt + "\\x00variant"`` so that a user's variant
  is independent of whether they are inside the flag's percentage. With ``n``
  variants sorted by name, the user's lane is ``hv % n`` and their position in it
  ``hv // n``; they get lane ``i``'s variant when ``hv // n < T(w_i)``. Each
  variant owns its own lane, so growing one variant's weight only admits users
  who were in no variant, and shrinking it only releases its own users: no user
  ever moves between two variants. The price is that one variant can cover at
  most ``100/n`` percent of users (the reddit seed's rule, kept on purpose).

Compatibility modes reproduce the seed systems exactly (see docs/bucketing.md):
``rollout`` (the rollout gem 2.4.2+), ``rollout_randomized`` (its
``randomize_percentage`` option), ``hanoi`` (hanoi as its README intends: ``<``),
``hanoi_inverted`` (what hanoi 0.0.4's code did: ``>=``, for migrated flags),
``reddit`` (r2.config.feature's SHA-1 over 1000 buckets) and ``modulo100``
(integer user ids, ``id % 100 < p``, the first seed's rule).

Which id is hashed is part of the contract too (:class:`BucketBy`): the user id,
else the cookie id, unless the document says otherwise.

This module owns every formula twice over: the reference functions
(:func:`in_percentage`, :func:`variant_for`) say what the answer is, and the
factories at the end (:func:`percentage_test`, :func:`native_percentage_check`,
:func:`variant_chooser`, :func:`variant_picker`) build the closures a compiled
flag calls, with the same formulas inlined for speed. Nothing else in the engine
touches a hash: :mod:`flagstaff.checks` and :mod:`flagstaff.model` only call
these factories. Tests hold each compiled form to its reference.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar, cast

from mmh3 import mmh3_32_uintdigest

from flagstaff.context import Context

__all__ = [
    "BucketBy",
    "BucketingMode",
    "attribute_key",
    "bucket_limit",
    "bucket_value",
    "flagstaff_hash",
    "hanoi_bucket",
    "in_percentage",
    "layer_test",
    "modulo100_bucket",
    "native_percentage_check",
    "reddit_bucket",
    "reddit_loggedout_bucket",
    "reddit_variant",
    "rollout_active",
    "split_chooser",
    "threshold",
    "variant_chooser",
    "variant_for",
    "variant_picker",
]

MASK32 = 0xFFFFFFFF
SPACE = 1 << 32
ROLLOUT_RAND_BASE = (2**32 - 1) / 100.0  # rollout 2.4.2+: RAND_BASE
REDDIT_BUCKETS = 1000
VARIANT_SALT_SUFFIX = "\x00variant"
REDDIT_CONTROLS = ("control_1", "control_2")


class BucketingMode(StrEnum):
    """How a flag turns an id into a bucket. ``FLAGSTAFF`` unless migrating."""

    FLAGSTAFF = "flagstaff"
    ROLLOUT = "rollout"
    ROLLOUT_RANDOMIZED = "rollout_randomized"
    HANOI = "hanoi"
    HANOI_INVERTED = "hanoi_inverted"
    REDDIT = "reddit"
    MODULO100 = "modulo100"


HANOI_MODES = frozenset({BucketingMode.HANOI, BucketingMode.HANOI_INVERTED})
"""Modes whose top-level variants are hanoi's ``variants[crc32(id) % n]``."""


class BucketBy(StrEnum):
    """Which id of a context a percentage hashes. Hashing another id moves users
    as surely as another formula, so this is part of the contract."""

    USER = "user"  # the user id, else the cookie id: ``"bucket_by": "user"``, the default
    COOKIE = "cookie"  # the cookie id only: ``"bucket_by": "cookie"``
    LOGGED_IN = "logged_in"  # a logged-in user's id: ``percent_loggedin``
    LOGGED_OUT = "logged_out"  # a logged-out visitor's cookie id: ``percent_loggedout``


def fmix32_reference(h: int) -> int:
    """MurmurHash3's 32-bit finaliser, written out: a bijection with full avalanche.
    The reference the tests hold :func:`fmix32` to."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser, computed in C (see :data:`FMIX`)."""
    return FMIX(_EMPTY, h)


_EMPTY = b""
FMIX: Callable[[bytes, int], int] = mmh3_32_uintdigest
"""``FMIX(b"", h) == fmix32_reference(h)`` for every 32-bit ``h``: MurmurHash3_x86_32
of the empty input with seed ``h`` is the finaliser applied to ``h`` alone (no
blocks, no tail, length 0). One C call instead of eight operations on Python ints,
each allocating (they are 64-bit wide mid-way): a third of a percentage check."""


def salt_seed(salt: str) -> int:
    """CRC-32 state after ``utf8(salt) + b"\\x00"``; continuing it with the id's
    bytes equals hashing the concatenation, without building the concatenation."""
    return zlib.crc32(salt.encode() + b"\x00")


def flagstaff_hash(salt: str, key: str | bytes) -> int:
    """The native 32-bit hash of an id under a salt (see the module doc)."""
    data = key.encode() if isinstance(key, str) else key
    return fmix32(zlib.crc32(data, salt_seed(salt)))


@functools.lru_cache(maxsize=1024)  # a Decimal product per flag otherwise; few distinct percentages
def threshold(percent: float) -> int:
    """``floor(percent * 2**32 / 100)``, exact for the decimal text of ``percent``."""
    if percent <= 0:
        return 0
    if percent >= 100:
        return SPACE
    return math.floor(Decimal(repr(float(percent))) * SPACE / 100)


def hanoi_bucket(key: str | bytes) -> int:
    """hanoi/rollout 2.0: unsigned ``crc32(id) % 100`` (Python 3's value)."""
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) % 100


def rollout_active(key: str | bytes, percent: float) -> bool:
    """rollout 2.4.2+: ``crc32(id) < RAND_BASE * percent`` in IEEE doubles."""
    if percent <= 0:
        return False
    data = key.encode() if isinstance(key, str) else key
    return zlib.crc32(data) < ROLLOUT_RAND_BASE * percent


def reddit_bucket(name: str, seed: str) -> int:
    """r2.config.feature: ``int(sha1(name + seed).hexdigest(), 16) % 1000``."""
    digest = hashlib.sha1((name + seed).encode(), usedforsecurity=False).hexdigest()
    return int(digest, 16) % REDDIT_BUCKETS


def reddit_loggedout_bucket(loid: str) -> int | None:
    """reddit's ``int(loid[-4:], 36) % 100``; ``None`` when not base-36."""
    try:
        return int(loid[-4:], 36) % 100
    except ValueError:
        return None


def modulo100_bucket(key: str) -> int | None:
    """The first seed's ``user_id % 100``; ``None`` for ids that are not integers."""
    # Only plain decimal integers: int() would also take " 7", "0_7" and non-ASCII digits.
    digits = key[1:] if key[:1] == "-" else key
    if not digits.isascii() or not digits.isdigit() or len(digits) > 4000:
        return None
    return int(key) % 100


def in_percentage(mode: BucketingMode, salt: str, key: str, percent: float) -> bool:
    """Whether ``key`` falls inside ``percent`` under ``mode``: the reference
    definition (the client uses an equivalent precompiled form)."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    match mode:
        case BucketingMode.FLAGSTAFF:
            return flagstaff_hash(salt, key) < threshold(percent)
        case BucketingMode.ROLLOUT:
            return rollout_active(key, percent)
        case BucketingMode.ROLLOUT_RANDOMIZED:
            return rollout_active(key + salt, percent)
        case BucketingMode.HANOI:
            return hanoi_bucket(key) < percent
        case BucketingMode.HANOI_INVERTED:
            # hanoi 0.0.4's ``bucket >= p`` with p = 100 - percent: the top buckets.
            return 99 - hanoi_bucket(key) < percent
        case BucketingMode.REDDIT:
            return reddit_bucket(salt, key) // 10 < percent
        case BucketingMode.MODULO100:
            bucket = modulo100_bucket(key)
            return bucket is not None and bucket < percent
    raise AssertionError(mode)  # pragma: no cover


def variant_for(
    mode: BucketingMode,
    salt: str,
    key: str,
    names: Sequence[str],
    weights: Sequence[float],
) -> str | None:
    """The variant ``key`` falls in, or ``None`` when excluded.

    ``names`` and ``weights`` are parallel. In native mode the lanes are the
    names sorted; in the ``hanoi`` modes variants have equal weight and are picked by
    ``crc32(id) % n`` in the given order; in ``reddit`` mode see
    :func:`reddit_variant`.
    """
    n = len(names)
    if n == 0:
        return None
    if mode in HANOI_MODES:
        return names[zlib.crc32(key.encode()) % n]
    if mode is BucketingMode.REDDIT:
        return reddit_variant(reddit_bucket(salt, key), dict(zip(names, weights, strict=True)))
    order = sorted(range(n), key=lambda i: names[i])
    hv = flagstaff_hash(salt + VARIANT_SALT_SUFFIX, key)
    lane = order[hv % n]
    return names[lane] if hv // n < threshold(weights[lane]) else None


def reddit_variant(bucket: int, variants: dict[str, float]) -> str | None:
    """reddit's interleaved choice over 1000 buckets (controls at 10% added)."""
    pool: dict[str, float] = {c: 10.0 for c in REDDIT_CONTROLS}
    pool.update(variants)
    names = sorted(pool)
    n = len(names)
    candidate = names[bucket % n]
    # reddit: bucket < pct * n * (NUM_BUCKETS / 100)
    return candidate if bucket < pool[candidate] * n * (REDDIT_BUCKETS / 100) else None


# --------------------------------------------------------------------------- compiled forms
# A compiled flag does not call the reference functions above: it calls the closures these
# factories build once per flag, with the same formulas inlined (on the hot path a Python
# call saved is a measurable share of a check). They are the contract as much as the above:
# tests/engine/test_bucketing.py holds each to its reference (in_percentage, variant_for), and the
# golden cases (tests/golden/*.json) pin what they answer.

_Hit = TypeVar("_Hit")
_Miss = TypeVar("_Miss")


def percentage_test(mode: BucketingMode, salt: str, percent: float) -> Callable[[bytes, str], bool]:
    """A fast ``(key_bytes, key_str) -> bool`` equal to :func:`in_percentage`."""
    if percent <= 0:
        return lambda b, s: False
    if percent >= 100:
        return lambda b, s: True
    if mode is BucketingMode.FLAGSTAFF:
        seed = salt_seed(salt)
        limit = threshold(percent)
        crc = zlib.crc32
        fmix = FMIX

        def native(b: bytes, s: str) -> bool:
            return fmix(_EMPTY, crc(b, seed)) < limit

        return native
    if mode is BucketingMode.ROLLOUT:
        bound = ROLLOUT_RAND_BASE * percent
        return lambda b, s: zlib.crc32(b) < bound
    if mode is BucketingMode.HANOI:
        return lambda b, s: zlib.crc32(b) % 100 < percent
    if mode is BucketingMode.HANOI_INVERTED:
        return lambda b, s: 99 - zlib.crc32(b) % 100 < percent
    return lambda b, s: in_percentage(mode, salt, s, percent)


def native_percentage_check(
    salt: str, percent: float, by: BucketBy, hit: _Hit, miss: _Miss
) -> Callable[[Context], _Hit | _Miss]:
    """Native mode, fully inlined, reading the id from the context (this is the
    hot path of most flags): ``hit`` when the ``by`` id of the context is inside
    ``percent``, else ``miss`` (also when it has no such id). Equal to
    ``hit if in_percentage(FLAGSTAFF, salt, id, percent) else miss``."""
    # What the check reads are default arguments, not closed-over names: locals as
    # fast to read as cells, held in one tuple instead of a cell each, and a cold
    # build of 10,000 flags is mostly the collector scanning such objects.
    seed = salt_seed(salt)
    limit = threshold(percent)

    if by is BucketBy.USER:
        # The commonest shape of all, without the branches below.
        def by_user(  # noqa: PLR0913 (defaults: see above)
            ctx: Context,
            hit: _Hit = hit,
            miss: _Miss = miss,
            seed: int = seed,
            limit: int = limit,
            crc: Callable[[bytes, int], int] = zlib.crc32,
            fmix: Callable[[bytes, int], int] = FMIX,
        ) -> _Hit | _Miss:
            key = ctx.user_key
            if key is None:
                key = ctx.cookie_key
                if key is None:
                    return miss
            return hit if fmix(b"", crc(key, seed)) < limit else miss

        return by_user

    def native_percentage(  # noqa: PLR0913 (defaults: see above)
        ctx: Context,
        hit: _Hit = hit,
        miss: _Miss = miss,
        seed: int = seed,
        limit: int = limit,
        logged_in: bool = by is BucketBy.LOGGED_IN,
        logged_out: bool = by is BucketBy.LOGGED_OUT,
        crc: Callable[[bytes, int], int] = zlib.crc32,
        fmix: Callable[[bytes, int], int] = FMIX,
    ) -> _Hit | _Miss:
        if logged_in:
            key = ctx.user_key if ctx.logged_in else None
        elif logged_out:
            key = None if ctx.logged_in else ctx.cookie_key
        else:
            key = ctx.cookie_key
        if key is None:
            return miss
        return hit if fmix(b"", crc(key, seed)) < limit else miss

    return native_percentage


def _by_user_code() -> Any:
    return native_percentage_check("", 50, BucketBy.USER, True, False).__code__


_BY_USER_CODE = _by_user_code()


def user_gate(run: object) -> tuple[int, int] | None:
    """``(seed, limit)`` when ``run`` is a by-user check of :func:`native_percentage_check`
    whose ``hit`` is on and ``miss`` off: it is then *on* exactly when
    ``FMIX(b"", crc32(key, seed)) < limit``, ``key`` being the context's user key, else its
    cookie key (off with neither). ``Client.is_enabled`` answers such a flag (a plain
    percentage rollout, the commonest flag there is) inline, without the check's frame
    and its Decision. ``None`` for anything else. Read from the check's own defaults
    (recognised by its code object), so the two can never disagree."""
    if getattr(run, "__code__", None) is not _BY_USER_CODE:
        return None
    hit, miss, seed, limit = cast(Any, run).__defaults__[:4]
    if getattr(hit, "enabled", None) is True and getattr(miss, "enabled", None) is False:
        return seed, limit
    return None


def variant_chooser(
    mode: BucketingMode, salt: str, weights: Mapping[str, float], outcomes: Mapping[str | None, _Hit]
) -> Callable[[bytes, str], _Hit]:
    """An experiment's ``(id bytes, id) -> outcomes[variant]``, ``outcomes[None]``
    when the id is in no variant. ``weights`` hold every variant, controls
    included. Equal to :func:`variant_for` in ``reddit`` mode (reddit's choice);
    every other mode the native lanes of :func:`variant_for`, inlined."""
    if mode is BucketingMode.REDDIT:
        pool = dict(weights)
        return lambda key, seed: outcomes[reddit_variant(reddit_bucket(salt, seed), pool)]
    names = sorted(weights)
    n = len(names)
    lanes = [(threshold(weights[v]), outcomes[v]) for v in names]
    excluded = outcomes[None]
    seed0 = salt_seed(salt + VARIANT_SALT_SUFFIX)
    crc = zlib.crc32
    fmix = FMIX

    def native(key: bytes, seed: str) -> _Hit:
        # variant_for inlined: lane h % n, position h // n.
        h = fmix(b"", crc(key, seed0))
        limit, outcome = lanes[h % n]
        return outcome if h // n < limit else excluded

    return native


def variant_picker(mode: BucketingMode, salt: str, variants: Sequence[str]) -> Callable[[bytes], str]:
    """``id bytes -> variant`` for a top-level variant list, equal weights, every
    id in one. In the ``hanoi`` modes hanoi's unsalted ``variants[crc32(id) % n]``
    in the order given; in every other mode the native variant hash modulo ``n``
    over the names sorted."""
    n = len(variants)
    crc = zlib.crc32
    if mode in HANOI_MODES:
        given = tuple(variants)

        def hanoi(key: bytes) -> str:
            return given[crc(key) % n]

        return hanoi
    ordered = sorted(variants)
    vseed = salt_seed(salt + VARIANT_SALT_SUFFIX)
    fmix = FMIX

    def native(key: bytes) -> str:
        return ordered[fmix(b"", crc(key, vseed)) % n]

    return native


# ------------------------------------------------------------------ issue 14: any key, splits, layers
# A targeting rule's rollout and a weighted split read the same number as the flag's own
# percentage: ``bucket_value(mode, salt)(key) < bucket_limit(mode, p)`` is exactly
# ``percentage_test(mode, salt, p)(key)`` (tests hold them equal). A split of weights
# w1, w2... gives variant i to the values in [limit(w1+...+w(i-1)), limit(w1+...+wi)), so a
# first variant of weight p holds exactly the users of ``{"percentage": p}``, and raising a
# rollout or the last weight only admits users who had nothing (ramp-monotonic).


def attribute_key(value: object) -> tuple[bytes, str] | None:
    """The hash input of an attribute used as a bucketing key (``bucket_by``): a string as
    its UTF-8 bytes, an int (not a bool) as its decimal text; ``None`` (not bucketed) for
    an empty string and every other type. Changing this re-buckets every user of every flag
    that buckets by an attribute."""
    if isinstance(value, str):
        return (value.encode(), value) if value else None
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
        return text.encode(), text
    return None


def bucket_value(mode: BucketingMode, salt: str) -> Callable[[bytes, str], int]:
    """``(key bytes, key) -> the number the percentage test of ``mode`` compares`` (with
    :func:`bucket_limit`). ``modulo100`` gives an id that is not an integer 100: outside
    every percentage but 100, as :func:`in_percentage` has it."""
    crc = zlib.crc32
    if mode is BucketingMode.FLAGSTAFF:
        seed = salt_seed(salt)
        fmix = FMIX
        return lambda b, s: fmix(_EMPTY, crc(b, seed))
    if mode is BucketingMode.ROLLOUT:
        return lambda b, s: crc(b)
    if mode is BucketingMode.ROLLOUT_RANDOMIZED:
        return lambda b, s: crc((s + salt).encode())
    if mode is BucketingMode.HANOI:
        return lambda b, s: crc(b) % 100
    if mode is BucketingMode.HANOI_INVERTED:
        return lambda b, s: 99 - crc(b) % 100
    if mode is BucketingMode.REDDIT:
        return lambda b, s: reddit_bucket(salt, s) // 10

    def modulo100(b: bytes, s: str) -> int:
        bucket = modulo100_bucket(s)
        return 100 if bucket is None else bucket

    return modulo100


def bucket_limit(mode: BucketingMode, percent: float) -> float:
    """The bound :func:`bucket_value` is compared with: the value is inside ``percent``
    when it is below the bound (``<= 0`` admits nobody, ``>= 100`` everyone)."""
    if percent <= 0:
        return 0
    if percent >= 100:
        return math.inf
    if mode is BucketingMode.FLAGSTAFF:
        return threshold(percent)
    if mode in (BucketingMode.ROLLOUT, BucketingMode.ROLLOUT_RANDOMIZED):
        return ROLLOUT_RAND_BASE * percent
    return percent


def split_chooser(
    mode: BucketingMode,
    salt: str,
    weights: Sequence[tuple[_Hit, float]],
    remainder: _Miss,
) -> Callable[[bytes, str], _Hit | _Miss]:
    """A weighted split: ``(key bytes, key) -> outcome`` over cumulative ranges of the
    flag's own bucket (see the note above), ``remainder`` past the last weight. The
    weights are percentages in document order, summing to at most 100."""
    value = bucket_value(mode, salt)
    bounds: list[tuple[float, _Hit]] = []
    total = 0.0
    for outcome, weight in weights:
        total += weight
        if weight > 0:
            bounds.append((bucket_limit(mode, total), outcome))
    ordered = tuple(bounds)

    def split(b: bytes, s: str) -> _Hit | _Miss:
        v = value(b, s)
        for limit, outcome in ordered:
            if v < limit:
                return outcome
        return remainder

    return split


LAYER_SALT_PREFIX = "layer:"


def layer_test(layer: str, start: float, end: float) -> Callable[[bytes], bool]:
    """Whether an id's bucket in ``layer`` is in ``[start, end)`` percent: the native hash
    with the salt ``"layer:" + layer``, whatever the flag's mode, so every experiment of
    the layer reads the same bucket and disjoint ranges never share an id."""
    seed = salt_seed(LAYER_SALT_PREFIX + layer)
    low = threshold(start)
    high = threshold(end)
    crc = zlib.crc32
    fmix = FMIX

    def in_layer(b: bytes) -> bool:
        return low <= fmix(_EMPTY, crc(b, seed)) < high

    return in_layer
