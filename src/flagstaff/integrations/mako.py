"""Mako helpers: reddit's ``feature.is_enabled('x')`` inside Mako templates.

reddit's templates imported ``feature`` and asked it directly::

    %if feature.is_enabled('new_sidebar'):
      <%include file="sidebar_v2.html"/>
    %endif

Give a :class:`mako.lookup.TemplateLookup` the :data:`IMPORTS` line (or use
:func:`lookup`) and every template has ``feature``, which is
:data:`flagstaff.integrations.flags`: it answers for the request being served
(its scope), and outside a request from the fallback client.
"""

from __future__ import annotations

from typing import Any

from flagstaff._extras import missing_extra

try:
    from mako.lookup import TemplateLookup
except ModuleNotFoundError as _exc:
    raise missing_extra(_exc, "mako", "mako", "flagstaff.integrations.mako") from None


from flagstaff.integrations.current import flags

__all__ = ["IMPORTS", "feature", "lookup"]

feature = flags
"""What templates call: ``feature.is_enabled('x')``, ``feature.variant('x')``."""

IMPORTS = ["from flagstaff.integrations.mako import feature"]
"""Module-level imports that put ``feature`` in every template."""


def lookup(directories: list[str], **kwargs: Any) -> TemplateLookup:
    """A ``TemplateLookup`` over ``directories`` whose templates have ``feature``
    (other keyword arguments go to ``TemplateLookup``)."""
    imports = [*IMPORTS, *kwargs.pop("imports", [])]
    return TemplateLookup(directories=directories, imports=imports, **kwargs)
