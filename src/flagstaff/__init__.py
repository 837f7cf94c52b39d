"""flagstaff: feature flags and experiments, evaluated from an in-memory snapshot."""

from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import (
    ClientError,
    ConflictError,
    FlagstaffError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    ValidationError,
)
from flagstaff.evaluate import evaluate
from flagstaff.model import Flag, parse_flag

__all__ = [
    "ClientError",
    "ConflictError",
    "Context",
    "Decision",
    "Flag",
    "FlagstaffError",
    "NotFoundError",
    "Reason",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedStoreURL",
    "ValidationError",
    "evaluate",
    "parse_flag",
]
__version__ = "0.1.0"
