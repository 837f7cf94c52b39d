"""Wrappers: a store around a store, adding one behaviour and passing the rest through.

A wrapper is itself a :class:`~flagstaff.stores.base.Store` and runs the same
conformance suite as every backend. Cross-cutting behaviour lives here rather
than as an option of each backend, so every store has it.

:class:`ReadOnlyStore`
    Reads, history and watches go to the wrapped store unchanged; ``put``,
    ``delete`` and ``put_many`` raise :class:`~flagstaff.errors.StoreError` before reaching it.
    ``?readonly=1`` on any store URL (``1``, ``true`` or ``yes``) makes
    :func:`flagstaff.stores.open_store` return the store wrapped in one: an
    application process that must never write says so in its URL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flagstaff.errors import StoreError
from flagstaff.stores.base import HistoryEntry, Record, Store, StoreState, Watch, WatchEvent, Write

__all__ = ["ReadOnlyStore"]


class ReadOnlyStore:
    """``wrapped`` with its writes refused (see the module doc). Closing it closes ``wrapped``."""

    def __init__(self, wrapped: Store) -> None:
        self.wrapped = wrapped
        base, _, fragment = wrapped.url.partition("#")
        self.url = f"{base}{'&' if '?' in base else '?'}readonly=1" + (f"#{fragment}" if fragment else "")

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self.wrapped!r})"

    def load(self) -> StoreState:
        return self.wrapped.load()

    def get(self, name: str) -> Record | None:
        return self.wrapped.get(name)

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        raise self._refused()

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        raise self._refused()

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        raise self._refused()

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        return self.wrapped.watch(on_event, since)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        return self.wrapped.history(name, limit)

    def close(self) -> None:
        self.wrapped.close()

    def _refused(self) -> StoreError:
        return StoreError(f"{self.url} was opened read-only (readonly=1): writes are refused")
