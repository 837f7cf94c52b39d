"""The users resource: the local user store over the API (admin only; docs/teams.md).

``GET /api/v1/users`` lists users (name, roles per environment, created, disabled; never a
password hash), ``POST`` creates one (the password hashed by
:func:`flagstaff.http.users.hash_password`, as ``flagstaff user add`` does), ``GET`` /
``PATCH`` / ``DELETE /api/v1/users/{name}`` read one, change it (``disabled``, ``roles``)
and remove it. Users are shared by every environment; these routes answer under any of them.

Who may: an admin of the request's environment, and, for a change, an admin of every
environment it touches: a role given or taken in ``E`` needs admin in ``E`` (``"*"``: in
every environment), and disabling, enabling or removing a user needs admin wherever that
user has a role. So an admin of staging manages staging's people and nobody else's access.
Nobody disables or removes themselves (the last admin would lock everyone out).

Every accepted change is a line of the audit log (``flagstaff.audit``, ``action``
``user.create``, ``user.disable``, ``user.enable``, ``user.roles``, ``user.delete``), the
author naming the caller as history entries do.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.http.api._common import ApiError, fields, query, read_json, request_id
from flagstaff.http.auth import identify, require
from flagstaff.http.environments import environments_of
from flagstaff.http.roles import Permission, RoleError
from flagstaff.http.state import audit_log, author_text, state_of
from flagstaff.http.tokens import Principal
from flagstaff.http.users import User, UserError, UserStore

__all__ = ["create_user", "delete_user", "get_user", "list_users", "patch_user"]


def _users(request: Request) -> UserStore:
    users = state_of(request).users
    if users is None:
        raise ApiError(501, "this server has no user store")
    return users


def _roles(request: Request, value: Any, *, removals: bool) -> dict[str, Permission | None]:
    """``{"staging": "editor", "*": "viewer"}`` checked: known environments or ``*``, known
    roles (``null`` takes a role away, where ``removals``)."""
    if not isinstance(value, dict):
        raise ApiError(400, "'roles' must be an object of environment (or '*') -> role")
    known = environments_of(request).names
    out: dict[str, Permission | None] = {}
    for env, role in value.items():
        if env != "*" and env not in known:
            raise ApiError(400, f"unknown environment {env!r} (known: {', '.join(known)}, or '*')")
        if role is None and removals:
            out[env] = None
            continue
        if not isinstance(role, str):
            what = "a role name or null" if removals else "a role name"
            raise ApiError(400, f"the role for {env!r} must be {what}")
        try:
            out[env] = Permission.parse(role)
        except RoleError as exc:
            raise ApiError(400, str(exc)) from None
    return out


def _need_admin(request: Request, principal: Principal, envs: list[str], doing: str) -> None:
    """403 unless ``principal`` is admin in each of ``envs`` (``*``: every environment)."""
    known = environments_of(request).names
    for env in dict.fromkeys(e for each in envs for e in (known if each == "*" else [each])):
        level = principal.level_in(env)
        if level is None or level < Permission.ADMIN:
            raise ApiError(403, f"{doing} needs admin in {env!r}; {principal.name!r} is not admin there")


def _audit(request: Request, principal: Principal, action: str, user: str, **details: Any) -> None:
    who = author_text(principal, request_id(request))
    audit_log.info(
        "user %s %s by %s",
        user,
        action,
        who,
        extra={"action": f"user.{action}", "author": who, "user": user, **details},
    )


async def _target(request: Request, users: UserStore) -> User:
    name = request.path_params["name"]
    user = await run_in_threadpool(users.get, name)
    if user is None:
        raise ApiError(404, f"no user named {name!r}")
    return user


def _yourself(principal: Principal, user: User, doing: str) -> None:
    if principal.via == "user" and principal.name == user.name:
        raise ApiError(409, f"you cannot {doing} yourself: another admin can")


async def list_users(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    listed = await run_in_threadpool(_users(request).list)
    return JSONResponse({"users": [u.to_dict() for u in listed]})


async def get_user(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    return JSONResponse((await _target(request, _users(request))).to_dict())


async def create_user(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    principal = identify(request)  # its levels in every environment
    users = _users(request)
    body = fields(await read_json(request), ("name", "password"), ("roles",))
    if not isinstance(body["name"], str) or not isinstance(body["password"], str):
        raise ApiError(400, "'name' and 'password' must be strings")
    roles = _roles(request, body.get("roles", {}), removals=False)
    _need_admin(request, principal, list(roles), f"giving {body['name']!r} a role")
    if await run_in_threadpool(users.get, body["name"]) is not None:
        raise ApiError(409, f"there is already a user named {body['name']!r}")
    granted = {env: level for env, level in roles.items() if level is not None}
    try:
        user = await run_in_threadpool(users.add, body["name"], body["password"], granted)
    except UserError as exc:
        status = 409 if "already a user" in str(exc) else 400
        raise ApiError(status, str(exc)) from None
    _audit(request, principal, "create", user.name, roles={e: lv.role for e, lv in user.roles})
    return JSONResponse(user.to_dict(), 201)


async def patch_user(request: Request) -> Response:
    """``{"disabled"?: bool, "roles"?: {env: role | null}}``: roles are merged (``null``
    takes one away); both in one request are checked before either is applied."""
    query(request)
    require(request, Permission.ADMIN)
    principal = identify(request)
    users = _users(request)
    body = fields(await read_json(request), (), ("disabled", "roles"))
    if not body:
        raise ApiError(400, "nothing to change: send 'disabled' and/or 'roles'")
    user = await _target(request, users)
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise ApiError(400, "'disabled' must be true or false")
    roles = _roles(request, body["roles"], removals=True) if "roles" in body else {}
    _need_admin(request, principal, list(roles), f"changing {user.name!r}'s roles")
    if isinstance(disabled, bool) and disabled != user.disabled:
        doing = "disabling" if disabled else "enabling"
        _need_admin(request, principal, [env for env, _ in user.roles], f"{doing} {user.name!r}")
        if disabled:
            _yourself(principal, user, "disable")
    held = dict(user.roles)
    changed = {env: level for env, level in roles.items() if held.get(env) != level}
    for env, level in changed.items():
        user = await run_in_threadpool(users.set_role, user.name, env, level)
    if changed:
        _audit(
            request,
            principal,
            "roles",
            user.name,
            changed={e: None if lv is None else lv.role for e, lv in changed.items()},
            roles={e: lv.role for e, lv in user.roles},
        )
    if isinstance(disabled, bool) and disabled != user.disabled:
        user = await run_in_threadpool(users.set_disabled, user.name, disabled)
        _audit(request, principal, "disable" if disabled else "enable", user.name)
    return JSONResponse(user.to_dict())


async def delete_user(request: Request) -> Response:
    query(request)
    require(request, Permission.ADMIN)
    principal = identify(request)
    users = _users(request)
    user = await _target(request, users)
    _need_admin(request, principal, [env for env, _ in user.roles], f"removing {user.name!r}")
    _yourself(principal, user, "remove")
    try:
        await run_in_threadpool(users.remove, user.name)
    except UserError as exc:  # removed meanwhile
        raise ApiError(404, str(exc)) from None
    _audit(request, principal, "delete", user.name)
    return Response(status_code=204)
