"""Importing the seed systems' stored flags, keeping every user's bucket.

Readers (each returns :class:`Imported` entries; the ``import_*`` shorthands
return ``{name: document}``):

======================  ==========================================================
:func:`read_rollout`    the rollout gem's Redis data: v2.x ``feature:<name>`` =
                        ``pct|users|groups|json`` listed in ``feature:__features__``,
                        or the legacy v1 layout (``feature:<f>:percentage`` …)
:func:`read_hanoi`      hanoi's Redis layouts: ``rollout:<name>`` =
                        ``enabled|pct|field|users|variants`` (RedisBackEnd) or
                        ``enabled|pct|field|variants`` + SET ``rollout:users:<name>``
                        (RedisHighPerfBackEnd)
:func:`read_reddit`     reddit live-config entries ``feature_<name> = …``
======================  ==========================================================

Each document names the bucketing mode of the system it came from, so a user
inside a percentage before the import is inside it after:

===========================  ===================================================
rollout 2.4.2 and later      ``rollout``: ``crc32(id) < (2**32-1)/100 * pct``
…with randomize_percentage   ``rollout_randomized``: ``crc32(id + name)``
rollout 2.0 to 2.2           ``hanoi``: ``crc32(id) % 100 < int(pct)``
rollout 1.x (legacy layout)  ``modulo100``: ``int(id) % 100 < int(pct)``
hanoi                        ``hanoi_inverted`` (0.0.4's code; see the note below)
reddit                       ``reddit``: ``sha1(name + fullname) % 1000``
===========================  ===================================================

rollout 2.3.0 to 2.4.1 (``crc32(id) % 100_000 < pct * 1000``) has no flagstaff
mode and is refused rather than approximated.

hanoi 0.0.4's code compared ``bucket >= pct`` although its README says ``<``.
By default (``rule="code"``) a hanoi percentage ``p`` strictly between 0 and 100
becomes ``"bucketing": "hanoi_inverted"`` with ``"percentage": 100 - p``, which
admits exactly the users hanoi admitted; ``rule="readme"`` keeps ``p`` in the
``hanoi`` mode (the README's users, not the ones hanoi served) and notes the
change. Entries carry notes of whatever does not carry over exactly, and
:func:`apply` with ``dry_run=True`` shows what would be written without writing.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from flagstaff.bucketing import BucketingMode
from flagstaff.compat.hanoi import Feature, InvalidFeature, feature_document
from flagstaff.compat.reddit import CONFIG_PREFIX, _config_lines, live_config_document
from flagstaff.errors import FlagstaffError, ValidationError
from flagstaff.model import decode_document, encode_document, parse_flag, validate_name
from flagstaff.stores import Store, open_store

__all__ = [
    "ACTION_KINDS",
    "Action",
    "HanoiRule",
    "Imported",
    "MigrationError",
    "RolloutFormula",
    "apply",
    "import_hanoi",
    "import_reddit",
    "import_rollout",
    "read_hanoi",
    "read_reddit",
    "read_rollout",
    "run_import",
]

log = logging.getLogger("flagstaff.compat.migrate")

_LEADING_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


class MigrationError(FlagstaffError):
    """The source data cannot be imported as asked."""


class RolloutFormula(StrEnum):
    """Which rollout gem version wrote (and evaluated) the data."""

    V2_4_2 = "2.4.2"  # 2.4.2 .. 2.6.x, the current gem
    V2_3 = "2.3"  # 2.3.0 .. 2.4.1: no flagstaff mode, refused
    V2_0 = "2.0"  # 2.0 .. 2.2.1
    V1 = "1"  # legacy layout, integer ids


@dataclass(frozen=True, slots=True)
class Imported:
    """One flag read from a seed system, as a flagstaff document."""

    name: str
    document: Any
    source: str
    notes: tuple[str, ...] = ()


ACTION_KINDS = ("create", "update", "unchanged", "keep", "invalid")
"""What :func:`apply` does with a flag: ``keep`` means it exists with another
document and ``overwrite`` was not given."""


@dataclass(frozen=True, slots=True)
class Action:
    """What :func:`apply` did (or would do) with one flag."""

    name: str
    kind: str  # one of ACTION_KINDS
    document: str | None
    previous: str | None = None
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- helpers


def _redis(source: Any) -> Any:
    if isinstance(source, str):
        if not source.startswith(("redis://", "rediss://", "unix://")):
            raise MigrationError(
                f"rollout and hanoi data is read from Redis: give --from redis://HOST:PORT/DB, not {source!r}"
            )
        import redis

        return redis.Redis.from_url(source)
    return source


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _ruby_to_f(text: str) -> float:
    """Ruby's ``String#to_f``: the leading number, else 0.0."""
    m = _LEADING_NUMBER.match(text)
    if m is None:
        return 0.0
    value = float(m.group(0))
    return value if math.isfinite(value) else 0.0


def _ruby_to_i(text: str) -> int:
    m = re.match(r"^\s*[-+]?\d+", text)
    return int(m.group(0)) if m else 0


def _csv(text: str) -> list[str]:
    return list(dict.fromkeys(part for part in text.split(",") if part))


def _clamp(pct: float, notes: list[str]) -> float | int:
    if pct < 0 or pct > 100:
        notes.append(f"percentage {pct:g} clamped to [0, 100] (the same users)")
    pct = min(max(pct, 0.0), 100.0)
    return int(pct) if float(pct).is_integer() else pct


def _checked(name: str, document: Any, source: str, notes: list[str]) -> Imported | None:
    if validate_name(name):
        log.warning("skipping %s flag %r: not a valid flagstaff name", source, name)
        return None
    return Imported(name, document, source, tuple(notes))


# --------------------------------------------------------------------------- rollout


def read_rollout(
    redis: Any,
    *,
    formula: RolloutFormula | str = RolloutFormula.V2_4_2,
    randomize_percentage: bool = False,
) -> list[Imported]:
    """Flags of the rollout gem stored in Redis (a URL or a redis-py client).

    ``formula`` is the gem version that evaluated them (see the module doc); the
    v1 layout is read when ``formula`` is ``"1"`` or when there is no
    ``feature:__features__`` key but v1 keys exist.
    """
    formula = RolloutFormula(formula)
    client = _redis(redis)
    if formula is RolloutFormula.V2_3:
        raise MigrationError(
            "rollout 2.3.0-2.4.1 bucketed by crc32(id) % 100000 < pct * 1000, which no flagstaff mode "
            "reproduces; upgrade the gem to 2.4.2+ first (it re-buckets) or import with formula 2.4.2"
        )
    listed = client.get("feature:__features__")
    if formula is RolloutFormula.V1 or (listed is None and _has_v1_keys(client)):
        return _read_rollout_v1(client)
    out: list[Imported] = []
    for name in _csv(_text(listed or b"")):
        raw = client.get(f"feature:{name}")
        entry = _rollout_v2(name, _text(raw) if raw is not None else "", formula, randomize_percentage)
        if entry is not None:
            out.append(entry)
    return out


def _rollout_v2(name: str, state: str, formula: RolloutFormula, randomize: bool) -> Imported | None:
    notes: list[str] = []
    fields = state.split("|", 3)
    fields += [""] * (4 - len(fields))
    pct_text, users_text, groups_text, data_text = fields
    doc: dict[str, Any] = {}
    if formula is RolloutFormula.V2_0:
        doc["bucketing"] = "hanoi"  # crc32(id) % 100 < pct.to_i
        pct: float = float(_ruby_to_i(pct_text))
    else:
        doc["bucketing"] = "rollout_randomized" if randomize else "rollout"
        pct = _ruby_to_f(pct_text)
    doc["percentage"] = _clamp(pct, notes)
    users = _csv(users_text)
    if users:
        doc["users"] = users
    _rollout_groups(_csv(groups_text), doc, notes)
    if data_text.strip() not in ("", "{}"):
        notes.append(f"feature data {data_text.strip()} is not imported (flags carry no free data)")
    return _checked(name, doc, "rollout", notes)


def _rollout_groups(groups: list[str], doc: dict[str, Any], notes: list[str]) -> None:
    if "all" in groups:
        doc["loggedin"] = True  # rollout's predefined :all group: every user with an id
        groups = [g for g in groups if g != "all"]
    if groups:
        doc["groups"] = groups
        notes.append(
            "groups " + ", ".join(groups) + " were Ruby lambdas: pass membership in the context's groups"
        )


def _has_v1_keys(client: Any) -> bool:
    if client.exists("feature:__global__"):
        return True
    return any(True for _ in client.scan_iter(match="feature:*:percentage", count=100))


def _read_rollout_v1(client: Any) -> list[Imported]:
    names: set[str] = {_text(n) for n in client.smembers("feature:__global__")}
    for suffix in ("percentage", "users", "groups"):
        for key in client.scan_iter(match=f"feature:*:{suffix}", count=500):
            names.add(_text(key)[len("feature:") : -len(suffix) - 1])
    global_on = {_text(n) for n in client.smembers("feature:__global__")}
    out: list[Imported] = []
    for name in sorted(names):
        notes: list[str] = []
        raw_pct = client.get(f"feature:{name}:percentage")
        doc: dict[str, Any] = {"bucketing": "modulo100"}
        if name in global_on:
            doc["enabled"] = "on"
        pct = _ruby_to_i(_text(raw_pct)) if raw_pct is not None else 0
        doc["percentage"] = _clamp(float(pct), notes)
        users = sorted(_text(u) for u in client.smembers(f"feature:{name}:users"))
        if users:
            doc["users"] = users
        _rollout_groups(sorted(_text(g) for g in client.smembers(f"feature:{name}:groups")), doc, notes)
        entry = _checked(name, doc, "rollout-v1", notes)
        if entry is not None:
            out.append(entry)
    return out


def import_rollout(redis: Any, **options: Any) -> dict[str, Any]:
    """``{name: document}`` of the rollout gem's flags (see :func:`read_rollout`)."""
    return {i.name: i.document for i in read_rollout(redis, **options)}


# --------------------------------------------------------------------------- hanoi


class HanoiRule(StrEnum):
    """Which percentage rule a hanoi import keeps."""

    CODE = "code"  # what hanoi 0.0.4 did: crc32 % 100 >= p (the users it served)
    README = "readme"  # what its README says: crc32 % 100 < p


def read_hanoi(
    redis: Any, *, prefix: str = "rollout", rule: HanoiRule | str = HanoiRule.CODE
) -> list[Imported]:
    """hanoi's features in Redis, both layouts (``prefix`` is ``h`` for hanoi's
    unreleased master). Rules were never stored by hanoi, so none are imported.
    ``rule`` says whose users a percentage keeps (see the module doc)."""
    try:
        rule = HanoiRule(rule)
    except ValueError:
        raise MigrationError(f"unknown hanoi rule {rule!r}; expected code or readme") from None
    client = _redis(redis)
    users_prefix = f"{prefix}:users:"
    out: list[Imported] = []
    for key in sorted(_text(k) for k in client.scan_iter(match=f"{prefix}:*", count=500)):
        if key.startswith(users_prefix) or client.type(key) not in (b"string", "string"):
            continue
        name = key[len(prefix) + 1 :]
        raw = client.get(key)
        if raw is None:
            continue
        fields = _text(raw).split("|")
        if len(fields) == 5:
            enabled, pct, field_name, users_csv, variants_csv = fields
            users = _csv(users_csv)
            layout = "hanoi-redis"
        elif len(fields) == 4:
            enabled, pct, field_name, variants_csv = fields
            users = sorted(_text(u) for u in client.smembers(users_prefix + name))
            layout = "hanoi-highperf"
        else:
            log.warning("skipping hanoi key %s: %d fields, expected 4 or 5", key, len(fields))
            continue
        entry = _hanoi(name, enabled, pct, field_name, users, _csv(variants_csv), layout, rule)
        if entry is not None:
            out.append(entry)
    return out


def _hanoi(  # noqa: PLR0913 (one hanoi row's columns, named)
    name: str,
    enabled: str,
    pct: str,
    field_name: str,
    users: list[str],
    variants: list[str],
    layout: str,
    rule: HanoiRule,
) -> Imported | None:
    notes: list[str] = []
    try:
        feature = Feature(name, field_name or None, pct, variants or None)
    except InvalidFeature as exc:
        log.warning("skipping hanoi feature %r: %s", name, exc)
        return None
    feature.enabled = enabled.strip() not in ("0", "False", "false", "")
    p = feature.percentage
    inverted = 0 < p < 100 and rule is HanoiRule.CODE
    if inverted:
        # hanoi 0.0.4 admitted crc32 % 100 >= p: the top 100 - p buckets.
        feature.percentage = 100 - p
        notes.append(
            f"hanoi 0.0.4's code enabled ids with crc32 % 100 >= {p} (about {100 - p:g}% of ids), "
            f"not the {p:g}% its README describes; kept as bucketing hanoi_inverted, "
            f"percentage {100 - p:g}, so every id keeps its decision"
        )
    elif 0 < p < 100:
        notes.append(
            f"hanoi 0.0.4's code enabled ids with crc32 % 100 >= {p} "
            f"(about {100 - p:g}% of ids); the imported flag uses the README's "
            f"rule, crc32 % 100 < {p} (about {p:g}%)"
        )
    doc = feature_document(feature, users)
    if inverted:
        doc["bucketing"] = BucketingMode.HANOI_INVERTED.value
    return _checked(name, doc, layout, notes)


def import_hanoi(redis: Any, **options: Any) -> dict[str, Any]:
    """``{name: document}`` of hanoi's features (see :func:`read_hanoi`)."""
    return {i.name: i.document for i in read_hanoi(redis, **options)}


# --------------------------------------------------------------------------- reddit


def read_reddit(source: str | Path | Iterable[str] | Mapping[str, str]) -> list[Imported]:
    """reddit live-config entries: a file path, its text, lines, or a mapping."""
    entries: Iterable[tuple[str, str]]
    if isinstance(source, Path):
        entries = _config_lines(source.read_text("utf-8").splitlines())
    elif isinstance(source, Mapping):
        entries = source.items()
    elif isinstance(source, str):
        entries = _config_lines(source.splitlines())
    else:
        entries = _config_lines(source)
    out: list[Imported] = []
    for raw_key, value in entries:
        key = raw_key.strip()
        if not key.startswith(CONFIG_PREFIX) or len(key) == len(CONFIG_PREFIX):
            continue
        notes: list[str] = []
        doc = live_config_document(value, notes=notes)
        entry = _checked(key[len(CONFIG_PREFIX) :], doc, "reddit", notes)
        if entry is not None:
            out.append(entry)
    return out


def import_reddit(source: str | Path | Iterable[str] | Mapping[str, str]) -> dict[str, Any]:
    """``{name: document}`` of reddit's live-config flags."""
    return {i.name: i.document for i in read_reddit(source)}


# --------------------------------------------------------------------------- writing


def apply(
    entries: Iterable[Imported],
    store: Store,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    author: str = "flagstaff import",
) -> list[Action]:
    """Write imported flags into ``store`` (compare-and-set, one by one).

    A flag that already exists with a different document is kept unless
    ``overwrite``. With ``dry_run`` nothing is written; the actions say what
    would be.
    """
    actions: list[Action] = []
    for entry in entries:
        text = encode_document(entry.document)
        try:
            parse_flag(entry.name, entry.document)
        except ValidationError as exc:
            actions.append(Action(entry.name, "invalid", text, None, (*entry.notes, str(exc))))
            continue
        current = store.get(entry.name)
        previous = current.raw if current is not None else None
        if current is None:
            kind = "create"
        elif _same(current.raw, entry.document):
            kind = "unchanged"
        elif overwrite:
            kind = "update"
        else:
            kind = "keep"
        if not dry_run and kind in ("create", "update"):
            store.put(entry.name, text, expect=current.version if current else 0, author=author)
        actions.append(Action(entry.name, kind, text, previous, entry.notes))
    return actions


def _same(raw: str, document: Any) -> bool:
    try:
        return encode_document(decode_document(raw)) == encode_document(document)
    except ValidationError:
        return False


SOURCES = ("rollout", "hanoi", "reddit")


def run_import(
    kind: str,
    source: str,
    store: str | Store,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    author: str = "flagstaff import",
    **options: Any,
) -> list[Action]:
    """The CLI's ``flagstaff import``: read ``source`` (a ``redis://`` URL for
    rollout and hanoi, a live-config file for reddit) and apply it to ``store``."""
    if kind == "rollout":
        entries = read_rollout(source, **options)
    elif kind == "hanoi":
        entries = read_hanoi(source, **options)
    elif kind == "reddit":
        entries = read_reddit(Path(source))
    else:
        raise MigrationError(f"unknown source kind {kind!r}; expected one of {', '.join(SOURCES)}")
    target = open_store(store) if isinstance(store, str) else store
    try:
        return apply(entries, target, dry_run=dry_run, overwrite=overwrite, author=author)
    finally:
        if isinstance(store, str):
            target.close()
