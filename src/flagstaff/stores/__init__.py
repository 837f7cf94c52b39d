"""Stores: where flags live. :func:`open_store` picks one by URL scheme.

======================================  ==========================================
``memory://[name]``                     process memory (tests, demos)
``file:///path/flags.json``             a JSON (or YAML) file, watched
``sqlite:///path/flagstaff.db``             the embedded default: one file, many processes
``zookeeper://host:port[,…]/chroot``    ZooKeeper, pushed by watches
``etcd://host:port[,…]/prefix``         etcd v3, prefix watch
``redis://host:port/db?prefix=…``       Redis, pub/sub notices
``postgresql://user@host:port/db?…``    PostgreSQL, LISTEN/NOTIFY and catch-up by revision
======================================  ==========================================

``?readonly=1`` on any of them opens the store wrapped in a
:class:`~flagstaff.stores.wrappers.ReadOnlyStore`: reads and watches as usual,
writes refused with ``StoreError``.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from flagstaff.errors import UnsupportedStoreURL
from flagstaff.runtime import Runtime
from flagstaff.stores.base import (
    Change,
    Disconnected,
    HistoryEntry,
    Record,
    Reset,
    Resumed,
    Store,
    StoreState,
    Watch,
    WatchEvent,
    Write,
)
from flagstaff.stores.wrappers import ReadOnlyStore

__all__ = [
    "Change",
    "Disconnected",
    "HistoryEntry",
    "Record",
    "Reset",
    "Resumed",
    "Store",
    "StoreState",
    "Watch",
    "WatchEvent",
    "Write",
    "open_store",
]

# scheme -> "module:Class"; each class has ``from_url(url, runtime)``.
SCHEMES: dict[str, str] = {
    "memory": "flagstaff.stores.memory:MemoryStore",
    "file": "flagstaff.stores.file:FileStore",
    "sqlite": "flagstaff.stores.sqlite:SQLiteStore",
    "zookeeper": "flagstaff.stores.zookeeper:ZooKeeperStore",
    "zk": "flagstaff.stores.zookeeper:ZooKeeperStore",
    "etcd": "flagstaff.stores.etcd:EtcdStore",
    "etcds": "flagstaff.stores.etcd:EtcdStore",  # etcd's gateway over HTTPS
    "redis": "flagstaff.stores.redis:RedisStore",
    "rediss": "flagstaff.stores.redis:RedisStore",  # Redis over TLS (redis-py)
    "postgresql": "flagstaff.stores.postgres:PostgresStore",
    "postgres": "flagstaff.stores.postgres:PostgresStore",  # libpq takes both spellings
}


def open_store(url: str, *, runtime: Runtime | None = None) -> Store:
    """Open the store a URL names. Raises :class:`UnsupportedStoreURL`.

    ``readonly=1`` (``true``, ``yes``) in the query is taken out of the URL the
    store sees, and the store comes back wrapped in a :class:`ReadOnlyStore`.
    """
    url, readonly = _take_readonly(url)
    scheme = urlsplit(url).scheme
    target = SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(sorted(SCHEMES))
        raise UnsupportedStoreURL(f"unknown store URL {url!r}: the scheme must be one of {known}")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnsupportedStoreURL(
            f"the {scheme}:// store needs an optional dependency ({exc.name}); "
            f"install it with: pip install 'flagstaff[{scheme}]'"
        ) from exc
    store: Store = getattr(module, cls_name).from_url(url, runtime)
    return ReadOnlyStore(store) if readonly else store


def _take_readonly(url: str) -> tuple[str, bool]:
    """``url`` without its ``readonly`` option, and whether that option said yes."""
    base, question, rest = url.partition("?")
    if not question:
        return url, False
    query, hash_, fragment = rest.partition("#")
    pairs = query.split("&")
    kept = [p for p in pairs if p.partition("=")[0] != "readonly"]
    if len(kept) == len(pairs):
        return url, False
    readonly = False
    for pair in pairs:  # the last one counts, as for every other option
        key, _, value = pair.partition("=")
        if key == "readonly":
            readonly = value.lower() in ("1", "true", "yes")
    stripped = base + ("?" + "&".join(kept) if kept else "") + hash_ + fragment
    return stripped, readonly
