"""The bucketing contract: which users fall inside a percentage or a variant.

THIS FILE IS A COMPATIBILITY CONTRACT. Every formula here decides, for every
user of every deployment, whether they see a feature. Changing any of them —
the hash, the separator byte, the threshold rounding, the lane layout — moves
users between buckets in every process that upgrades, which silently restarts
every running experiment and flips features for people who had them. The
vectors in ``tests/test_bucketing.py`` pin the formulas; if one fails, the change
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
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Sequence
from decimal import Decimal
from enum import StrEnum

from mmh3 import mmh3_32_uintdigest

__all__ = [
    "BucketingMode",
    "flagstaff_hash",
    "hanoi_bucket",
    "in_percentage",
    "modulo100_bucket",
    "reddit_bucket",
    "reddit_loggedout_bucket",
    "reddit_variant",
    "rollout_active",
    "threshold",
    "variant_for",
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
