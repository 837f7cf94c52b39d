"""The on-disk snapshot cache: round trip, unreadable files, and crash safety."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flagstaff.cache import CachedFlags, SnapshotCache

pytestmark = pytest.mark.timeout(120)


def test_round_trip(tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "sub" / "flags.json")
    assert cache.load() is None
    cache.save(CachedFlags(7, {"a": "on", "b": '{"users":["é"]}'}, True, 123.5, "memory://x"))
    loaded = cache.load()
    assert loaded is not None
    assert loaded.revision == 7
    assert dict(loaded.documents) == {"a": "on", "b": '{"users":["é"]}'}
    assert loaded.saved_at == 123.5
    assert loaded.store_url == "memory://x"
    assert not list((tmp_path / "sub").glob("*.tmp"))


@pytest.mark.parametrize(
    "content",
    ["", "{", "[]", '{"format": 99, "revision": 1, "documents": {}}', '{"format": 1, "documents": {"a": 1}}'],
)
def test_unusable_files_are_ignored_and_logged(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(content)
    with caplog.at_level(logging.WARNING, logger="flagstaff.client"):
        assert SnapshotCache(path).load() is None
    assert any("ignoring the snapshot cache" in r.getMessage() for r in caplog.records)


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    cache = SnapshotCache(path)
    cache.save(CachedFlags(1, {"a": "on"}))
    with pytest.raises(TypeError):
        cache.save(CachedFlags(2, {"a": object()}))  # type: ignore[dict-item]
    loaded = cache.load()
    assert loaded is not None and loaded.revision == 1


WRITER = textwrap.dedent(
    """
    import sys, time
    from flagstaff.cache import CachedFlags, SnapshotCache
    cache = SnapshotCache(sys.argv[1])
    deadline = time.monotonic() + 20
    revision = 0
    while time.monotonic() < deadline and revision < 100_000:
        revision += 1
        docs = {f"flag_{i}": '{"percentage": %d}' % ((i + revision) % 100) for i in range(3000)}
        cache.save(CachedFlags(revision, docs))
        if revision == 1:
            print("ready", flush=True)
    """
)


@pytest.mark.slow
def test_killing_a_writer_never_leaves_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    rng = random.Random(1234)
    revisions = []
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        loaded = SnapshotCache(path).load()
        assert loaded is not None, "the cache file was left unreadable"
        assert len(loaded.documents) == 3000
        # Every document belongs to the same write: the file is never a mix.
        r = loaded.revision
        assert loaded.documents["flag_0"] == f'{{"percentage": {r % 100}}}'
        assert loaded.documents["flag_2999"] == f'{{"percentage": {(2999 + r) % 100}}}'
        revisions.append(r)
    assert len(revisions) == 12
    # The killed writers' temporary files are swept (their processes are gone).
    leftovers = list(tmp_path.glob(".flags.json.*.tmp"))
    assert SnapshotCache(path).sweep() == len(leftovers)
    assert not list(tmp_path.glob(".flags.json.*.tmp"))


def test_sweep_keeps_a_live_writers_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    mine = tmp_path / f".flags.json.{os.getpid()}.tmp"
    mine.write_text("partial")
    assert SnapshotCache(path).sweep() == 0
    assert mine.exists()
