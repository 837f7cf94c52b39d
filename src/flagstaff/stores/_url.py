"""One redactor for store URLs: what logs, status pages and error messages show.

Every store and the client show a URL through :func:`redact_url`, so a password
never reaches a log line by one path that another path masked.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

__all__ = ["redact_url"]


def redact_url(url: str) -> str:
    """``url`` without its secrets, for logs and status: the password of the
    user part (``redis://user:***@host``), and query values whose name says
    password, token, secret, key or auth, or that list credentials (ZooKeeper's
    ``readers=user:password,…``). Everything else is shown as given (hosts,
    several ``host:port`` of an ensemble, other options)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, at, hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
        query = parts.query
        if query:
            query = "&".join(_redact_pair(pair) for pair in query.split("&"))
        if netloc == parts.netloc and query == parts.query:
            return url
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:  # not parseable: show only the scheme
        return url.split(":", 1)[0] + "://***"


def _redact_pair(pair: str) -> str:
    key, eq, _ = pair.partition("=")
    name = unquote_plus(key)
    if eq and (_SECRET_PARAM.search(name) or name.lower() in _CREDENTIAL_LISTS):
        return f"{key}=***"
    return pair


_SECRET_PARAM = re.compile(r"pass|token|secret|key|auth", re.IGNORECASE)
# Options whose value holds passwords under a name that does not say so.
_CREDENTIAL_LISTS = frozenset({"readers"})
