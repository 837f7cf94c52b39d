"""Errors raised by flagstaff.

Evaluation never raises: a flag that cannot be evaluated yields a decision with
``Reason.ERROR``. Everything else (parsing documents, writing to a store, the
CLI) raises one of these, never a bare ``Exception``::

    FlagstaffError
    ├── ValidationError          a flag document (or a context) is malformed
    ├── StoreError               a store could not do what was asked
    │   ├── ConflictError        compare-and-set lost: the flag changed meanwhile
    │   ├── NotFoundError        the flag does not exist
    │   ├── StoreUnavailable     the store cannot be reached (or is locked/full)
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
    "NotFoundError",
    "Problem",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedStoreURL",
    "ValidationError",
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


class UnsupportedStoreURL(StoreError, ValueError):
    """No store is registered for a URL's scheme, or the URL is malformed."""


class ClientError(FlagstaffError):
    """The client was used in a way it does not support."""
