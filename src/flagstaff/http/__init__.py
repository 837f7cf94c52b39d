"""flagstaff's HTTP server: the JSON API, the dashboard and ``flagstaff serve``.

Needs the ``server`` extra (``pip install 'flagstaff[server]'``). Build the ASGI
app with :func:`create_app` and run it with any ASGI server, or mount it in a
host application; see ``docs/server.md``.

Names are imported lazily, so that the CLI (``flagstaff token``) and
:mod:`flagstaff.http.tokens` work on a core install without Starlette.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flagstaff.http.app import ServerState, Settings, create_app
    from flagstaff.http.auth import Principal
    from flagstaff.http.tokens import Scope, TokenStore

__all__ = ["Principal", "Scope", "ServerState", "Settings", "TokenStore", "create_app"]

_HOMES = {
    "Principal": "flagstaff.http.auth",
    "Scope": "flagstaff.http.tokens",
    "ServerState": "flagstaff.http.app",
    "Settings": "flagstaff.http.app",
    "TokenStore": "flagstaff.http.tokens",
    "create_app": "flagstaff.http.app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flagstaff.http' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
