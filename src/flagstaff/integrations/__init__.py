"""flagstaff where Python web code runs: request scope, frameworks, templates.

* :data:`flags` answers for the current request from anywhere in its call stack
  (:mod:`flagstaff.integrations.current`).
* :mod:`~flagstaff.integrations.wsgi` and :mod:`~flagstaff.integrations.asgi`:
  middleware that pins one scope per request and sets the visitor cookie.
* :mod:`~flagstaff.integrations.flask` (Flask extension),
  :mod:`~flagstaff.integrations.django` (Django app),
  :mod:`~flagstaff.integrations.jinja2` and :mod:`~flagstaff.integrations.mako`
  (template helpers); each needs its extra (``flagstaff[flask]``...).
* :mod:`~flagstaff.integrations.openfeature`: flagstaff as an OpenFeature
  provider (``flagstaff[openfeature]``; ``docs/openfeature.md``).

This package imports no web framework; each framework module imports its own.
See ``docs/integrations.md``.
"""

from flagstaff.integrations.current import CurrentFlags, flags
from flagstaff.integrations.request import ContextHook, RequestOptions

__all__ = ["ContextHook", "CurrentFlags", "RequestOptions", "flags"]
