"""hanoi (the Python port of the rollout gem), over flagstaff stores.

Change ``import hanoi`` to ``from flagstaff.compat import hanoi`` and keep the
code::

    rollout = hanoi.Rollout(hanoi.MemoryBackEnd())        # or RedisBackEnd("redis://…")
    rollout.add_func("cdc_on", percentage=80, variants=("foo", "bar"))
    rollout.register("cdc_on", "447568110000")            # a user id
    rollout.register("cdc_on", re.compile(r"01$"))        # a rule over ids
    rollout.is_enabled("cdc_on", "444401")                # True (the rule)

    @rollout.check("cdc_on", 2)                           # 1-based argument index
    def handler(request, user): ...

Each feature is stored as a flagstaff document with ``"bucketing": "hanoi"``::

    {"bucketing": "hanoi", "enabled": true, "percentage": 80,
     "users": ["447568110000"], "regex": "01$", "variants": ["foo", "bar"],
     "tags": ["hanoi:field=id"]}

so any flagstaff client (any language, the CLI, the web UI) sees the same flags.

What is kept from hanoi 0.0.4, and what is its README's intent rather than its
code (each difference is listed in ``docs/compat.md``):

* ``crc32(id) % 100 < percentage`` (unsigned CRC-32, the README's rule); hanoi's
  code compares with ``>=``, which enables ``100 - p`` percent of users.
* The global switch beats everything: a disabled feature is off for registered
  ids and rule matches too. ``is_enabled(name)`` with no item asks only whether
  the feature exists and is enabled.
* One id per item everywhere: registered users, the rule, the percentage and the
  variant all look at ``Feature.get_item_id(item)`` (hanoi mixed raw items,
  ``str(item)`` and ids depending on the backend).
* The current id (``set_current_id``) is context-local: each thread, greenlet and
  asyncio task sees its own, as hanoi's README promises.
* Rules are persisted (hanoi kept them in process memory only), unless the
  pattern uses a construct RE2 cannot run in linear time; such a rule stays in
  this process, as it did in hanoi, and a warning says so.
* ``is_<name>(item)`` works, and every error is a :class:`RolloutException`
  (validation errors are also ``AttributeError``, as hanoi's tests expect).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from flagstaff.bucketing import HANOI_MODES, BucketingMode, variant_picker
from flagstaff.compat._flags import FlagView
from flagstaff.context import Context
from flagstaff.errors import FlagstaffError, ValidationError
from flagstaff.model import Flag, Switch
from flagstaff.rules import compile_regex
from flagstaff.stores import Store

__all__ = [
    "Feature",
    "InvalidFeature",
    "MemoryBackEnd",
    "RedisBackEnd",
    "RedisHighPerfBackEnd",
    "Rollout",
    "RolloutException",
]

log = logging.getLogger("flagstaff.compat.hanoi")

P = ParamSpec("P")
R = TypeVar("R")

FIELD_TAG = "hanoi:field="
"""Tag prefix recording a feature's id field (``add_func(name, "id")``)."""

_REGEX_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))


class RolloutException(FlagstaffError):
    """hanoi's error: a feature is off, unknown, or misused."""


class InvalidFeature(RolloutException, AttributeError):
    """A bad feature name or percentage (hanoi raised ``AttributeError``)."""


def _percentage(value: Any) -> int | float:
    """hanoi accepted numbers and numeric strings in [0, 100]; unlike hanoi this
    never truncates (``50.5`` stays ``50.5``) and ``None`` is refused the same way."""
    if isinstance(value, bool):
        raise InvalidFeature(f"percentage must be a number between 0 and 100, not {value!r}")
    number: float
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidFeature(f"percentage must be a number, not {value!r}") from None
    else:
        raise InvalidFeature(f"percentage must be a number, not {type(value).__name__}")
    if not 0 <= number <= 100:  # also refuses NaN
        raise InvalidFeature(f"percentage must be between 0 and 100, not {value!r}")
    return int(number) if number.is_integer() else number


IdField = str | Callable[[Any], Any] | None


class Feature:
    """One feature: ``Feature(name, field=None, percentage=100, variants=None)``.

    ``field`` says how to get an id out of an item: ``None`` uses ``str(item)``;
    a string names an attribute (``"id"`` reads ``item.id``); a callable is
    called with the item. Strings and ints are ids already, whatever the field.
    """

    __slots__ = ("_name", "enabled", "field", "percentage", "variants")

    _name: str
    enabled: bool
    field: IdField
    percentage: int | float
    variants: list[str] | None

    def __init__(
        self,
        name: str,
        field: IdField = None,
        percentage: Any = 100,
        variants: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidFeature(f"a feature name must be a non-empty string, not {name!r}")
        object.__setattr__(self, "_name", name)
        self.field = field
        self.percentage = _percentage(percentage)
        self.enabled = True
        self.variants = list(variants) if variants is not None else None

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        raise RuntimeError("a feature's name cannot be changed")

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "percentage":
            value = _percentage(value)
        object.__setattr__(self, key, value)

    def get_item_id(self, item: Any) -> str:
        """The id of ``item`` (see the class doc)."""
        return _item_id(self._name, self.field, item)

    def __repr__(self) -> str:
        return (
            f"Feature({self._name!r}, field={self.field!r}, percentage={self.percentage!r}, "
            f"enabled={self.enabled!r}, variants={self.variants!r})"
        )


def _item_id(name: str, field: IdField, item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if field is None:
        return str(item)
    if callable(field):
        return str(field(item))
    if isinstance(field, str):
        try:
            return str(getattr(item, field))
        except AttributeError:
            raise RolloutException(
                f"feature {name!r} reads the id from attribute {field!r}, "
                f"which {type(item).__name__} does not have"
            ) from None
    raise RolloutException(f"feature {name!r} has an unusable id field {field!r}")


# --------------------------------------------------------------------------- documents


def _regex_source(rule: re.Pattern[str]) -> str:
    """RE2 text for a Python pattern: its inline flags, then the pattern."""
    flags = "".join(letter for flag, letter in _REGEX_FLAGS if rule.flags & flag)
    return f"(?{flags}){rule.pattern}" if flags else rule.pattern


def _re2_ok(source: str) -> bool:
    problems: list[Any] = []
    return compile_regex(source, "regex", problems) is not None and not problems


def feature_document(feature: Feature, users: Sequence[str] = (), rule: str | None = None) -> dict[str, Any]:
    """The flagstaff document of a hanoi feature."""
    doc: dict[str, Any] = {
        "bucketing": "hanoi",
        "enabled": bool(feature.enabled),
        "percentage": feature.percentage,
    }
    if users:
        doc["users"] = list(users)
    if rule is not None:
        doc["regex"] = rule
    if feature.variants:
        doc["variants"] = list(feature.variants)
    if isinstance(feature.field, str):
        doc["tags"] = [FIELD_TAG + feature.field]
    return doc


def _as_object(doc: Any) -> dict[str, Any]:
    """A flag document in object form, so hanoi's calls can edit any flag:
    ``"on"`` is everyone, ``"off"`` nobody, a number a percentage (in the
    flag's own bucketing mode: nobody moves)."""
    if isinstance(doc, dict):
        return doc
    if doc is True or doc == "on":
        return {"enabled": True, "percentage": 100}
    if doc is False or doc == "off":
        return {"enabled": False, "percentage": 0}
    if isinstance(doc, int | float):
        return {"enabled": True, "percentage": doc}
    return {"bucketing": "hanoi", "enabled": True, "percentage": 0}


def _switched_on(doc: dict[str, Any]) -> bool:
    return doc.get("enabled", True) not in (False, "off")


def _field_of(flag: Flag) -> str | None:
    for tag in flag.tags:
        if tag.startswith(FIELD_TAG):
            return tag[len(FIELD_TAG) :]
    return None


# --------------------------------------------------------------------------- backends


class _Local:
    """What cannot be stored in a document: a callable field, a non-RE2 rule."""

    __slots__ = ("field", "rule")

    def __init__(self) -> None:
        self.field: Callable[[Any], Any] | None = None
        self.rule: re.Pattern[str] | None = None


class _BackEnd:
    """hanoi's backend API over a flagstaff store (shared by all three backends)."""

    def __init__(self, store: Store | str) -> None:
        self._view = FlagView(store, author="hanoi")
        self._local: dict[str, _Local] = {}

    @property
    def store(self) -> Store:
        return self._view.store

    def close(self) -> None:
        self._view.close()

    # -- reading ---------------------------------------------------------------

    def _flag(self, name: str) -> Flag | None:
        return self._view.get(name)

    def get_functionalities(self) -> list[str]:
        """Names of the hanoi features in the store."""
        return sorted(f.name for f in self._view.flags() if f.mode in HANOI_MODES)

    def get_functionality(self, name: str) -> Feature | None:
        flag = self._flag(name)
        return None if flag is None else self._feature(flag)

    def _get_functionality(self, name: str) -> Any:
        """``(feature, users)`` as hanoi's memory and Redis backends returned it."""
        flag = self._flag(name)
        if flag is None:
            return None
        return self._feature(flag), list(flag.value.get("users", []))

    def _feature(self, flag: Flag) -> Feature:
        doc = _as_object(flag.value)
        local = self._local.get(flag.name)
        field: IdField = local.field if local is not None and local.field is not None else _field_of(flag)
        feature = Feature(flag.name, field, doc.get("percentage", 0), doc.get("variants"))
        feature.enabled = flag.switch is not Switch.OFF
        return feature

    # -- evaluating ------------------------------------------------------------

    def is_enabled(self, name: str, item: Any = None) -> bool:
        flag = self._flag(name)
        if flag is None or flag.switch is Switch.OFF:
            return False
        if item is None:  # hanoi: no item asks only "is the feature on at all"
            return True
        key = self._item_id(flag, item)
        if self._view.evaluate(name, Context(user_id=key)).enabled:
            return True
        local = self._local.get(name)
        return local is not None and local.rule is not None and local.rule.search(key) is not None

    def variant(self, name: str, item: Any) -> str | None:
        flag = self._flag(name)
        if flag is None or item is None or flag.switch is Switch.OFF:
            return None
        key = self._item_id(flag, item)
        decision = self._view.evaluate(name, Context(user_id=key))
        if decision.enabled:
            return decision.variant
        if self.is_enabled(name, item) and flag.variants:  # a rule kept in this process matched
            return variant_picker(BucketingMode.HANOI, name, flag.variants)(key.encode())  # crc32(id) % n
        return None

    def _item_id(self, flag: Flag, item: Any) -> str:
        if isinstance(item, str):  # the common case: already an id
            return item
        local = self._local.get(flag.name)
        field: IdField = local.field if local is not None and local.field is not None else _field_of(flag)
        return _item_id(flag.name, field, item)

    # -- writing ---------------------------------------------------------------

    def add_functionality(self, feature: Feature, users: Iterable[Any] | None = None) -> None:
        """Create or replace a feature (its users and rule are replaced too)."""
        ids = _dedupe(feature.get_item_id(u) for u in users or ())
        local = _Local()
        if callable(feature.field):
            local.field = feature.field
        self._local[feature.name] = local
        self._write(feature.name, lambda doc: feature_document(feature, ids))

    def add(self, name: str, item: Any) -> None:
        """Register one item's id for ``name``."""
        feature = self._require(name)
        key = feature.get_item_id(item)

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            users = doc.setdefault("users", [])
            if key not in users:
                users.append(key)
            return doc

        self._write(name, change)

    def set_rule(self, name: str, rule: re.Pattern[str]) -> None:
        """The one rule of ``name`` (a new rule replaces the old one)."""
        self._require(name)
        source = _regex_source(rule)
        local = self._local.setdefault(name, _Local())
        if _re2_ok(source):
            local.rule = None
            self._write(name, lambda doc: {**doc, "regex": source})
            return
        log.warning(
            "rule %r of feature %r needs Python's re (RE2 refuses it), so it is kept in this "
            "process only, as hanoi did; rewrite it for RE2 to share it",
            rule.pattern,
            name,
        )
        local.rule = rule
        self._write(name, lambda doc: {k: v for k, v in doc.items() if k != "regex"})

    def set_percentage(self, name: str, percentage: Any) -> None:
        value = _percentage(percentage)
        self._require(name)
        self._write(name, lambda doc: {**doc, "percentage": value})

    def enable(self, name: str, enable_to_all: bool = False) -> None:
        self._require(name)

        def change(doc: dict[str, Any]) -> dict[str, Any]:
            if not _switched_on(doc):
                doc["enabled"] = True  # ("on", everyone, stays "on")
            if enable_to_all:
                doc["percentage"] = 100
            return doc

        self._write(name, change)

    def disable(self, name: str) -> None:
        self._require(name)
        self._write(name, lambda doc: {**doc, "enabled": False})

    def toggle(self, name: str) -> None:
        self._require(name)
        self._write(name, lambda doc: {**doc, "enabled": not _switched_on(doc)})

    def delete(self, name: str) -> None:
        self._local.pop(name, None)
        self._view.delete(name)

    def _require(self, name: str) -> Feature:
        feature = self.get_functionality(name)
        if feature is None:
            raise RolloutException(f"feature {name!r} is not defined")
        return feature

    def _write(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        def apply(doc: Any) -> Any:
            return change(_as_object(doc))

        try:
            self._view.update(name, apply)
        except ValidationError as exc:
            raise RolloutException(str(exc)) from exc


def _dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class MemoryBackEnd(_BackEnd):
    """Features in this process (``memory://``), or in any store given.

    ``MemoryBackEnd()`` is private to the instance; ``MemoryBackEnd("memory://x")``
    shares the namespace ``x`` within the process; any store URL or
    :class:`~flagstaff.stores.Store` works.
    """

    def __init__(self, store: Store | str = "memory://") -> None:
        super().__init__(store)


def _redis_url(connection: Any) -> tuple[str, Any]:
    """A ``redis://`` URL and a redis-py client for what hanoi accepted: ``None``
    (localhost), ``(host, port[, db])``, a redis-py client; or a URL."""
    import redis

    if connection is None:
        connection = ("localhost", 6379)
    if isinstance(connection, str):
        return connection, redis.Redis.from_url(connection)
    if isinstance(connection, tuple):
        host, port, *rest = connection
        db = int(rest[0]) if rest else 0
        return f"redis://{host}:{int(port)}/{db}", redis.Redis(host=host, port=int(port), db=db)
    kwargs = connection.connection_pool.connection_kwargs
    password = kwargs.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{auth}{host}:{port}/{db}", connection


class _RawRedis:
    """``backend._redis``: the redis-py client, except that ``flushdb()`` and
    ``flushall()`` through it are seen by the backend at once.

    hanoi read Redis on every call, so its users' tests reset Redis through
    ``backend._redis.flushdb()`` and read straight away; this backend reads a
    snapshot kept current by the store's watch, which would see the flush a
    moment later.
    """

    def __init__(self, client: Any, on_flush: Callable[[], None]) -> None:
        self._client = client
        self._on_flush = on_flush

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._client, attr)

    def flushdb(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._client.flushdb(*args, **kwargs)
        self._on_flush()
        return reply

    def flushall(self, *args: Any, **kwargs: Any) -> Any:
        reply = self._client.flushall(*args, **kwargs)
        self._on_flush()
        return reply


class RedisBackEnd(_BackEnd):
    """Features in Redis, through flagstaff's Redis store (``redis://``).

    Accepts what hanoi's did: ``None`` (localhost:6379), ``(host, port[, db])``, a
    redis-py client, and also a ``redis://`` URL. ``_redis`` is the raw client
    (a ``FLUSHDB`` through it is seen by this backend at once).
    """

    def __init__(self, obj: Any = None, *, prefix: str | None = None) -> None:
        url, client = _redis_url(obj)
        if prefix is not None:
            url = f"{url}{'&' if '?' in url else '?'}prefix={quote(prefix, safe='')}"
        super().__init__(url)
        self._redis = _RawRedis(client, self._after_flush)

    def _after_flush(self) -> None:
        self._local.clear()
        self._view.reload()


class RedisHighPerfBackEnd(RedisBackEnd):
    """hanoi's set-based Redis backend. Every flagstaff check is a lookup in an
    in-memory snapshot, so this is the same backend as :class:`RedisBackEnd`;
    only ``_get_functionality`` answers as hanoi's did (a bare feature)."""

    def _get_functionality(self, name: str) -> Any:
        return self.get_functionality(name)


# --------------------------------------------------------------------------- the facade


class Rollout:
    """hanoi's facade: features, users, rules, percentages, variants, decorators."""

    def __init__(self, backend: _BackEnd | None) -> None:
        self._backend = backend
        self._current: contextvars.ContextVar[Any] = contextvars.ContextVar(
            f"hanoi_current_id_{id(self):x}", default=None
        )

    @property
    def backend(self) -> _BackEnd:
        if self._backend is None:
            raise TypeError("Rollout needs a backend, such as MemoryBackEnd() or RedisBackEnd()")
        return self._backend

    def add_func(
        self,
        name: str,
        check: IdField = None,
        percentage: Any = 0,
        variants: Iterable[str] | None = None,
    ) -> None:
        """Define (or redefine) feature ``name``. ``check`` is the id field.

        As in hanoi the default percentage here is 0. A number in ``check``'s
        place (hanoi's README writes ``add_func('cdc_on', 80)``) is refused: hanoi
        silently took it as the field and left the percentage at 0.
        """
        if isinstance(check, int | float):
            raise RolloutException(
                f"add_func({name!r}, {check!r}): the second argument is the id field; "
                f"write percentage={check!r}"
            )
        self.backend.add_functionality(Feature(name, check, percentage, variants))

    def is_enabled(self, name: str, item: Any = None) -> bool:
        return self.backend.is_enabled(name, item)

    def register(self, name: str, item: Any) -> None:
        """Register an id (or an item with an id), or set the rule (a compiled regex)."""
        if isinstance(item, re.Pattern):
            self.backend.set_rule(name, item)
        else:
            self.backend.add(name, item)

    def set_percentage(self, name: str, percentage: Any) -> None:
        self.backend.set_percentage(name, percentage)

    def enable(self, name: str) -> None:
        self.backend.enable(name)

    def disable(self, name: str) -> None:
        self.backend.disable(name)

    def toggle(self, name: str) -> None:
        self.backend.toggle(name)

    def variant(self, name: str, item: Any) -> str | None:
        return self.backend.variant(name, item)

    # -- the current id --------------------------------------------------------

    def set_current_id(self, item: Any) -> None:
        """The item ``check(name)`` looks at, for this thread / greenlet / task only."""
        self._current.set(item)

    def cleanup_current_id(self) -> None:
        self._current.set(None)

    @property
    def current_id(self) -> Any:
        return self._current.get()

    # -- decorators ------------------------------------------------------------

    def enabled(self, name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run the function only while ``name`` is enabled (for anyone)."""

        def decorator(fn: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                if not self.is_enabled(name):
                    raise RolloutException(f"Feature <{name}> is not enabled")
                return fn(*args, **kwargs)

            return wrapper

        return decorator

    def check(self, name: str, index: int | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run the function only if ``name`` is enabled for an id: the ``index``-th
        positional argument (1-based), or else the current id."""
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 1):
            raise RolloutException(f"check({name!r}, {index!r}): the argument index is 1-based")

        def decorator(fn: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                if self.backend.get_functionality(name) is None:
                    raise RolloutException(f"Feature <{name}> is not defined")
                if index is not None:
                    if len(args) < index:
                        raise RolloutException(
                            f"Feature <{name}> checks positional argument {index}, "
                            f"but {getattr(fn, '__name__', 'the function')} got {len(args)}"
                        )
                    item = args[index - 1]
                else:
                    item = self._current.get()
                    if item is None:
                        raise RolloutException(
                            f"Feature <{name}>: call set_current_id() before a check without an index"
                        )
                if not self.is_enabled(name, item):
                    raise RolloutException(f"Feature <{name}> is not enabled for <{item}>")
                return fn(*args, **kwargs)

            return wrapper

        return decorator

    def __getattr__(self, attr: str) -> Callable[..., bool]:
        """``rollout.is_<name>(item=None)``, for any feature name."""
        if attr.startswith("is_") and len(attr) > 3 and not attr.startswith("__"):
            name = attr[3:]

            def shortcut(item: Any = None) -> bool:
                return self.is_enabled(name, item)

            shortcut.__name__ = attr
            return shortcut
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
