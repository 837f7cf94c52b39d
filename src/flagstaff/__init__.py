"""flagstaff: feature flags and experiments, evaluated from an in-memory snapshot."""

from flagstaff.client import Client, Options, SnapshotChange, State, Status, ValueDetails, connect
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.errors import (
    ClientError,
    ConflictError,
    FlagstaffError,
    InUseError,
    NotFoundError,
    StoreError,
    StoreUnavailable,
    UnsupportedStoreURL,
    ValidationError,
    WriteOutcomeUnknown,
)
from flagstaff.evaluate import evaluate
from flagstaff.model import Flag, parse_flag
from flagstaff.scope import Scope
from flagstaff.segments import Segment, parse_segment
from flagstaff.snapshot import Snapshot

__all__ = [
    "Client",
    "ClientError",
    "ConflictError",
    "Context",
    "Decision",
    "Flag",
    "FlagstaffError",
    "InUseError",
    "NotFoundError",
    "Options",
    "Reason",
    "Scope",
    "Segment",
    "Snapshot",
    "SnapshotChange",
    "State",
    "Status",
    "StoreError",
    "StoreUnavailable",
    "UnsupportedStoreURL",
    "ValidationError",
    "ValueDetails",
    "WriteOutcomeUnknown",
    "connect",
    "evaluate",
    "parse_flag",
    "parse_segment",
]
__version__ = "0.1.0"
