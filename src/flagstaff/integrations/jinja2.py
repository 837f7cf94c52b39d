"""Jinja2 helpers: flag checks inside templates.

::

    from flagstaff.integrations.jinja2 import install
    install(env)

    {% if feature.is_enabled("new_sidebar") %}...{% endif %}
    {% if "new_sidebar" is flag_enabled %}...{% endif %}
    <body class="{{ feature.variant('theme') or 'classic' }}">

``feature`` is :data:`flagstaff.integrations.flags`, so templates rendered
during a request answer for that request (its scope), outside one from the
fallback client. The Flask extension calls :func:`install` on the app's
environment itself.
"""

from __future__ import annotations

from typing import Any

from flagstaff._extras import missing_extra

try:
    from jinja2 import Environment, pass_context
except ModuleNotFoundError as _exc:
    raise missing_extra(_exc, "jinja2", "jinja2", "flagstaff.integrations.jinja2") from None


from flagstaff.integrations.current import flags

__all__ = ["install"]


@pass_context  # also stops Jinja folding `"x" is flag_enabled` into a constant at compile time
def _flag_enabled(context: Any, name: str) -> bool:
    return flags.is_enabled(name)


def install(env: Environment, name: str = "feature") -> Environment:
    """Add the ``name`` global (default ``feature``) and the ``flag_enabled``
    test to ``env``; returns ``env``."""
    env.globals[name] = flags
    env.tests["flag_enabled"] = _flag_enabled
    return env
