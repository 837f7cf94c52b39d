"""asyncio: the client for code that runs on an event loop.

Evaluation is already safe on a loop (no I/O, no lock, never blocks), so
:class:`AsyncClient` passes it straight to the wrapped :class:`~flagstaff.Client`.
What can block (opening the store and the first load, closing, waiting for a
change) is awaitable here and runs the client's own blocking code off the loop:
there is one implementation of each, the synchronous one.

::

    from flagstaff import aio

    async with await aio.connect("sqlite:///flagstaff.db") as client:
        client.is_enabled("new_checkout", "42")          # plain call, as in sync code
        decision = await client.wait_for_change("new_checkout", timeout=30)

Guarantees
    * ``connect`` and ``aclose`` run in a worker thread (``asyncio.to_thread``),
      so the loop keeps serving while the first load or the shutdown waits.
    * ``wait_for_change`` runs :meth:`Client.wait_for_change` on a thread of
      its own (not the loop's shared executor, so many waiters starve nothing).
      Cancelling the await returns at once; the thread ends at its timeout, at
      the next change of the flag, or when the client is closed, whichever
      comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from flagstaff.cache import SnapshotCache
from flagstaff.client import Client, Listener, Status, ValueDetails
from flagstaff.client import connect as _connect
from flagstaff.context import ContextLike
from flagstaff.decision import Decision
from flagstaff.exposures import Recorder
from flagstaff.runtime import Runtime
from flagstaff.scope import ExposureHook, Scope
from flagstaff.segments import Segment
from flagstaff.snapshot import Snapshot
from flagstaff.stores import Store

__all__ = ["AsyncClient", "connect"]


async def connect(
    store: str | Store,
    *,
    timeout: float = 5.0,
    cache: str | os.PathLike[str] | SnapshotCache | None = None,
    runtime: Runtime | None = None,
    on_exposure: ExposureHook | None = None,
    exposures: Recorder | None = None,
) -> AsyncClient:
    """:func:`flagstaff.connect`, awaited without blocking the loop."""
    client = await asyncio.to_thread(
        _connect,
        store,
        timeout=timeout,
        cache=cache,
        runtime=runtime,
        on_exposure=on_exposure,
        exposures=exposures,
    )
    return AsyncClient(client)


class AsyncClient:
    """A :class:`~flagstaff.Client` with awaitable waiting and closing.

    Build it with :func:`connect`, or wrap a client you already have. The
    evaluation methods are the client's own (synchronous and non-blocking).
    """

    __slots__ = ("client",)

    def __init__(self, client: Client) -> None:
        self.client = client

    # -- evaluation: the client's, unchanged ---------------------------------

    def is_enabled(self, name: str, context: ContextLike = None) -> bool:
        """See :meth:`Client.is_enabled`."""
        return self.client.is_enabled(name, context)

    def variant(self, name: str, context: ContextLike = None) -> str | None:
        """See :meth:`Client.variant`."""
        return self.client.variant(name, context)

    def evaluate(self, name: str, context: ContextLike = None) -> Decision:
        """See :meth:`Client.evaluate`."""
        return self.client.evaluate(name, context)

    def all(self, context: ContextLike = None) -> dict[str, Decision]:
        """See :meth:`Client.all`."""
        return self.client.all(context)

    def value(self, name: str, context: ContextLike = None, default: Any = None) -> Any:
        """See :meth:`Client.value`."""
        return self.client.value(name, context, default)

    def value_details(
        self, name: str, context: ContextLike = None, default: Any = None, *, expect: type | None = None
    ) -> ValueDetails:
        """See :meth:`Client.value_details`."""
        return self.client.value_details(name, context, default, expect=expect)

    def get_bool(self, name: str, context: ContextLike = None, default: bool = False) -> bool:
        """See :meth:`Client.get_bool`."""
        return self.client.get_bool(name, context, default)

    def get_str(self, name: str, context: ContextLike = None, default: str = "") -> str:
        """See :meth:`Client.get_str`."""
        return self.client.get_str(name, context, default)

    def get_int(self, name: str, context: ContextLike = None, default: int = 0) -> int:
        """See :meth:`Client.get_int`."""
        return self.client.get_int(name, context, default)

    def get_float(self, name: str, context: ContextLike = None, default: float = 0.0) -> float:
        """See :meth:`Client.get_float`."""
        return self.client.get_float(name, context, default)

    def get_dict(
        self, name: str, context: ContextLike = None, default: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """See :meth:`Client.get_dict`."""
        return self.client.get_dict(name, context, default)

    def track(
        self,
        event: str,
        context: ContextLike = None,
        value: float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> bool:
        """See :meth:`Client.track` (queues only: never blocks the loop)."""
        return self.client.track(event, context, value, attributes)

    def scope(self, context: ContextLike = None) -> Scope:
        """See :meth:`Client.scope`; ``with client.scope(ctx):`` works in a task."""
        return self.client.scope(context)

    @property
    def snapshot(self) -> Snapshot:
        return self.client.snapshot

    @property
    def segments(self) -> Mapping[str, Segment]:
        """See :attr:`Client.segments`."""
        return self.client.segments

    def status(self) -> Status:
        return self.client.status()

    def on_change(self, callback: Listener) -> Callable[[], None]:
        """See :meth:`Client.on_change` (the callback runs on the client's dispatcher)."""
        return self.client.on_change(callback)

    # -- what blocks, awaited ------------------------------------------------

    async def wait_for_change(
        self, name: str, timeout: float, context: ContextLike = None
    ) -> Decision | None:
        """Wait until the decision for ``name`` differs from the one at the call
        and return it; ``None`` after ``timeout`` seconds with no such change."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decision | None] = loop.create_future()

        def deliver(result: Decision | None, error: BaseException | None) -> None:
            if future.done():  # cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def wait() -> None:
            result: Decision | None = None
            error: BaseException | None = None
            try:
                result = self.client.wait_for_change(name, timeout, context)
            except Exception as exc:  # handed to the awaiting task and raised there
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(deliver, result, error)

        threading.Thread(target=wait, name="flagstaff-aio-wait", daemon=True).start()
        return await future

    async def aclose(self) -> None:
        """Close the client without blocking the loop. Idempotent."""
        await asyncio.to_thread(self.client.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.client!r}>"
