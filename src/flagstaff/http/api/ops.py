"""The service endpoints: ``/healthz``, ``/metrics`` and the OpenAPI document.

``/healthz`` answers 200 while the server's client is live and 503 otherwise,
with the client's status (revision, flag count, the documents it skipped and
why). None of these needs a token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.document import printable_text
from flagstaff.http import openapi
from flagstaff.http.api._common import query
from flagstaff.http.state import state_of

__all__ = ["healthz", "metrics", "openapi_document"]


async def healthz(request: Request) -> Response:
    query(request)
    state = state_of(request)
    status = state.client.status()
    live = status.state.value == "live"
    body = {
        "status": "ok" if live else "degraded",
        "state": status.state.value,
        "revision": status.revision,
        "flags": status.flags,
        "invalid": len(status.invalid),
        # The bad documents by name, with why (printable: a reason may quote stored text).
        "invalid_flags": {name: printable_text(why) for name, why in sorted(status.invalid.items())},
        "age": status.age,
        "store": status.store_url,
        "last_error": status.last_error,
    }
    return JSONResponse(body, 200 if live else 503)


async def metrics(request: Request) -> Response:
    query(request)
    return Response(state_of(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi_document(request: Request) -> Response:
    query(request)
    return JSONResponse(openapi.document())
