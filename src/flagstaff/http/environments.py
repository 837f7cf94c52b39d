"""Environments: one server over several namespaces (development, staging, production).

Each environment is a name and a store URL (a store URL may itself be a prefix in
a shared backend, ``zookeeper://zk/flags/staging``). The first one is the
*default*: it keeps the URLs of a single-store server (``/api/v1/flags``, ``/``).
Every environment, the default included, is also served under its name:

* pages under ``/envs/{env}/`` (``/envs/staging/flags/checkout``);
* the API under ``/api/v1/envs/{env}/...`` (``/api/v1/envs/staging/flags``), and
  also under ``/envs/{env}/api/v1/...``, which is what the dashboard's script calls.

Why a path prefix rewritten in front of the router (:class:`EnvironmentRouter`)
rather than a query parameter or a mounted app per environment: a prefix keeps
every handler, page link and script URL unchanged (they are written against the
request's ``root_path``, which the router extends to ``/envs/{env}``), a query
parameter would have to be carried by every link and form, and mounted sub-apps
would each bring their own rate limiter, session secret and middleware. The
router picks the environment's :class:`~flagstaff.http.state.ServerState` and
puts it in the ASGI scope, where :func:`~flagstaff.http.state.state_of` finds it:
handlers never know which environment they serve.

What environments share: the token and user databases, the session secret, the
rate limiter. What each has: its store, client, event stream and event store
(``/envs/{env}/metrics`` and ``/envs/{env}/healthz`` report on it).

Permissions are per environment (:meth:`flagstaff.http.tokens.Principal.level_in`):
a token may be limited to some environments, a user holds a role in each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flagstaff.errors import FlagstaffError

# Types only: this module is read by the CLI on a core install (no Starlette).
if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import ASGIApp, Receive, Send
    from starlette.types import Scope as ASGIScope

    from flagstaff.http.state import ServerState

__all__ = [
    "BASE_KEY",
    "DEFAULT",
    "ENV_KEY",
    "STATE_KEY",
    "Environment",
    "EnvironmentConfigError",
    "EnvironmentRouter",
    "Environments",
    "check_name",
    "checked",
    "current",
    "env_root",
    "environments_of",
    "load_environments",
    "parse_environment",
    "split_env_path",
    "switcher",
]

DEFAULT = "default"
"""The name of a single-store server's only environment."""

ENV_KEY = "flagstaff_env"
"""The ASGI scope key holding the request's environment name."""
STATE_KEY = "flagstaff_state"
"""The ASGI scope key holding the request's environment :class:`~flagstaff.http.state.ServerState`."""
BASE_KEY = "flagstaff_base"
"""The ASGI scope key holding the app's own root path (before ``/envs/{env}``): the cookie's path."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class EnvironmentConfigError(FlagstaffError, ValueError):
    """An environment option, file or name is malformed, or names an unknown environment."""


@dataclass(frozen=True, slots=True)
class Environment:
    """One environment: its name, the URL of its store, and whether its flag writes need
    an approved change request (docs/changes.md)."""

    name: str
    url: str
    requires_approval: bool = False
    requires_comment: bool = False


def check_name(name: str) -> str:
    """``name`` if it may name an environment (lower case letters, digits, ``-``, ``_``; 1 to 32)."""
    if not _NAME.fullmatch(name):  # fullmatch: "$" would let a trailing newline through
        raise EnvironmentConfigError(
            f"bad environment name {name!r}: use 1 to 32 lower-case letters, digits, '-' or '_'"
        )
    return name


def parse_environment(text: str) -> Environment:
    """``NAME=URL`` (the ``--env`` option) as an :class:`Environment`."""
    name, sep, url = text.partition("=")
    if not sep or not url.strip():
        raise EnvironmentConfigError(
            f"--env takes NAME=URL (e.g. staging=sqlite:///staging.db), not {text!r}"
        )
    return Environment(check_name(name.strip()), url.strip())


def load_environments(path: str) -> list[Environment]:
    """The environments of a JSON file, in order (the first is the default).

    Either an object ``{"production": "URL", "staging": "URL"}`` or a list of
    ``{"name": ..., "url": ..., "requires_approval": true}`` objects
    (``requires_approval`` optional: writes there need an approved change request;
    ``requires_comment`` optional: every change there must say why).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise EnvironmentConfigError(f"cannot read the environments file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise EnvironmentConfigError(f"the environments file {path} is not JSON: {exc}") from None
    entries: list[tuple[Any, Any, Any, Any]]
    keys = {"name", "url", "requires_approval", "requires_comment"}
    if isinstance(data, dict):
        entries = [(name, url, False, False) for name, url in data.items()]
    elif isinstance(data, list) and all(
        isinstance(i, dict) and {"name", "url"} <= set(i) <= keys for i in data
    ):
        entries = [
            (i["name"], i["url"], i.get("requires_approval", False), i.get("requires_comment", False))
            for i in data
        ]
    else:
        raise EnvironmentConfigError(
            f"{path}: expected an object of name -> store URL, or a list of "
            "{name, url[, requires_approval][, requires_comment]} objects"
        )
    out = []
    for name, url, approval, comment in entries:
        if not isinstance(name, str) or not isinstance(url, str) or not url.strip():
            raise EnvironmentConfigError(f"{path}: environment {name!r} needs a store URL (a string)")
        for key, value in (("requires_approval", approval), ("requires_comment", comment)):
            if not isinstance(value, bool):
                raise EnvironmentConfigError(f"{path}: environment {name!r}: {key} must be true or false")
        out.append(Environment(check_name(name), url.strip(), approval, comment))
    return checked(out)


def checked(environments: list[Environment]) -> list[Environment]:
    """``environments`` if there is at least one and no name is given twice."""
    if not environments:
        raise EnvironmentConfigError("no environment given")
    seen: set[str] = set()
    for env in environments:
        if env.name in seen:
            raise EnvironmentConfigError(f"environment {env.name!r} is given twice")
        seen.add(env.name)
    return environments


def env_root(base: str, name: str, default: str) -> str:
    """The root of an environment's pages: ``base`` for the default one, else ``base/envs/NAME``."""
    return base if name == default else f"{base}/envs/{name}"


def split_env_path(route_path: str) -> tuple[str, str] | None:
    """``(env, rest)`` for a path naming an environment (``/envs/E/rest`` or
    ``/api/v1/envs/E/rest``, rest rewritten to ``/api/v1/rest``), else ``None``."""
    if route_path.startswith("/api/v1/envs/"):
        env, _, rest = route_path[len("/api/v1/envs/") :].partition("/")
        return env, "/api/v1" + ("/" + rest if rest else "")
    if route_path.startswith("/envs/"):
        env, slash, rest = route_path[len("/envs/") :].partition("/")
        return env, slash + rest
    return None


class Environments:
    """The environments an app serves, in order: name -> :class:`ServerState`; the first is the default."""

    def __init__(self, states: Mapping[str, ServerState]) -> None:
        if not states:
            raise EnvironmentConfigError("no environment given")
        self.states = dict(states)
        self.default = next(iter(self.states))

    @property
    def names(self) -> list[str]:
        return list(self.states)

    def __len__(self) -> int:
        return len(self.states)

    def get(self, name: str) -> ServerState | None:
        return self.states.get(name)

    def close(self) -> None:
        """Close every environment's state, the default first (it revokes the login link's
        token in the shared token database, which the others' close then closes too)."""
        for state in self.states.values():
            state.close()


def environments_of(request: Request) -> Environments:
    envs: Environments = request.app.state.environments
    return envs


def current(request: Request) -> str:
    """The name of the environment ``request`` is in (the default one outside ``/envs/...``)."""
    name = request.scope.get(ENV_KEY)
    return name if isinstance(name, str) else environments_of(request).default


class EnvironmentRouter:
    """Puts each request in its environment, before routing (pure ASGI).

    ``/envs/{env}/rest`` and ``/api/v1/envs/{env}/rest`` are both served as ``rest``
    (``/api/v1/rest``) with ``root_path`` extended by ``/envs/{env}`` and the
    environment's state in the scope; anything else is in the default environment.
    An unknown environment is 404 before any handler runs.
    """

    def __init__(self, app: ASGIApp, environments: Environments) -> None:
        self.app = app
        self.environments = environments

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        base = str(scope.get("root_path", ""))
        path = str(scope["path"])
        route_path = path[len(base) :] if base and path.startswith(base) else path
        scope[BASE_KEY] = base
        split = split_env_path(route_path)
        if split is None:
            scope[ENV_KEY] = self.environments.default
            scope[STATE_KEY] = self.environments.states[self.environments.default]
            await self.app(scope, receive, send)
            return
        name, rest = split
        state = self.environments.get(name)
        if state is None:
            known = ", ".join(self.environments.names)
            body = json.dumps({"error": f"no environment {name!r} (known: {known})"}).encode()
            await _answer(send, 404, [(b"content-type", b"application/json")], body)
        elif not rest:  # /envs/staging: the pages are under /envs/staging/
            await _answer(send, 307, [(b"location", f"{base}/envs/{name}/".encode())], b"")
        else:
            root = f"{base}/envs/{name}"
            scope = {**scope, "root_path": root, "path": root + rest}
            # raw_path (the path as sent, still percent-encoded) gets the same prefix rewrite.
            raw = scope.get("raw_path")
            sent = f"{base}/api/v1/envs/{name}".encode()
            if isinstance(raw, bytes) and raw.startswith(sent):
                scope["raw_path"] = f"{root}/api/v1".encode() + raw[len(sent) :]
            scope[ENV_KEY] = name
            scope[STATE_KEY] = state
            await self.app(scope, receive, send)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def switcher(request: Request, readable: Mapping[str, bool]) -> list[dict[str, Any]]:
    """The header's environment links: ``[{name, url, current}]`` for the environments
    ``readable`` says the caller may see (empty for a single environment)."""
    envs = environments_of(request)
    if len(envs) < 2:
        return []
    base = str(request.scope.get(BASE_KEY, request.scope.get("root_path", ""))).rstrip("/")
    here = current(request)
    return [
        {"name": name, "url": env_root(base, name, envs.default) + "/", "current": name == here}
        for name in envs.names
        if readable.get(name, False)
    ]
