"""The client's on-disk copy of its last good snapshot.

A client started while its store cannot be reached serves this copy (state
``cached``) instead of nothing. The file holds the documents as text by store
key (flags by name, segments by ``segment:NAME``), not compiled flags, so it
is re-validated when read and stays readable by any later flagstaff version.

Guarantee: the file at ``path`` is always either absent, the previous complete
copy, or the new complete copy. A write goes to a temporary file in the same
directory, is flushed and fsynced, then renamed over ``path`` (atomic on
POSIX), and the directory is fsynced so the rename survives a power cut. A
process killed in the middle of :meth:`SnapshotCache.save` leaves at most a
stray ``*.tmp`` file, never a torn ``path``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

__all__ = ["CachedFlags", "SnapshotCache"]

log = logging.getLogger("flagstaff.client")

FORMAT = 1
"""Bumped if the layout of the file ever changes; other versions are ignored."""


@dataclass(frozen=True, slots=True)
class CachedFlags:
    """What a cache file holds: documents by store key (flag name or ``segment:NAME``),
    at a store revision."""

    revision: int
    documents: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    initialized: bool = True
    saved_at: float = 0.0
    store_url: str = ""


class SnapshotCache:
    """Reads and atomically writes one cache file. Safe to share between
    processes (each writes its own temporary file; the last rename wins)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SnapshotCache({str(self.path)!r})"

    def load(self) -> CachedFlags | None:
        """The cached flags, or ``None`` if there is no usable file (logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the snapshot cache %s: %s", self.path, exc)
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a flagstaff snapshot cache of format {FORMAT}")
            documents = data["documents"]
            if not isinstance(documents, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in documents.items()
            ):
                raise ValueError("'documents' must map store keys to document text")
            return CachedFlags(
                revision=int(data["revision"]),
                documents=MappingProxyType(documents),
                initialized=bool(data.get("initialized", True)),
                saved_at=float(data.get("saved_at", 0.0)),
                store_url=str(data.get("store_url", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the snapshot cache %s: %s", self.path, exc)
            return None

    def sweep(self) -> int:
        """Remove temporary files left by writers that died mid-write (their
        process is gone); returns how many were removed."""
        removed = 0
        for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            pid_text = tmp.name.removeprefix(f".{self.path.name}.").removesuffix(".tmp")
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            _unlink_quietly(tmp)
            removed += 1
        return removed

    def save(self, flags: CachedFlags) -> None:
        """Write ``flags`` atomically. Raises ``OSError`` (the caller logs it)."""
        payload = {
            "format": FORMAT,
            "revision": flags.revision,
            "initialized": flags.initialized,
            "saved_at": flags.saved_at or time.time(),
            "store_url": flags.store_url,
            "documents": dict(flags.documents),
        }
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        # One temporary name per process: a killed writer leaves at most one stray file.
        tmp = directory / f".{self.path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        os.close(fd)
        try:
            os.replace(tmp, self.path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_directory(directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot remove the temporary file %s: %s", path, exc)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable; some filesystems refuse to open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        log.debug("cannot open %s to fsync it: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        log.debug("cannot fsync %s: %s", directory, exc)
    finally:
        os.close(fd)
