"""The evaluate resource: decisions for a context, from the server's client snapshot.

The hot path of the API (its route is tried first). It reads the snapshot the
server's client holds, never the store, and counts the decisions it gives. Every
decision of one request comes from one snapshot and one clock reading (a
:class:`~flagstaff.scope.Scope`); the snapshot's flags are linked to its segments
and prerequisites, so a segment change reaches the answers in the same swap.

The context is flagstaff's (``user_id``, ``groups``, ...) or OpenFeature's: its
``targetingKey`` is the user id, and any other key is a free attribute that rules,
segments and ``bucket_by`` can read (``{"targetingKey": "u1", "org": "acme"}``).
Each decision carries ``value``, what the flag serves for it
(:meth:`flagstaff.model.Flag.value_of`: a variant's JSON value, else the variant,
else whether it is on).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.context import Context
from flagstaff.http.api._common import ApiError, fields, query, read_json
from flagstaff.http.auth import require
from flagstaff.http.state import state_of
from flagstaff.http.tokens import Permission

__all__ = ["TARGETING_KEY", "evaluate", "parse_context"]

_CONTEXT_TYPES: dict[str, tuple[type, ...]] = {
    "user_id": (str, type(None)),
    "user_name": (str, type(None)),
    "cookie_id": (str, type(None)),
    "subdomain": (str, type(None)),
    "location": (str, type(None)),
    "oauth_client": (str, type(None)),
    "logged_in": (bool,),
    "time": (int, float),
    "attributes": (dict,),
}


TARGETING_KEY = "targetingKey"
"""OpenFeature's name for the id a flag targets and buckets by: flagstaff's ``user_id``."""


def parse_context(raw: Any) -> Context:
    """A context from JSON, its documented fields type-checked (400 otherwise).

    ``targetingKey`` (OpenFeature) is the user id; giving it and a different
    ``user_id`` is 400. Keys that are not context fields become attributes.
    """
    if raw is None:
        return Context()
    if not isinstance(raw, dict):
        raise ApiError(400, "'context' must be an object (user_id, groups, attributes, ...) or null")
    if TARGETING_KEY in raw:
        raw = dict(raw)
        key = raw.pop(TARGETING_KEY)
        if key is not None and not isinstance(key, str):
            raise ApiError(400, f"invalid context: {TARGETING_KEY!r} must be a string")
        if "user_id" in raw and raw["user_id"] != key:
            raise ApiError(400, f"invalid context: {TARGETING_KEY!r} and 'user_id' name different users")
        raw["user_id"] = key
    for key, value in raw.items():
        types = _CONTEXT_TYPES.get(key)
        wrong_scalar = types is not None and (
            not isinstance(value, types) or (key == "time" and value is True)
        )
        wrong_list = key in ("groups", "features") and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
        if wrong_scalar or wrong_list or (key == "time" and isinstance(value, bool)):
            raise ApiError(400, f"invalid context: {key!r} has the wrong type")
    try:
        return Context.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"invalid context: {exc}") from None


async def evaluate(request: Request) -> Response:
    query(request)
    require(request, Permission.READ)
    state = state_of(request)
    body = fields(await read_json(request), (), ("context", "flag", "flags"))
    context = parse_context(body.get("context"))
    if "flag" in body and "flags" in body:
        raise ApiError(400, "give 'flag' (one) or 'flags' (several), not both")
    if "flag" in body:
        if not isinstance(body["flag"], str):
            raise ApiError(400, "'flag' must be a flag name")
        names: list[str] | None = [body["flag"]]
    elif "flags" in body:
        names = body["flags"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError(400, "'flags' must be a list of flag names")
    else:
        names = None
    # One snapshot and one clock for every decision (and for the revision reported).
    scope = state.client.scope(context)
    flags = scope.flags
    out: dict[str, dict[str, Any]] = {}
    for name in flags if names is None else names:
        decision = scope.evaluate(name)
        flag = flags.get(name)
        answer = decision.to_dict()
        answer["value"] = flag.value_of(decision) if flag is not None else None
        out[name] = answer
    state.metrics.inc("flagstaff_evaluations_total", len(out))
    return JSONResponse({"revision": scope.revision, "decisions": out})
