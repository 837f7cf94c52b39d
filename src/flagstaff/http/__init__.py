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

# Not a hidden cycle: the names' types for checkers, while the modules load on first use.
if TYPE_CHECKING:
    from flagstaff.http.app import create_app
    from flagstaff.http.roles import Role
    from flagstaff.http.state import ServerState, Settings
    from flagstaff.http.tokens import Permission, Principal, TokenStore

__all__ = ["Permission", "Principal", "Role", "ServerState", "Settings", "TokenStore", "create_app"]

_HOMES = {
    "Permission": "flagstaff.http.roles",
    "Principal": "flagstaff.http.tokens",
    "Role": "flagstaff.http.roles",
    "ServerState": "flagstaff.http.state",
    "Settings": "flagstaff.http.state",
    "TokenStore": "flagstaff.http.tokens",
    "create_app": "flagstaff.http.app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'flagstaff.http' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
