"""Who is asking: the context a flag is evaluated against.

A :class:`Context` is built once per request (or per user) and passed to every
check. Callers may also pass a plain ``dict`` with the documented keys, a bare
user id (``str`` or ``int``), or ``None`` (an anonymous visitor with no cookie).

Dict keys (all optional):

==================  ==========================================================
``user_id``         stable id of the user (``id`` and ``user`` are accepted too);
                    ``""`` counts as no id
``user_name``       login name; matched case-insensitively by ``users``
``groups``          iterable of group names (``admin``, ``employee``, ``beta``…)
``logged_in``       bool; defaults to "has a user id"
``cookie_id``       id of a logged-out visitor (reddit's ``loid``)
``features``        the request's ``?feature=`` values, in request order
``subdomain``       the request's subdomain
``location``        where in the product the request is (reddit's subreddit)
``oauth_client``    OAuth client id of the request
``time``            request time: epoch seconds, a ``datetime`` (naive = UTC) or
                    an ISO 8601 string with a UTC offset
``attributes``      free-form mapping used by attribute rules
==================  ==========================================================

Any other key is treated as an attribute, so ``{"user_id": "7", "plan": "pro"}``
works with a rule on ``plan``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeAlias

__all__ = ["FIELDS", "Context", "ContextLike", "to_context"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _to_epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"time {value!r} is not ISO 8601") from None
        if value.tzinfo is None:
            raise ValueError("time needs a UTC offset, e.g. '2027-01-01T00:00:00Z'")
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        stamp: float = value.timestamp()
        return stamp
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"time must be epoch seconds, a datetime or an ISO 8601 string, not {value!r}")
    return float(value)


class _Fields:
    """The storage of a :class:`Context`: its slots, settable. ``Context`` adds no slot of
    its own and makes them read-only; ``_Building`` (also adding none) fills them when a
    context is built, then becomes a ``Context`` (see ``Context.__new__``)."""

    __slots__ = (
        "attributes",
        "cookie_id",
        "cookie_key",
        "features",
        "groups",
        "location",
        "logged_in",
        "oauth_client",
        "subdomain",
        "time",
        "user_id",
        "user_key",
        "user_name",
    )


@dataclass(frozen=True, init=False)
class Context(_Fields):
    """Immutable facts about one request or user. Cheap to evaluate against.

    ``user_key`` and ``cookie_key`` hold the UTF-8 bytes of the ids, encoded once
    here so that bucketing on the hot path does no encoding of its own.
    """

    __slots__ = ()

    # The defaults are __new__'s (a default here would be a class attribute hiding the slot).
    user_id: str | None
    user_name: str | None
    groups: frozenset[str]
    logged_in: bool | None
    cookie_id: str | None
    features: tuple[str, ...]
    subdomain: str | None
    location: str | None
    oauth_client: str | None
    time: float | None
    attributes: Mapping[str, Any]
    user_key: bytes | None = field(init=False, repr=False, compare=False)
    cookie_key: bytes | None = field(init=False, repr=False, compare=False)

    def __new__(  # noqa: PLR0913 (the public constructor: one keyword per fact, as the fields)
        cls,
        user_id: str | None = None,
        user_name: str | None = None,
        groups: frozenset[str] = frozenset(),
        logged_in: bool | None = None,
        cookie_id: str | None = None,
        features: tuple[str, ...] = (),
        subdomain: str | None = None,
        location: str | None = None,
        oauth_client: str | None = None,
        time: float | None = None,
        attributes: Mapping[str, Any] = _EMPTY,
    ) -> Context:
        # Written by hand, not generated: a frozen dataclass's __init__ sets each of the 13
        # slots through object.__setattr__ (a call each) and then normalises in __post_init__.
        # Here every value is normalised first (exact type checks first, so the common case
        # converts nothing), and the slots are filled on a _Building, a class with the same
        # slots that may be set: plain attribute stores, which the interpreter specialises,
        # instead of a call each. The finished object then becomes a Context by one
        # __class__ assignment, and from then on it is frozen. Context defines no __init__
        # (object's accepts what __new__ took). About half the cost of the slot setters.
        uid: Any = user_id
        if uid is not None and type(uid) is not str:
            uid = _opt_str(uid)
        # An empty id is no id: otherwise "" would hash to one fixed bucket and be
        # inside or outside every percentage for every id-less caller (the rollout
        # gem's nil-user bug).
        if uid == "":
            uid = None
        cid: Any = cookie_id
        if cid is not None:
            if type(cid) is not str:
                cid = _opt_str(cid)
            if cid == "":
                cid = None
        if type(groups) is not frozenset:
            loose: Any = groups
            groups = frozenset([loose] if isinstance(loose, str) else loose)
        if type(features) is not tuple:
            feats: Any = features
            features = (feats,) if isinstance(feats, str) else tuple(feats)
        if time is not None and type(time) is not float:
            time = _to_epoch(time)
        if type(attributes) is not MappingProxyType:
            attributes = MappingProxyType(dict(attributes))
        out: Any = _new(_Building)
        out.user_id = uid
        out.user_name = user_name
        out.groups = groups
        out.logged_in = uid is not None if logged_in is None else logged_in
        out.cookie_id = cid
        out.features = features
        out.subdomain = subdomain
        out.location = location
        out.oauth_client = oauth_client
        out.time = time
        out.attributes = attributes
        # surrogatepass: an id holding a lone surrogate (decoded from bad bytes upstream) still
        # gets bytes to bucket by, instead of failing to build (ids that are text are unchanged).
        out.user_key = None if uid is None else uid.encode("utf-8", "surrogatepass")
        out.cookie_key = None if cid is None else cid.encode("utf-8", "surrogatepass")
        if cls is Context:
            out.__class__ = Context
            return out  # type: ignore[no-any-return]  # (typing.cast is a call: this is the hot path)
        # A subclass (which may add a __dict__, so no __class__ assignment): copy the slots.
        made = _new(cls)
        for name, set_slot in _SLOTS.items():
            set_slot(made, getattr(out, name))
        return made

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Copied and pickled by rebuilding (the slots are read-only once built); the attributes
        # travel as a dict, which __new__ wraps again.
        return type(self), (
            self.user_id,
            self.user_name,
            self.groups,
            self.logged_in,
            self.cookie_id,
            self.features,
            self.subdomain,
            self.location,
            self.oauth_client,
            self.time,
            dict(self.attributes),
        )

    def __copy__(self) -> Context:
        return self  # immutable

    def __deepcopy__(self, memo: Any) -> Context:
        return self  # immutable, and its attributes are copied in when it is built

    @property
    def bucketing_id(self) -> str | None:
        """The id percentages bucket by: the user id, else the visitor's cookie id."""
        return self.user_id if self.user_id is not None else self.cookie_id

    # The typed bucketing keys: an id with its UTF-8 bytes (the hash reads the bytes, the
    # reddit and modulo100 modes the text), or None when the context has no such id.

    def bucket_key(self) -> tuple[bytes, str] | None:
        """:attr:`bucketing_id` with its bytes: the user id, else the cookie id."""
        key, uid = self.user_key, self.user_id
        if key is not None and uid is not None:
            return key, uid
        key, cid = self.cookie_key, self.cookie_id
        return None if key is None or cid is None else (key, cid)

    def user_bucket_key(self) -> tuple[bytes, str] | None:
        """The user id with its bytes; ``None`` without a user id."""
        key, uid = self.user_key, self.user_id
        return None if key is None or uid is None else (key, uid)

    def cookie_bucket_key(self) -> tuple[bytes, str] | None:
        """The cookie id with its bytes; ``None`` without a cookie id."""
        key, cid = self.cookie_key, self.cookie_id
        return None if key is None or cid is None else (key, cid)

    def attribute(self, name: str) -> Any:
        """Look up ``name``: a built-in field first, then the free-form attributes."""
        if name in FIELDS:
            return getattr(self, name)
        return self.attributes.get(name)

    def with_time(self, now: float) -> Context:
        """A copy carrying ``now`` as its request time."""
        return _replace_time(self, now)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Context:
        """Build a context from a dict with the documented keys (see module doc)."""
        known: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            target = _ALIASES.get(key, key)
            if target in FIELDS:
                known[target] = value
            else:
                extra[key] = value
        attrs = known.pop("attributes", None)
        if attrs or extra:
            merged = dict(attrs or {})
            merged.update(extra)
            known["attributes"] = merged
        if "groups" in known and known["groups"] is None:
            known["groups"] = frozenset()
        if "features" in known and known["features"] is None:
            known["features"] = ()
        return cls(**known)


_new = object.__new__


class _Building(_Fields):
    """A :class:`Context` being built: the same slots, settable (see ``Context.__new__``)."""

    __slots__ = ()


# The slots' own setters, which bypass the frozen __setattr__: a subclass of Context (which may
# add a __dict__, so its instances cannot be a _Building first) is built through them.
_SLOTS: dict[str, Callable[[Context, Any], None]] = {
    f.name: _Fields.__dict__[f.name].__set__ for f in fields(Context)
}


def _replace_time(ctx: Context, now: float) -> Context:
    return Context(
        user_id=ctx.user_id,
        user_name=ctx.user_name,
        groups=ctx.groups,
        logged_in=ctx.logged_in,
        cookie_id=ctx.cookie_id,
        features=ctx.features,
        subdomain=ctx.subdomain,
        location=ctx.location,
        oauth_client=ctx.oauth_client,
        time=now,
        attributes=ctx.attributes,
    )


FIELDS = frozenset(
    {
        "user_id",
        "user_name",
        "groups",
        "logged_in",
        "cookie_id",
        "features",
        "subdomain",
        "location",
        "oauth_client",
        "time",
        "attributes",
    }
)
_ALIASES = {
    "id": "user_id",
    "user": "user_id",
    "key": "user_id",
    "name": "user_name",
    "username": "user_name",
    "loid": "cookie_id",
    "cookie": "cookie_id",
    "feature": "features",
    "subreddit": "location",
    "loggedin": "logged_in",
}

ContextLike: TypeAlias = Context | Mapping[str, Any] | str | int | None
"""Anything :func:`to_context` accepts."""

ANONYMOUS = Context()


_BY_ID: dict[str, Context] = {}
_BY_ID_LIMIT = 4096


_NO_GROUPS: frozenset[str] = frozenset()


def _user_context(uid: str) -> Context:
    """The context of a bare user id, shared: a request checks many flags for one user,
    and a context is immutable, so the second check onwards costs one dict lookup rather
    than a build. Bounded: the table is emptied when full (no LRU bookkeeping on the hot
    path); a miss only costs the build it would have cost anyway."""
    ctx = _BY_ID.get(uid)
    return ctx if ctx is not None else _new_user_context(uid)


def _new_user_context(uid: str) -> Context:
    """Build the shared context of ``uid`` (not in the table: the caller looked) and keep it.

    ``Context(user_id=uid)`` without the keywords and checks, for a ``str`` id (empty: no
    id): the build a bare id costs once per request (see Context.__new__), in one frame."""
    if not uid:
        return ANONYMOUS
    out: Any = _new(_Building)
    out.user_id = uid
    out.user_name = None
    out.groups = _NO_GROUPS
    out.logged_in = True
    out.cookie_id = None
    out.features = ()
    out.subdomain = None
    out.location = None
    out.oauth_client = None
    out.time = None
    out.attributes = _EMPTY
    out.user_key = uid.encode("utf-8", "surrogatepass")
    out.cookie_key = None
    out.__class__ = Context
    if len(_BY_ID) >= _BY_ID_LIMIT:
        _BY_ID.clear()
    _BY_ID[uid] = out
    return out  # type: ignore[no-any-return]  # (no typing.cast: a call on the hot path)


def to_context(value: ContextLike | Iterable[Any]) -> Context:
    """Turn what a caller passed into a :class:`Context`.

    A ``str`` or ``int`` is a user id; ``None`` is an anonymous visitor.
    Raises ``TypeError``/``ValueError`` for input that cannot be a context;
    the client catches those and answers with ``Reason.ERROR``.
    """
    if type(value) is Context:
        return value
    if value is None:
        return ANONYMOUS
    # The shared context of a bare id, and of {"user_id": uid} (the form applications write
    # most), looked up here rather than in _user_context: a call less when it is there.
    if type(value) is str:
        ctx = _BY_ID.get(value)
        return ctx if ctx is not None else _user_context(value)
    if type(value) is dict and len(value) == 1:
        uid = value.get("user_id")
        if type(uid) is str:
            ctx = _BY_ID.get(uid)
            return ctx if ctx is not None else _user_context(uid)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return _user_context(str(value))
    if isinstance(value, Mapping):
        return Context.from_dict(value)
    if isinstance(value, Context):
        return value
    raise TypeError(f"cannot use {type(value).__name__} as a context; pass a Context, dict, or user id")
