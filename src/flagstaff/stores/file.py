"""``file:///path/flags.json``: every flag in one hand-editable document, watched.

URL forms::

    file:///etc/app/flags.json         absolute path (JSON)
    file:///etc/app/flags.yaml         YAML (needs the ``yaml`` extra); also .yml
    file:flags.json                    relative to the working directory
    file:///etc/app/flags.json?poll=0.1

The document is an object mapping flag names to flag documents::

    {"new-checkout": {"enabled": true, "percentage": 10}, "dark-mode": "on"}

A record's ``raw`` is the canonical JSON of its value
(:func:`flagstaff.model.encode_document`), so ``put`` accepts any document
text (JSON, or bare ``on``/``off``) and refuses anything else with
``ValidationError``: the file holds documents, not text.

Versions, revisions and history live in a sidecar next to the file,
``.flags.json.flagstaff-meta.json``: a lineage id, the revision, each flag's
version and digest, and the last ``LOG_LIMIT`` changes (who, when, before,
after). Whoever first notices that the file differs from the sidecar's digests
(a hand edit, or a write that crashed between its two renames) records the
difference as changes, so versions and revisions hold across processes and
editors. Writes take an ``flock`` on ``.flags.json.flagstaff-lock``, check the
expected version, write a temp file in the same directory, fsync and rename
it over the file (then the sidecar, the same way): a reader sees the old file
or the new one, never half of one.

Watches poll the file's and the sidecar's ``stat`` (inode, size, mtime) every
``poll`` seconds. A broken edit (unparseable file) is logged and skipped: the
last good content is kept and served until the file parses again. A missing
file reads as empty and *uninitialized* (so a client keeps its flags), and its
watches get a :class:`~flagstaff.stores.base.Reset`. If the sidecar is lost or
replaced (a new lineage), or a watch fell more than ``LOG_LIMIT`` changes
behind, watches get a ``Reset`` too.

A read-only directory (a mounted ConfigMap) works for reading: versions are
then kept in memory by each process and writes raise ``StoreUnavailable``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from flagstaff.document import decode_document, encode_document
from flagstaff.errors import ConflictError, NotFoundError, StoreError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.runtime import Runtime, default_runtime
from flagstaff.stores._history import entries_to_trim, entry_fields
from flagstaff.stores._polling import PollingWatch
from flagstaff.stores.base import (
    Change,
    Disconnected,
    HistoryEntry,
    Record,
    Reset,
    StoreState,
    Watch,
    WatchEvent,
    Write,
    check_writes,
    is_text,
)

__all__ = ["FileStore"]

log = logging.getLogger("flagstaff.stores.file")

#: Changes kept in the sidecar (history, and replay for watches that fell behind)...
LOG_LIMIT = 500
#: ...and at most this much document text in them, so big documents cannot
#: make every write rewrite megabytes (the newest change is always kept).
LOG_TEXT_LIMIT = 1_000_000
META_FORMAT = 1

_Signature = tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int] | None]


class _Broken(Exception):
    """The flags file does not parse (internal: never leaves this module)."""


@dataclass(frozen=True, slots=True)
class _State:
    """What the file and sidecar said at one signature."""

    signature: _Signature
    lineage: str
    revision: int
    exists: bool
    values: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Record] = field(default_factory=dict)
    log: tuple[HistoryEntry, ...] = ()
    more: dict[int, int] = field(default_factory=dict)
    """``Change.more`` of the log's entries that have one, by revision."""


def _stat(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()[:32]


class FileStore:
    """Flags in one JSON or YAML file, watched for edits by hand."""

    def __init__(
        self, path: str, *, runtime: Runtime | None = None, poll: float = 0.1, lock_timeout: float = 5.0
    ) -> None:
        self.path = os.path.abspath(path)
        self.url = f"file://{self.path}"
        directory, base = os.path.split(self.path)
        self._meta_path = os.path.join(directory, f".{base}.flagstaff-meta.json")
        self._lock_path = os.path.join(directory, f".{base}.flagstaff-lock")
        suffix = os.path.splitext(base)[1].lower()
        if suffix == ".json":
            self._yaml = False
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml  # noqa: F401  (checked here so the error comes at open time)
            except ImportError:
                raise UnsupportedStoreURL(
                    "YAML flag files need PyYAML: pip install 'flagstaff[yaml]'"
                ) from None
            self._yaml = True
        else:
            raise UnsupportedStoreURL(f"the file store reads .json, .yaml or .yml files, not {base!r}")
        self._runtime = runtime or default_runtime()
        self._poll = poll
        self._lock_timeout = lock_timeout
        self._lock = self._runtime.lock()
        self._state: _State | None = None
        self._broken_signature: _Signature | None = None
        self._broken: str | None = None  # why the file cannot be used now (the last good state is served)
        self._read_only_logged = False
        self._memory: dict[str, Any] | None = None
        self._closed = False
        self._watches: list[_FileWatch] = []

    @classmethod
    def from_url(cls, url: str, runtime: Runtime | None = None) -> FileStore:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path:
            raise UnsupportedStoreURL(
                f"bad file URL {url!r}: use file:///absolute/path/flags.json or file:relative.json"
            )
        options: dict[str, float] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            try:
                if key != "poll" or float(value) <= 0:
                    raise ValueError
                options["poll"] = float(value)
            except ValueError:
                raise UnsupportedStoreURL(
                    f"bad file URL option {key}={value!r} in {url!r}; known options: poll=SECONDS"
                ) from None
        return cls(unquote(parts.path), runtime=runtime, **options)

    # ------------------------------------------------------------ file access

    def _signature(self) -> _Signature:
        return (_stat(self.path), _stat(self._meta_path))

    def _parse(self, text: str) -> dict[str, Any]:
        """The document as ``{name: value}``; raises ``_Broken``."""
        if not text.strip():
            raise _Broken("the file is empty (write {} for no flags)")
        try:
            if self._yaml:
                import yaml

                doc = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
            else:
                doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _Broken(f"not valid JSON: {exc}") from None
        except Exception as exc:  # yaml.YAMLError, without importing yaml for JSON files
            raise _Broken(f"not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise _Broken(f"the document must map flag names to flags, not a {type(doc).__name__}")
        for name in doc:
            if not isinstance(name, str):
                raise _Broken(f"flag names must be strings, not {name!r}")
        return doc

    def _render(self, values: dict[str, Any]) -> str:
        if self._yaml:
            import yaml

            text: str = yaml.safe_dump(values, sort_keys=True, allow_unicode=True, default_flow_style=False)
            return text
        return json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def _read_meta(self) -> dict[str, Any] | None:
        try:
            with open(self._meta_path, encoding="utf-8", errors="surrogateescape") as fh:
                meta = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s is unreadable (%s): starting a new lineage", self._meta_path, exc)
            return None
        try:
            ok = (
                meta["format"] == META_FORMAT
                and isinstance(meta["lineage"], str)
                and isinstance(meta["revision"], int)
                and all(
                    isinstance(v["version"], int) and isinstance(v["digest"], str)
                    for v in meta["flags"].values()
                )
                and all(_entry(e) for e in meta["log"])
            )
        except (KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            log.error("%s is not a flagstaff sidecar: starting a new lineage", self._meta_path)
            return None
        result: dict[str, Any] = meta
        return result

    def _write_atomically(self, path: str, text: str) -> None:
        directory, base = os.path.split(path)
        tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            # surrogateescape: a bad byte held in a flag is written back as it was, not lost.
            with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, os.stat(path).st_mode & 0o7777)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files left by writers killed mid-write (their pid is gone)."""
        directory = os.path.dirname(self.path)
        prefixes = tuple(f".{os.path.basename(p)}.tmp-" for p in (self.path, self._meta_path))
        try:
            names = [n for n in os.listdir(directory) if n.startswith(prefixes)]
        except OSError as exc:
            log.warning("cannot list %s: %s", directory, exc)
            return
        for name in names:
            pid_text = name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove the stale temp file %s: %s", name, exc)

    @contextlib.contextmanager
    def _flock(self, *, for_write: bool) -> Iterator[bool]:
        """Hold the cross-process lock; yields False when the directory is
        read-only and this is only a read."""
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            # Say what is wrong: "cannot lock" for a typo in the path sent people looking for
            # another writer.
            raise StoreUnavailable(f"cannot open {self.path}: the directory {directory} does not exist")
        if not for_write and not os.path.exists(self.path) and not os.path.exists(self._lock_path):
            # Nothing to read and no sidecar to reconcile: a read must not leave a lock file
            # beside a flags file that does not exist (`flagstaff --store file://typo.json list`).
            yield False
            return
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if for_write or exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise StoreUnavailable(f"cannot lock {self.path} for writing: {exc}") from exc
            if not self._read_only_logged:
                self._read_only_logged = True
                log.warning("%s is in a read-only directory: reading without the sidecar", self.path)
            yield False
            return
        try:
            deadline = time.monotonic() + self._lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreUnavailable(
                            f"{self.path} is locked: another writer held it for more than "
                            f"{self._lock_timeout:g} s"
                        ) from None
                    self._runtime.sleep(0.005)
            yield True
        finally:
            os.close(fd)  # also releases the flock

    # ----------------------------------------------------------- reconciling

    def _reconcile(self, persist: bool) -> _State:
        """Read file and sidecar (lock held when ``persist``), record any
        difference as changes, and return the state. Raises ``_Broken``."""
        flags_stat = _stat(self.path)
        try:
            # Bytes that are not UTF-8 are kept as lone surrogates (stores.base.decode_raw): in
            # a JSON string they make that one flag a bad document, which the client names.
            with open(self.path, encoding="utf-8", errors="surrogateescape") as fh:
                text = fh.read()
        except FileNotFoundError:
            text = None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        values = self._parse(text) if text is not None else {}
        try:
            raws = {name: encode_document(value) for name, value in values.items()}
        except (TypeError, ValueError) as exc:
            raise _Broken(f"holds a value JSON cannot represent: {exc}") from None

        meta = self._read_meta() if persist else (self._memory_meta() or self._read_meta())
        if meta is None:
            # No sidecar yet: the lineage is named when the first one is written.
            meta = {"format": META_FORMAT, "lineage": "", "revision": 0, "flags": {}, "log": []}
        known: dict[str, dict[str, Any]] = meta["flags"]
        entries: list[dict[str, Any]] = meta["log"]
        revision = int(meta["revision"])
        changed = False
        first_new = len(entries)
        if text is not None:  # a missing file is not a deletion of everything
            now = time.time()
            previous = {e["name"]: e.get("after") for e in entries}
            for name in sorted(set(known) | set(raws)):
                raw = raws.get(name)
                info = known.get(name)
                if raw is not None and info is not None and info["digest"] == _digest(raw):
                    continue
                revision += 1
                changed = True
                before = previous.get(name) if info is not None else None
                if raw is None:
                    del known[name]
                    version = None
                else:
                    version = (int(info["version"]) if info else 0) + 1
                    known[name] = {"version": version, "digest": _digest(raw)}
                entry = HistoryEntry(name, revision, version, now, None, before, raw)
                entries.append(entry_fields(entry, with_revision=True))
                previous[name] = raw
            if changed:
                log.info("%s was edited outside flagstaff: recorded as changes up to %d", self.path, revision)
                # One saved edit is one atomic change of the file: delivered as one group.
                new = entries[first_new:]
                for i, entry_dict in enumerate(new):
                    if len(new) - 1 - i:
                        entry_dict["more"] = len(new) - 1 - i
        _trim(entries)
        meta["revision"] = revision
        if changed and not meta["lineage"]:
            meta["lineage"] = uuid.uuid4().hex
        if changed and persist:
            self._write_atomically(self._meta_path, json.dumps(meta, ensure_ascii=False, sort_keys=True))
        if not persist:
            self._memory = meta
        # A name holding bytes that are not UTF-8 names no flag: not served (its entry stays in
        # the file, written back as it was), so nothing downstream has to print it.
        records = {
            name: Record(name, raw, int(known[name]["version"]))
            for name, raw in raws.items()
            if is_text(name)
        }
        if len(records) != len(raws):
            log.warning("%s holds flag names that are not UTF-8 text: ignored", self.path)
        return _State(
            signature=(flags_stat, _stat(self._meta_path)),
            lineage=str(meta["lineage"]),
            revision=revision,
            exists=text is not None,
            values=values,
            records=records,
            log=tuple(_entry(e) for e in entries),
            more={int(e["revision"]): int(e["more"]) for e in entries if e.get("more")},
        )

    def _memory_meta(self) -> dict[str, Any] | None:
        """The sidecar as kept in memory when the directory is read-only (a copy)."""
        if self._memory is None:
            return None
        copy: dict[str, Any] = json.loads(json.dumps(self._memory))
        return copy

    def _sync(self) -> _State:
        """The current state, re-read only when the files' signature moved.

        A broken file keeps the last good state (logged once per edit); with
        no good state yet it raises ``StoreUnavailable``.
        """
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.url} is closed")
            signature = self._signature()
            state = self._state
            if state is not None and signature in (state.signature, self._broken_signature):
                return state
            try:
                with self._flock(for_write=False) as locked:
                    state = self._reconcile(persist=locked)
            except _Broken as exc:
                self._broken_signature = signature
                self._broken = f"{self.path} cannot be used: {exc}"
                if self._state is None:
                    raise StoreUnavailable(f"{self.path} cannot be used: {exc}") from None
                log.error("%s: %s; keeping the last good content until it is fixed", self.path, exc)
                return self._state
            self._broken_signature = self._broken = None
            self._state = state
            return state

    # ------------------------------------------------------------------ reads

    def load(self) -> StoreState:
        state = self._sync()
        return StoreState(state.revision, MappingProxyType(dict(state.records)), state.exists)

    def get(self, name: str) -> Record | None:
        return self._sync().records.get(name)

    def history(self, name: str | None = None, limit: int = 100) -> list[HistoryEntry]:
        entries = [
            e for e in reversed(self._sync().log) if (name is None or e.name == name) and is_text(e.name)
        ]
        return entries[: max(0, limit)]

    # ----------------------------------------------------------------- writes

    def put(self, name: str, raw: str, *, expect: int | None = None, author: str | None = None) -> Record:
        record = self.put_many([Write(name, raw, expect)], author=author)[0]
        assert record is not None
        return record

    def delete(self, name: str, *, expect: int | None = None, author: str | None = None) -> None:
        self.put_many([Write(name, None, expect)], author=author)

    def put_many(self, writes: Sequence[Write], *, author: str | None = None) -> list[Record | None]:
        check_writes(writes)
        # ValidationError before anything is locked: the file holds documents.
        values = [None if w.raw is None else decode_document(w.raw) for w in writes]
        if not writes:
            return []
        return self._write(writes, values, author)

    def _write(self, writes: Sequence[Write], values: list[Any], author: str | None) -> list[Record | None]:
        """Apply ``writes`` (``values``: their decoded documents) under both locks: one
        rename of the flags file (then one of the sidecar) for all of them."""
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.url} is closed")
            with self._flock(for_write=True):
                try:
                    state = self._reconcile(persist=True)
                except _Broken as exc:
                    raise StoreUnavailable(
                        f"{self.path} {exc}; fix it by hand before writing through flagstaff"
                    ) from None
                for write in writes:  # every check before any change
                    old = state.records.get(write.name)
                    if write.raw is None and old is None:
                        raise NotFoundError(write.name)
                    actual = old.version if old else 0
                    if write.expect is not None and write.expect != actual:
                        raise ConflictError(write.name, write.expect, actual)
                documents = dict(state.values)
                flags = {
                    n: {"version": r.version, "digest": _digest(r.raw)} for n, r in state.records.items()
                }
                log_entries = [_stored(e, state.more.get(e.revision, 0)) for e in state.log]
                out: list[Record | None] = []
                now = time.time()
                for i, (write, value) in enumerate(zip(writes, values, strict=True)):
                    old = state.records.get(write.name)
                    record: Record | None = None
                    if write.raw is None:
                        del documents[write.name]
                        del flags[write.name]
                    else:
                        documents[write.name] = value
                        record = Record(write.name, encode_document(value), (old.version if old else 0) + 1)
                        flags[write.name] = {"version": record.version, "digest": _digest(record.raw)}
                    revision = state.revision + 1 + i
                    entry = HistoryEntry(
                        write.name,
                        revision,
                        record.version if record else None,
                        now,
                        author,
                        old.raw if old else None,
                        record.raw if record else None,
                    )
                    log_entries.append(_stored(entry, len(writes) - 1 - i))
                    out.append(record)
                _trim(log_entries)
                meta: dict[str, Any] = {
                    "format": META_FORMAT,
                    "lineage": state.lineage or uuid.uuid4().hex,
                    "revision": state.revision + len(writes),
                    "flags": flags,
                    "log": log_entries,
                }
                self._remove_stale_temp_files()
                # The file first, then the sidecar: if we die in between, the
                # next reader sees a difference and records it as a change.
                self._write_atomically(self.path, self._render(documents))
                self._write_atomically(self._meta_path, json.dumps(meta, ensure_ascii=False, sort_keys=True))
                self._state = None  # re-read (cheaply) on next access
            for w in list(self._watches):
                w.kick()
        return out

    # ---------------------------------------------------------------- watches

    def watch(self, on_event: Callable[[WatchEvent], None], since: int) -> Watch:
        # ``since`` is a revision of the lineage current now: pin it, so a
        # sidecar lost before the first poll is noticed.
        try:
            state: _State | None = self._sync()
        except StoreError as exc:
            log.warning("watch on %s starts without a readable file: %s", self.url, exc)
            state = None
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.url} is closed")
            w = _FileWatch(self, on_event, since, state)
            self._watches.append(w)
            return w

    def _forget(self, w: PollingWatch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            watches, self._watches = self._watches, []
        for w in watches:
            w.stop()
        with self._lock:
            self._closed = True


def _entry(fields: dict[str, Any]) -> HistoryEntry:
    """A sidecar log entry as a :class:`HistoryEntry` (``more`` is kept beside it, in
    ``_State.more``). Raises ``TypeError`` for an entry that is not one."""
    return HistoryEntry(**{k: v for k, v in fields.items() if k != "more"})


def _stored(entry: HistoryEntry, more: int) -> dict[str, Any]:
    """``entry`` as the sidecar keeps it, ``more`` only when not 0 (so a sidecar without
    multi-flag writes is what flagstaff before ``put_many`` wrote and reads)."""
    fields = entry_fields(entry, with_revision=True)
    if more:
        fields["more"] = more
    return fields


def _trim(entries: list[dict[str, Any]]) -> None:
    """Keep the newest LOG_LIMIT entries holding at most LOG_TEXT_LIMIT characters."""
    del entries[: entries_to_trim(len(entries), LOG_LIMIT)]
    size, keep = 0, 0
    for entry in reversed(entries):
        size += len(entry.get("before") or "") + len(entry.get("after") or "")
        if keep and size > LOG_TEXT_LIMIT:
            break
        keep += 1
    del entries[: len(entries) - keep]


class _FileWatch(PollingWatch):
    """Polls the store's signature; delivers sidecar log entries after ``last``."""

    def __init__(
        self, store: FileStore, on_event: Callable[[WatchEvent], None], since: int, state: _State | None
    ) -> None:
        super().__init__(store._runtime, on_event, "file", store._forget)
        self._store = store
        self._last = since
        self._lineage = state.lineage if state else None
        self._missing = state is not None and not state.exists
        self._first = True
        self._problem = ""
        self._contact = time.time()  # the last poll that read the file
        self._lost = False  # Disconnected delivered: a Reset is owed once the file reads again
        self._start("flagstaff-file-poll")

    def _step(self) -> float:
        self._wake.clear()
        try:
            state = self._store._sync()
            broken = self._store._broken
            if broken is not None:
                # Unparseable: the last good content is served, but edits are not followed.
                raise StoreUnavailable(broken)
            if self._lost:
                # The subscriber was told it may be behind: it reloads. The sidecar's log
                # still replays what changed meanwhile, for subscribers following changes.
                self._lost = False
                self._queue.push(Reset(f"{self._store.path} can be read again"))
            self._follow(state, self._first)
            self._first, self._problem = False, ""
            self._contact = time.time()
        except StoreError as exc:
            if str(exc) != self._problem:  # once per distinct problem, not every poll
                self._problem = str(exc)
                log.warning("watch on %s: %s; retrying", self._store.url, exc)
            if not self._lost:
                self._lost = True
                self._queue.push(Disconnected(str(exc), self._contact))
        except Exception:
            log.exception("watch on %s failed; retrying", self._store.url)
        return self._store._poll

    def _reset(self, state: _State, reason: str) -> None:
        self._last = state.revision
        self._lineage = state.lineage
        self._queue.push(Reset(reason))

    def _follow(self, state: _State, first: bool) -> None:
        if not state.exists:
            if not self._missing:
                self._missing = True
                self._reset(state, f"{self._store.path} is missing")
            return
        # Back after missing: the sidecar's log replays what happened meanwhile.
        self._missing = False
        if first and self._last > state.revision:
            self._reset(state, f"revision {self._last} is newer than the file's ({state.revision})")
            return
        if not self._lineage:  # unknown, or no sidecar yet when the watch began
            self._lineage = state.lineage
        elif self._lineage != state.lineage:
            self._reset(state, f"the sidecar of {self._store.path} was replaced or lost")
            return
        if state.revision < self._last:
            self._reset(state, f"the sidecar of {self._store.path} went back in time")
            return
        entries = [e for e in state.log if e.revision > self._last]
        if entries and entries[0].revision != self._last + 1:
            self._reset(state, "changes older than the sidecar's log were missed")
            return
        for e in entries:
            self._last = e.revision
            if not is_text(e.name):  # names no flag (see _reconcile)
                continue
            record = Record(e.name, e.after, e.version or 0) if e.after is not None else None
            self._queue.push(Change(e.name, record, e.revision, state.more.get(e.revision, 0)))


@functools.cache
def _yaml_loader() -> Any:
    """A SafeLoader that leaves dates as strings (JSON has no date type)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader
