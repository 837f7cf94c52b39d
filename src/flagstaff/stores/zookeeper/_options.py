"""The ``zookeeper://`` URL: its options, the ACL it asks for, and keeping its secrets out of logs.

Credentials
    ``user:password@`` in the URL adds digest authentication. Nodes this store
    creates get the ACL: the writer (those credentials) may do everything;
    ``?readers=app:secret[,…]`` grants read to those digest users only,
    otherwise anyone may read. Application processes use the reader's
    credentials and may open the store with ``?readonly=1`` (through
    :func:`flagstaff.stores.open_store`, which wraps it in a
    :class:`~flagstaff.stores.wrappers.ReadOnlyStore`) to refuse writes locally;
    a write the server refuses raises :class:`StoreError` saying the credentials
    lack write permission. Passwords never appear in ``url``, logs or errors.

Options
    ``session_timeout`` (seconds, default 10), ``timeout`` (seconds an
    operation waits for the server, default 10), ``readers``.
"""

from __future__ import annotations

import collections
import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from kazoo.security import ACL, make_acl, make_digest_acl

from flagstaff.errors import UnsupportedStoreURL
from flagstaff.stores._url import redact_url

__all__ = ["KAZOO_LOG", "REDACT", "Options", "acl_for", "parse_url"]


@dataclass(frozen=True, slots=True)
class Options:
    hosts: str
    root: str
    user: str | None
    password: str | None
    readers: tuple[tuple[str, str], ...]
    session_timeout: float
    timeout: float

    @property
    def secrets(self) -> list[str]:
        """The passwords in the URL (the writer's and the readers'), to keep out of logs."""
        return [p for p in (self.password, *(p for _, p in self.readers)) if p]


def parse_url(url: str) -> Options:
    parts = urlsplit(url)
    if parts.scheme not in ("zookeeper", "zk"):
        raise UnsupportedStoreURL(f"not a zookeeper:// URL: {redact_url(url)!r}")
    netloc = parts.netloc
    user = password = None
    if "@" in netloc:
        cred, _, netloc = netloc.rpartition("@")
        user, sep, password = cred.partition(":")
        if not user or not sep:
            raise UnsupportedStoreURL("zookeeper:// credentials must be user:password@")
        user, password = unquote(user), unquote(password)
    if not netloc:
        raise UnsupportedStoreURL("a zookeeper:// URL needs host:port[,host:port...]")
    root = "/" + parts.path.strip("/")
    if root == "/":
        raise UnsupportedStoreURL(
            "a zookeeper:// URL needs a chroot below '/', e.g. zookeeper://host:2181/flags"
        )
    query = parse_qs(parts.query)

    def one(key: str, default: str) -> str:
        return query.get(key, [default])[-1]

    if one("readonly", "0").lower() in ("1", "true", "yes"):
        # open_store applies the option (a wrapper any store can use); a store built here
        # directly would otherwise accept the writes it was told to refuse.
        raise UnsupportedStoreURL(
            "readonly=1 is applied by flagstaff.stores.open_store "
            "(or wrap the store in flagstaff.stores.wrappers.ReadOnlyStore)"
        )

    readers: list[tuple[str, str]] = []
    for item in ",".join(query.get("readers", [])).split(","):
        if item:
            name, sep, secret = item.partition(":")
            if not name or not sep:
                raise UnsupportedStoreURL("readers= takes user:password pairs separated by commas")
            readers.append((name, secret))
    try:
        session_timeout = float(one("session_timeout", "10"))
        timeout = float(one("timeout", "10"))
    except ValueError:
        raise UnsupportedStoreURL("session_timeout= and timeout= take seconds") from None
    return Options(
        hosts=netloc,
        root=root,
        user=user,
        password=password,
        readers=tuple(readers),
        session_timeout=session_timeout,
        timeout=timeout,
    )


def acl_for(options: Options) -> list[ACL] | None:
    """The ACL of the nodes the store creates (None: kazoo's default, open)."""
    if options.user is None:
        return None
    acl = [make_digest_acl(options.user, options.password or "", all=True)]
    if options.readers:
        acl += [make_digest_acl(u, p, read=True) for u, p in options.readers]
    else:
        acl.append(make_acl("world", "anyone", read=True))
    return acl


class _Redact(logging.Filter):
    """Keeps credentials out of kazoo's debug logs (it logs auth packets verbatim)."""

    _AUTH = re.compile(r"auth='[^']*'")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: collections.Counter[str] = collections.Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._AUTH.sub("auth='***'", message)
        for secret in list(self.secrets):
            clean = clean.replace(secret, "***")
        if clean != message:
            record.msg, record.args = clean, ()
        return True


class _Quiet(logging.Filter):
    """kazoo warns once per reconnect attempt (43 lines in 10 s against a down server, on the
    CLI's stderr before its one error line). The store reports what matters itself (an
    operation that gives up raises StoreUnavailable; the client's state turns stale), so
    kazoo's warnings are shown only to whoever enabled debug logging for it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or KAZOO_LOG.isEnabledFor(logging.DEBUG)


#: The logger kazoo is given: filtered by :data:`REDACT` and quietened.
KAZOO_LOG = logging.getLogger("flagstaff.stores.zookeeper.kazoo")
#: The secrets of every open store (a counter: two stores may share one).
REDACT = _Redact()
KAZOO_LOG.addFilter(REDACT)
KAZOO_LOG.addFilter(_Quiet())
