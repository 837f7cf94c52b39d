"""Large member lists: a compact, exact set of strings for ``users`` lists and segments.

A ``users`` list of a flag, a targeting rule or a segment (and a segment's
``exclude_users``) with more than :data:`COMPACT_ABOVE` entries is compiled into a
:class:`MemberSet` instead of a ``frozenset``: a Python set of 1,000,000 short ids
holds about 100 MB (a str object of ~60 bytes plus a hash-table slot per member); a
:class:`MemberSet` holds the members' UTF-8 bytes end to end in one ``bytes`` blob
plus one array of 4-byte offsets, about 16 MB for the same million.

Layout (``n`` members, ``2**k >= n`` buckets):

* ``blob``: every member's UTF-8 bytes, each between two ``0xFF`` bytes (a byte UTF-8
  never holds), members grouped by bucket: ``FF m1 FF m2 ... FF mn FF``;
* ``buckets``: ``array`` of ``2**k + 1`` offsets into ``blob``, bucket ``b``'s members
  are ``blob[buckets[b]:buckets[b + 1]]`` (from its first member's leading ``FF``).

For a million ids of 11 characters that is 12 MB of members and 4 MB of offsets.

A member's bucket is the low ``k`` bits of Python's own ``hash`` of the ``str`` (cached
on the string, so a context's id is hashed once, not per flag). A lookup reads one
bucket (under one member on average) and compares the *bytes* of each candidate with
the probe's: membership is exact, a hash collision never admits a non-member.

``hash`` of a ``str`` is salted per process (``PYTHONHASHSEED``), so the layout is
never stored or sent anywhere: a pickled :class:`MemberSet` carries its members and
rebuilds the buckets when loaded.

Strings are encoded with ``surrogatepass``: a JSON document may hold a lone surrogate
(``"\\ud800"``), which strict UTF-8 refuses; the encoding stays one-to-one, so comparing
bytes is comparing strings. The user id is compared through ``Context.user_key``, its
strict UTF-8 bytes: the same bytes, since a context cannot hold an id with a surrogate.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, repeat
from typing import Any

from flagstaff.context import Context

__all__ = ["COMPACT_ABOVE", "MemberSet", "users_test"]

COMPACT_ABOVE = 10_000
"""Lists longer than this compile into a :class:`MemberSet`; shorter ones keep a
``frozenset``: about four times faster per lookup (``benchmarks/bench_eval.py`` holds a
10,000-member list to <= 600 ns), and at most a few MB."""

# 4-byte unsigned offsets ("I" is 4 bytes on every platform CPython supports; the blob
# falls back to 8-byte offsets past 4 GiB).
_INDEX = "I" if array("I").itemsize >= 4 else "L"


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


_SEP = 0xFF  # never a byte of UTF-8 (surrogatepass included): it marks where members start and end


def _scan(blob: bytes, pos: int, end: int, key: bytes) -> bool:
    """Whether ``key`` is one of the members in bucket ``blob[pos:end]`` (``blob[pos]`` and
    ``blob[end]`` are separators): an occurrence of ``key`` between two separators."""
    size = len(key)
    i = blob.find(key, pos + 1, end)
    while i >= 0:
        if blob[i - 1] == _SEP and blob[i + size] == _SEP:
            return True
        i = blob.find(key, i + 1, end)
    return False


class MemberSet:
    """An immutable set of strings, compact and exact. ``text in s`` as for a frozenset;
    :meth:`has` is the hot-path form for a caller that already holds the UTF-8 bytes."""

    __slots__ = ("_blob", "_buckets", "_len", "_mask")

    _blob: bytes
    _buckets: array[int]
    _len: int
    _mask: int

    def __init__(self, members: Iterable[str]) -> None:
        unique = list(set(members))  # duplicates would only cost memory; buckets give the order
        n = len(unique)
        size = 1
        while size < n:
            size <<= 1
        mask = size - 1
        bucket_of = [hash(m) & mask for m in unique]
        ordered = list(map(unique.__getitem__, sorted(range(n), key=bucket_of.__getitem__)))
        del unique
        encoded = list(map(_encode, ordered))
        del ordered
        blob = b"\xff".join([b"", *encoded, b""])  # FF m1 FF m2 ... FF mn FF
        # member i's leading separator is at at[i]; the last one, at[n], closes the blob
        at = list(accumulate(map(len, encoded), lambda total, size: total + size + 1, initial=0))
        del encoded
        counts = Counter(bucket_of)  # members are in bucket order: first member of each bucket
        del bucket_of
        first = accumulate(map(counts.get, range(size), repeat(0)), initial=0)
        buckets = array(_INDEX if len(blob) < 2**32 else "Q", map(at.__getitem__, first))
        setattr_ = object.__setattr__
        setattr_(self, "_blob", blob)
        setattr_(self, "_buckets", buckets)
        setattr_(self, "_mask", mask)
        setattr_(self, "_len", n)

    def has(self, text: str, key: bytes) -> bool:
        """Whether ``text`` (whose UTF-8 bytes are ``key``) is a member. Never raises."""
        b = hash(text) & self._mask
        buckets = self._buckets
        pos = buckets[b]
        end = buckets[b + 1]
        if pos == end:
            return False
        return _scan(self._blob, pos, end, key)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.has(text, _encode(text))

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        if self._len:
            for member in self._blob[1:-1].split(b"\xff"):
                yield member.decode("utf-8", "surrogatepass")

    def __repr__(self) -> str:
        return f"<MemberSet of {self._len} members, {self.nbytes} bytes>"

    @property
    def nbytes(self) -> int:
        """Bytes held by the records and the offsets (not counting object headers)."""
        return len(self._blob) + self._buckets.itemsize * len(self._buckets)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MemberSet):
            return self._len == other._len and all(m in other for m in self)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equality by members, like a set compared to a list

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"MemberSet is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"MemberSet is immutable: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Callable[[Sequence[str]], MemberSet], tuple[list[str]]]:
        # The buckets depend on this process's str hash seed: rebuild them when loaded.
        return (MemberSet, (list(self),))


def users_test(names: Sequence[str]) -> Callable[[Context], bool]:
    """The ``users`` test over a large list: the user id is one of ``names``, or the
    user name is, compared case-insensitively, exactly as the ``frozenset`` form
    (``ctx.user_id in names or ctx.user_name.lower() in {n.lower() for n in names}``).

    The lower-cased names are not held twice: a lower-case member is its own lower
    case, so only the members that change under ``str.lower`` get a second entry
    (``str.lower`` is idempotent, so a name's lower case can only equal a member that
    is lower case already or the lower case of one that is not).
    """
    exact = MemberSet(names)
    # All lower case (the common case), checked at C speed on the names joined: str.lower
    # changes a character whatever its neighbours (only which sigma it gives depends on them).
    text = "".join(names)
    folded = [] if text.lower() == text else [low for n in names if (low := n.lower()) != n]
    del text
    has_folded = MemberSet(folded).has if folded else None
    has = exact.has
    # MemberSet.has inlined for the user id (the call most evaluations make).
    blob, buckets, mask, scan, sep = exact._blob, exact._buckets, exact._mask, _scan, _SEP

    def users(ctx: Context) -> bool:
        uid = ctx.user_id
        if uid is not None:
            b = hash(uid) & mask
            pos = buckets[b]
            end = buckets[b + 1]
            key = ctx.user_key
            if pos != end and key is not None:
                size = len(key)
                if end - pos == size + 1:  # FF + key, if a member, fills its bucket
                    if blob.startswith(key, pos + 1):
                        return True
                else:  # _scan's first step, inlined: an occurrence between two separators
                    i = blob.find(key, pos + 1, end)
                    if i >= 0 and (blob[i - 1] == sep == blob[i + size] or scan(blob, i, end, key)):
                        return True
        name = ctx.user_name
        if name is None:
            return False
        low = name.lower()
        low_key = _encode(low)
        return has(low, low_key) or (has_folded is not None and has_folded(low, low_key))

    return users
