"""flagstaff: feature flags and experiments, evaluated from an in-memory snapshot."""

from flagstaff.client import Client, Options, SnapshotChange, State, Status, connect
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
from flagstaff.scope import Scope
from flagstaff.snapshot import Snapshot

__all__ = [
    "Client",
    "ClientError",
    "ConflictError",
    "Context",
    "Decision",
    "Flag",
    "FlagstaffError",
    "NotFoundError",
    "Options",
    "Reason",
    "Scope",
    "Snapshot",
    "SnapshotChange",
    "State",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedStoreURL",
    "ValidationError",
    "connect",
    "evaluate",
    "parse_flag",
]
__version__ = "0.1.0"
