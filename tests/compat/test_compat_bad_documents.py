"""The compatibility layers over a store holding a bad row (issue 12, section 1).

They follow a store like the client does (``flagstaff.compat._flags.FlagView``): one value that is
not UTF-8 (``UPDATE flagstaff_flags SET raw=X'FFFE00'``) must leave them answering, the other flags
updating, and the flag back once repaired.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flagstaff.compat.hanoi import MemoryBackEnd, Rollout, RolloutException
from flagstaff.compat.reddit import Features
from flagstaff.stores.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(60)


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _sql(db: Path, statement: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement)
    conn.close()


def test_reddit_and_hanoi_layers_keep_following_past_a_bad_row(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    url = f"sqlite:///{db}?poll=0.02"
    writer = SQLiteStore(str(db))
    writer.put("a", '"on"')
    writer.put("b", '"off"')
    features = Features(url)
    backend = MemoryBackEnd(url)
    rollout = Rollout(backend)
    try:
        assert features.is_enabled("a") and rollout.is_enabled("a", 7)
        _sql(db, "UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
        writer.put("b", '"on"')
        _until(lambda: features.is_enabled("b") and rollout.is_enabled("b", 7))
        assert features.is_enabled("a") and rollout.is_enabled("a", 7)  # the last good version
        with pytest.raises(RolloutException, match="not UTF-8"):
            rollout.set_percentage("a", 50)  # an edit of what cannot be read: refused, nothing written
        record = writer.get("a")
        assert record is not None and record.version == 2
        writer.put("a", '"off"')  # the repair
        _until(lambda: not features.is_enabled("a") and not rollout.is_enabled("a", 7))
    finally:
        features.close()
        backend.close()
        writer.close()
