"""``flags``: the current request's flags, for code that has no client at hand.

::

    from flagstaff.integrations import flags

    def render_sidebar():
        if flags.is_enabled("new_sidebar"):      # no client, no context passed down
            ...

Inside a request served through one of the integrations (or inside any
``with client.scope(ctx):`` block) ``flags`` answers from that request's
:class:`~flagstaff.scope.Scope`: one snapshot, one clock reading, the request's
context, however deep in the call stack the check is. The scope is held in a
:class:`contextvars.ContextVar`, so each thread, greenlet and asyncio task sees
its own request.

Outside a request (a cron job, a shell, start-up code) ``flags`` falls back to
the client given to :meth:`CurrentFlags.use` (every integration registers its
client there) with an empty context: an anonymous visitor, so only flags that
are on for everyone are on. With no scope and no client every flag is off with
``Reason.ERROR``. Like the client, ``flags`` never raises.
"""

from __future__ import annotations

from flagstaff.client import Client
from flagstaff.context import ContextLike
from flagstaff.decision import Decision, Reason
from flagstaff.scope import Scope, current_scope

__all__ = ["CurrentFlags", "flags"]

_NO_CLIENT = "no flagstaff client: serve the request through an integration or call flags.use(client)"


class CurrentFlags:
    """The flags of the current request (see the module docstring)."""

    __slots__ = ("_client",)

    def __init__(self) -> None:
        self._client: Client | None = None

    def use(self, client: Client | None) -> None:
        """Answer from ``client`` outside a request (``None``: forget it)."""
        self._client = client

    @property
    def client(self) -> Client | None:
        """The fallback client, if one was registered."""
        return self._client

    @property
    def scope(self) -> Scope | None:
        """The current request's scope, or ``None`` outside a request."""
        return current_scope()

    def evaluate(self, name: str, context: ContextLike = None) -> Decision:
        """The decision for ``name``: the current request's, or for ``context``
        against the request's pinned snapshot. Never raises."""
        scope = current_scope()
        if scope is not None:
            return scope.evaluate(name, context)
        client = self._client
        if client is None:
            return Decision(name, False, Reason.ERROR, error=_NO_CLIENT)
        return client.evaluate(name, context)

    def is_enabled(self, name: str, context: ContextLike = None) -> bool:
        """Whether ``name`` is on for the current request (or ``context``)."""
        return self.evaluate(name, context).enabled

    def variant(self, name: str, context: ContextLike = None) -> str | None:
        """The variant of ``name`` for the current request (or ``context``)."""
        return self.evaluate(name, context).variant

    def all(self, context: ContextLike = None) -> dict[str, Decision]:
        """Every flag's decision for the current request (or ``context``)."""
        scope = current_scope()
        if scope is not None:
            return scope.all(context)
        client = self._client
        return {} if client is None else client.all(context)

    def __repr__(self) -> str:
        scope = current_scope()
        return f"<CurrentFlags scope={scope!r} client={self._client!r}>"


flags = CurrentFlags()
"""The module-level instance every integration and template helper uses."""
