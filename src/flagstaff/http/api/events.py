"""The event feed's route: ``GET /api/v1/events``, a server-sent event stream.

Each stream is one subscription to the server's
:class:`~flagstaff.http.events.EventBroker`, which encodes each change once for
every subscriber. A stream pings when idle and ends as soon as its token is
revoked (checked at each event and each ping).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from flagstaff.http.api._common import query
from flagstaff.http.auth import require
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission, Principal

__all__ = ["FRAME_SLICE", "events"]

FRAME_SLICE = 256 * 1024  # bytes of an event-stream frame written per turn of the event loop


async def events(request: Request) -> Response:
    query(request)
    principal = require(request, Permission.READ)
    state = state_of(request)
    broker = state.events
    subscription = broker.subscribe()
    interval = state.settings.ping_interval

    async def stream() -> AsyncIterator[str | memoryview]:
        try:
            yield f"retry: 3000\n: connected at revision {broker.revision}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), interval)
                except TimeoutError:
                    if not _still_valid(state, principal):
                        return
                    yield ": ping\n\n"
                    continue
                if event is None or not _still_valid(state, principal):
                    return
                # The same bytes for every subscriber, encoded once, sent in slices with a
                # turn of the loop between them: one 3.9 MB write per stream, 100 streams
                # woken at once, held the loop (and every other request) for about a second.
                frame = memoryview(event.frame)
                for start in range(0, len(frame), FRAME_SLICE):
                    if start:
                        await asyncio.sleep(0)
                    yield frame[start : start + FRAME_SLICE]
        finally:
            broker.unsubscribe(subscription)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _still_valid(state: ServerState, principal: Principal) -> bool:
    """A stream ends as soon as its token is revoked (checked at each event and ping)."""
    if principal.token_id is None:
        return True
    info = state.tokens.get(principal.token_id)
    # Revoked, not "inactive": a login link's token is used up (and expires) once its session is open.
    return info is not None and info.revoked_at is None
