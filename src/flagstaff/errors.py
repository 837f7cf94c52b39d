"""Errors raised by flagstaff.

Evaluation never raises: a flag that cannot be evaluated yields a decision with
``Reason.ERROR``. Everything else (parsing documents, writing to a store, the
CLI) raises one of these, never a bare ``Exception``::

    FlagstaffError
    ├── ValidationError          a flag document (or a context) is malformed
    ├── InUseError               a delete refused: other flags still name the document
    ├── StoreError               a store could not do what was asked
    │   ├── ConflictError        compare-and-set lost: the flag changed meanwhile
    │   ├── NotFoundError        the flag does not exist
    │   ├── StoreUnavailable     the store cannot be reached (or is locked/full)
    │   │   └── WriteOutcomeUnknown  a write was sent, its answer lost: it may have applied
    │   └── UnsupportedStoreURL  no store is registered for the URL's scheme
    └── ClientError              the client was misused (closed, bad arguments)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ClientError",
    "ConflictError",
    "FlagstaffError",
    "InUseError",
    "NotFoundError",
    "Problem",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedStoreURL",
    "ValidationError",
    "WriteOutcomeUnknown",
]


class FlagstaffError(Exception):
    """Root of every error flagstaff raises."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (a dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ValidationError(FlagstaffError, ValueError):
    """A flag document is invalid. ``problems`` lists every field at fault."""

    def __init__(self, problems: Sequence[Problem], *, flag: str | None = None) -> None:
        self.problems = tuple(problems)
        self.flag = flag
        head = f"invalid flag {flag!r}" if flag else "invalid flag document"
        body = "; ".join(str(p) for p in self.problems) or "unknown problem"
        super().__init__(f"{head}: {body}")


class InUseError(FlagstaffError):
    """A delete was refused: other flags still name the document (a segment they use, or a
    flag they require). ``used_by`` are those flags, sorted; nothing was deleted. The CLI
    exits 1; the HTTP API answers 409 with them in ``used_by``."""

    def __init__(
        self, name: str, used_by: Sequence[str], *, what: str = "flag", how: str = "required"
    ) -> None:
        self.name = name
        self.used_by = tuple(used_by)
        n = len(self.used_by)
        listed = ", ".join(repr(u) for u in self.used_by)
        flags = "flag" if n == 1 else "flags"
        super().__init__(f"{what} {name!r} is {how} by {n} {flags}: {listed}; remove it from them first")


class StoreError(FlagstaffError):
    """A store operation failed."""


class ConflictError(StoreError):
    """Compare-and-set failed: the flag's version is not the one expected."""

    def __init__(self, name: str, expected: int | None, actual: int | None) -> None:
        self.name = name
        self.expected = expected
        self.actual = actual
        super().__init__(f"flag {name!r} changed meanwhile: expected version {expected}, found {actual}")


class NotFoundError(StoreError, KeyError):
    """The flag does not exist in the store."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no flag named {name!r}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class StoreUnavailable(StoreError):
    """The store cannot be reached, is locked, or is out of space."""


class WriteOutcomeUnknown(StoreUnavailable):
    """A write reached the store but its answer was lost (connection cut, timeout).

    The store may or may not have applied it, so it is neither "done" nor "failed"; the
    store did not send it again on its own, since a blind resend could apply it twice.
    Read the flag to find out, or retry with the same ``expect``: compare-and-set then
    either applies it once or refuses because the first attempt already did.
    """


class UnsupportedStoreURL(StoreError, ValueError):
    """No store is registered for a URL's scheme, or the URL is malformed."""


class ClientError(FlagstaffError):
    """The client was used in a way it does not support."""
