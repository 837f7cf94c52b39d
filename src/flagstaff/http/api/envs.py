"""The environments resource: which environments there are, and promotion between them.

* ``GET /api/v1/envs``: every environment, the default first, with the caller's
  scope and role in each (``null``: no access).
* ``POST /api/v1/envs/{src}/flags/{name}/promote?to=DST&expect=V``: copy the flag's
  document from ``src`` to ``DST`` (:mod:`flagstaff.http.promote`). The caller needs
  read in ``src`` and write in ``DST``. Without ``expect`` (or with ``dry_run=true``)
  nothing is written: the answer is the plan (the diff, both versions, and the blast
  radius in ``DST`` when it has an event store), 428 without ``expect``, 200 for a
  dry run. With ``expect`` (the destination version the caller saw in the plan; ``0``:
  it had no such flag) the write is compare-and-set on it: a destination changed since
  is 409 with the new plan, never overwritten. ``source=V`` also pins the source version.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from flagstaff.blast import NoEventStore, blast_radius
from flagstaff.errors import FlagstaffError
from flagstaff.http.api._common import PREFIX, ApiError, call, flag_name, query, request_id, summary_of, write
from flagstaff.http.auth import identify, require
from flagstaff.http.environments import current, environments_of
from flagstaff.http.promote import Promotion, apply, plan
from flagstaff.http.roles import Permission
from flagstaff.http.state import ServerState, state_of

__all__ = ["list_environments", "promote", "routes"]

_BLAST_DAYS = 7.0


async def list_environments(request: Request) -> Response:
    query(request)
    raw = identify(request)  # the levels everywhere, whatever the one here
    envs = environments_of(request)
    items = []
    for name in envs.names:
        level = raw.level_in(name)
        items.append(
            {
                "name": name,
                "default": name == envs.default,
                "scope": None if level is None else level.label,
                "role": None if level is None else level.role,
            }
        )
    return JSONResponse({"environments": items, "default": envs.default})


def _version(params: dict[str, str], key: str) -> int | None:
    text = params.get(key)
    if text is None:
        return None
    if not text.isdigit():
        raise ApiError(400, f"{key!r} must be a version number (0: the flag does not exist there)")
    return int(text)


def _blast(target: ServerState, promotion: Promotion) -> tuple[dict[str, Any] | None, str | None]:
    """Who the promotion would move in the destination, from its event store (or why not)."""
    if target.events_db is None:
        return None, "no event store configured in the destination"
    if promotion.target_version == 0:
        return None, "the flag is new in the destination: nobody is served it yet"
    try:
        radius = blast_radius(
            target.client.snapshot,
            promotion.name,
            promotion.document,
            target.events_db,
            _BLAST_DAYS,
            time.time(),
        )
    except NoEventStore:
        return None, "nothing ingested in the destination yet"
    except (sqlite3.Error, FlagstaffError, KeyError, ValueError) as exc:
        return None, f"blast radius unavailable: {exc}"
    return radius.to_dict(), None


async def promote(request: Request) -> Response:
    params = query(request, "to", "expect", "source", "dry_run")
    require(request, Permission.READ)
    principal = identify(request)
    name = flag_name(request)
    source_env = current(request)
    target_env = params.get("to")
    if target_env is None:
        raise ApiError(400, "say where to promote to: ?to=ENVIRONMENT")
    envs = environments_of(request)
    target = envs.get(target_env)
    if target is None:
        raise ApiError(404, f"no environment {target_env!r} (known: {', '.join(envs.names)})")
    level = principal.level_in(target_env)
    if level is None or level < Permission.WRITE:
        has = "no access" if level is None else level.label
        raise ApiError(403, f"promoting to {target_env!r} needs write there; {principal.name!r} has {has}")
    dry_run = params.get("dry_run", "false")
    if dry_run not in ("true", "false"):
        raise ApiError(400, "'dry_run' must be true or false")
    expect = _version(params, "expect")
    pinned_source = _version(params, "source")
    source = state_of(request)
    promotion = await call(
        plan, name, source.store, target.store, source_env=source_env, target_env=target_env
    )
    radius, note = await call(_blast, target, promotion)
    answer = {**promotion.to_dict(), "blast": radius, "blast_note": note}
    if dry_run == "true":
        return JSONResponse(answer)
    if expect is None:
        answer["error"] = (
            f"promotion needs the destination version you reviewed: ?expect={promotion.target_version}"
        )
        return JSONResponse(answer, 428)
    stale = expect != promotion.target_version or (
        pinned_source is not None and pinned_source != promotion.source_version
    )
    if stale:
        answer["error"] = "changed since you looked: review this diff and retry with the new versions"
        answer["current_version"] = promotion.target_version
        return JSONResponse(answer, 409)
    admin = target.admin_for(principal, request_id(request))
    outcome = await call(write, target, admin, "promote", lambda: apply(promotion, source.store, admin))
    summary = await call(summary_of, target, name)
    return JSONResponse(
        {**summary, "changed": outcome.changed, "promoted": answer, "environment": target_env}
    )


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/envs", list_environments, methods=["GET"]),
        Route(f"{PREFIX}/flags/{{name}}/promote", promote, methods=["POST"]),
    ]
