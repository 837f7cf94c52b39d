"""The JSON API under ``/api/v1`` (see ``docs/server.md`` and the served OpenAPI document).

One module per resource, each a handful of Starlette handlers:

* :mod:`~flagstaff.http.api.flags`: list, create, read, replace, edit (PATCH), delete, validate;
* :mod:`~flagstaff.http.api.segments`: list, read, write, delete, history of segments;
* :mod:`~flagstaff.http.api.history`: history, diff, rollback;
* :mod:`~flagstaff.http.api.evaluate`: decisions from the server's client snapshot;
* :mod:`~flagstaff.http.api.events`: the server-sent event stream;
* :mod:`~flagstaff.http.api.ingest`: exposures and metric events from other processes;
* :mod:`~flagstaff.http.api.blast`: who a new document would move, before the write;
* :mod:`~flagstaff.http.api.guard`: a flag's guardrails as the guard loop judged them, check now;
* :mod:`~flagstaff.http.api.report`: an experiment's results (JSON or SVG);
* :mod:`~flagstaff.http.api.tokens`: API tokens;
* :mod:`~flagstaff.http.api.users`: the local user store (list, create, disable, roles, remove);
* :mod:`~flagstaff.http.api.changes`: change requests (propose, approve, apply);
* :mod:`~flagstaff.http.api.client`: client-side evaluation with public client keys, and those keys;
* :mod:`~flagstaff.http.api.forcing`: signed QA forcing tokens;
* :mod:`~flagstaff.http.api.ops`: ``/healthz``, ``/metrics``, the OpenAPI document;
* :mod:`~flagstaff.http.api._common`: what they share (errors, body, query, ``If-Match``, writes).

Reads come from the store (so versions and ETags are exact) or, for
evaluation, from the server's client snapshot. Every write goes through
:class:`flagstaff.admin.Admin` (validated, compare-and-set) with an author
naming the caller, its token and the request id: the store's history entry for
the write is its audit record. Blocking store calls run in the thread pool.

Errors are JSON: ``{"error": message}``, plus ``problems`` (validation),
``current_version`` (a stale ``If-Match``) or ``used_by`` (a delete refused because
flags still use the segment or flag).
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from flagstaff.http.api import (
    blast,
    changes,
    client,
    evaluate,
    events,
    flags,
    forcing,
    guard,
    history,
    ingest,
    ops,
    report,
    segments,
    tokens,
    users,
)
from flagstaff.http.api._common import PREFIX, ApiError
from flagstaff.http.api.flags import PATCH_OPS

__all__ = ["PATCH_OPS", "PREFIX", "ApiError", "routes"]


def routes() -> list[BaseRoute]:
    """Every API route, for :func:`flagstaff.http.app.create_app`."""
    return [
        # First: the hot path (Starlette tries routes in order; each miss is a regex match).
        Route(f"{PREFIX}/evaluate", evaluate.evaluate, methods=["POST"]),
        Route("/healthz", ops.healthz, methods=["GET"]),
        Route("/metrics", ops.metrics, methods=["GET"]),
        Route(f"{PREFIX}/openapi.json", ops.openapi_document, methods=["GET"]),
        Route(f"{PREFIX}/flags", flags.list_flags, methods=["GET"]),
        Route(f"{PREFIX}/flags", flags.create_flag, methods=["POST"]),
        Route(f"{PREFIX}/flags/{{name}}", flags.get_flag, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}", flags.put_flag, methods=["PUT"]),
        Route(f"{PREFIX}/flags/{{name}}", flags.patch_flag, methods=["PATCH"]),
        Route(f"{PREFIX}/flags/{{name}}", flags.delete_flag, methods=["DELETE"]),
        Route(f"{PREFIX}/flags/{{name}}/history", history.flag_history, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/diff", history.diff, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/rollback", history.rollback, methods=["POST"]),
        Route(f"{PREFIX}/flags/{{name}}/blast", blast.blast, methods=["POST"]),
        Route(f"{PREFIX}/flags/{{name}}/guard", guard.get_guard, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/guard", guard.check_guard, methods=["POST"]),
        Route(f"{PREFIX}/flags/{{name}}/report", report.flag_report, methods=["GET"]),
        Route(f"{PREFIX}/segments", segments.list_segments, methods=["GET"]),
        Route(f"{PREFIX}/segments/{{name}}", segments.get_segment, methods=["GET"]),
        Route(f"{PREFIX}/segments/{{name}}", segments.put_segment, methods=["PUT"]),
        Route(f"{PREFIX}/segments/{{name}}", segments.delete_segment, methods=["DELETE"]),
        Route(f"{PREFIX}/segments/{{name}}/history", segments.segment_history, methods=["GET"]),
        Route(f"{PREFIX}/history", history.all_history, methods=["GET"]),
        Route(f"{PREFIX}/validate", flags.validate, methods=["POST"]),
        Route(f"{PREFIX}/events", events.events, methods=["GET"]),
        Route(f"{PREFIX}/ingest", ingest.ingest, methods=["POST"]),
        Route(f"{PREFIX}/force-tokens", forcing.create_force_token, methods=["POST"]),
        Route(f"{PREFIX}/tokens", tokens.list_tokens, methods=["GET"]),
        Route(f"{PREFIX}/tokens", tokens.create_token, methods=["POST"]),
        Route(f"{PREFIX}/tokens/{{token_id}}", tokens.revoke_token, methods=["DELETE"]),
        Route(f"{PREFIX}/users", users.list_users, methods=["GET"]),
        Route(f"{PREFIX}/users", users.create_user, methods=["POST"]),
        Route(f"{PREFIX}/users/{{name}}", users.get_user, methods=["GET"]),
        Route(f"{PREFIX}/users/{{name}}", users.patch_user, methods=["PATCH"]),
        Route(f"{PREFIX}/users/{{name}}", users.delete_user, methods=["DELETE"]),
        Route(f"{PREFIX}/change-requests", changes.list_requests, methods=["GET"]),
        Route(f"{PREFIX}/change-requests", changes.propose, methods=["POST"]),
        Route(f"{PREFIX}/change-requests/{{change_id}}", changes.get_request, methods=["GET"]),
        Route(f"{PREFIX}/change-requests/{{change_id}}/approve", changes.approve_request, methods=["POST"]),
        Route(f"{PREFIX}/change-requests/{{change_id}}/reject", changes.reject_request, methods=["POST"]),
        Route(f"{PREFIX}/change-requests/{{change_id}}/cancel", changes.cancel_request, methods=["POST"]),
        Route(f"{PREFIX}/change-requests/{{change_id}}/apply", changes.apply_request, methods=["POST"]),
        Route(f"{PREFIX}/client/evaluate", client.client_evaluate, methods=["GET", "POST", "OPTIONS"]),
        Route(f"{PREFIX}/client-keys", client.list_client_keys, methods=["GET"]),
        Route(f"{PREFIX}/client-keys", client.create_client_key, methods=["POST"]),
        Route(f"{PREFIX}/client-keys/{{key_id}}", client.revoke_client_key, methods=["DELETE"]),
    ]
