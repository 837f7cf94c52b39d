"""The ZooKeeper experiment switch of the first seed, over kazoo.

::

    from flagstaff.compat import zkswitch

    zkswitch.configure("zk1:2181,zk2:2181")                # once, at start-up
    watcher = zkswitch.DataWatcher("/experiments/show_new_homepage")
    value, stat = watcher.get_data()                       # ("1", ZnodeStat(...))

    if zkswitch.selected_for_experiment(user.id, "/experiments/show_new_homepage"):
        show_new_homepage()

Any ZooKeeper client may write the node: ``zk.set(path, b"1")`` means 1% of
users. A :class:`DataWatcher` reads the node on a background task (a greenlet
under gevent, else a thread: see :mod:`flagstaff.runtime`), re-reads it whenever
its watch fires or the session comes back, and when ZooKeeper cannot be reached
keeps retrying with capped backoff, forever, while ``get_data()`` keeps serving
the last value it read. ``get_data()`` never does I/O.

The rule is the seed's prose, "check if [the user id mod 100] is less than the
experiment value": ``user_id % 100 < value`` (flagstaff's ``modulo100`` mode).
The seed's code wrote ``<=``, which selects one extra percent (2% at 1, and
everyone but nobody at 0); the prose wins. A node may also hold a flagstaff
document (``"on"``, ``"off"``, or a JSON object; an object without
``"bucketing"`` buckets with ``modulo100``).
"""

from __future__ import annotations

import json
import logging
import posixpath
import threading
from typing import Any

from flagstaff.bucketing import BucketingMode
from flagstaff.context import Context
from flagstaff.errors import ClientError, StoreUnavailable, ValidationError
from flagstaff.evaluate import evaluate
from flagstaff.model import Flag, decode_document, parse_text
from flagstaff.runtime import Runtime, default_runtime

__all__ = ["DataWatcher", "Switchboard", "configure", "selected_for_experiment"]

log = logging.getLogger("flagstaff.compat.zkswitch")

_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 5.0
_IDLE = 30.0  # re-read this often even without a watch event (a lost watch is repaired)


class Switchboard:
    """One ZooKeeper session shared by many watchers.

    ``hosts`` is kazoo's connection string; ``client`` an existing
    ``KazooClient`` (then the caller starts and stops it).
    """

    def __init__(
        self,
        hosts: str = "127.0.0.1:2181",
        *,
        client: Any = None,
        runtime: Runtime | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.hosts = hosts
        self.runtime = runtime or default_runtime()
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None
        self._lock = self.runtime.lock()
        self._watchers: dict[str, DataWatcher] = {}
        self._closed = False

    def client(self) -> Any:
        """The started client; raises (to be retried) if ZooKeeper is unreachable."""
        with self._lock:
            if self._closed:
                raise ClientError("the switchboard is closed")
            if self._client is None:
                from kazoo.client import KazooClient

                handler = None
                if self.runtime.name == "gevent":
                    from kazoo.handlers.gevent import SequentialGeventHandler

                    handler = SequentialGeventHandler()
                client = KazooClient(hosts=self.hosts, handler=handler, timeout=self.timeout)
                # gevent's handler times out with gevent.Timeout, a BaseException
                timed_out = client.handler.timeout_exception
                try:
                    client.start(timeout=self.timeout)
                except (Exception, timed_out) as exc:
                    client.close()
                    raise StoreUnavailable(f"ZooKeeper at {self.hosts} is unreachable: {exc!r}") from None
                self._client = client
            return self._client

    def watcher(self, path: str) -> DataWatcher:
        """The (shared) watcher of ``path``."""
        with self._lock:
            found = self._watchers.get(path)
            if found is None or found.closed:
                found = DataWatcher(path, board=self)
                self._watchers[path] = found
            return found

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watchers = list(self._watchers.values())
            self._watchers.clear()
            client = self._client
        for w in watchers:
            w.close()
        if client is not None and self._owns_client:
            client.stop()
            client.close()


_DEFAULT: dict[str, Switchboard] = {}  # "board": the process-wide switchboard
_DEFAULT_LOCK = threading.Lock()


def configure(
    hosts: str = "127.0.0.1:2181", *, client: Any = None, runtime: Runtime | None = None
) -> Switchboard:
    """Set the process-wide switchboard that :class:`DataWatcher` and
    :func:`selected_for_experiment` use by default (closing the previous one)."""
    board = Switchboard(hosts, client=client, runtime=runtime)
    with _DEFAULT_LOCK:
        old = _DEFAULT.get("board")
        _DEFAULT["board"] = board
    if old is not None:
        old.close()
    return board


def _board() -> Switchboard:
    with _DEFAULT_LOCK:
        board = _DEFAULT.get("board")
        if board is None:
            board = _DEFAULT["board"] = Switchboard()
        return board


class DataWatcher:
    """The value of one znode, kept fresh in the background.

    ``get_data()`` returns ``(value, stat)``: the node's data decoded as UTF-8
    and kazoo's ``ZnodeStat``, or ``(None, None)`` while the node does not exist
    or has never been read. ``wait(timeout)`` waits for the first read.
    """

    def __init__(self, path: str, *, board: Switchboard | None = None) -> None:
        self.path = path
        self._board = board or _board()
        rt = self._board.runtime
        self._wake = rt.event()
        self._ready = rt.event()
        self._data: tuple[str | None, Any] = (None, None)
        self._flag: tuple[Any, Flag | None] = (None, None)
        self.closed = False
        self.last_error: str | None = None
        self._task = rt.spawn(self._run, name=f"flagstaff-zkswitch {path}")

    def get_data(self) -> tuple[str | None, Any]:
        return self._data

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the node has been read once (present or not)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._task.join(timeout)

    # -- the background task ---------------------------------------------------

    def _notify(self, *_: Any) -> None:
        self._wake.set()

    def _run(self) -> None:
        from kazoo.exceptions import NoNodeError

        backoff = _BACKOFF_MIN
        listening: Any = None
        while not self.closed:
            try:
                client = self._board.client()
                if listening is not client:
                    client.add_listener(self._notify)  # session changes: re-read
                    listening = client
                self._wake.clear()
                try:
                    raw, stat = client.get(self.path, watch=self._notify)
                    value = raw.decode("utf-8", "replace") if raw is not None else None
                except NoNodeError:
                    # watch for its creation; (None, None) until then
                    if client.exists(self.path, watch=self._notify) is not None:
                        self._wake.set()  # created meanwhile: read it at once
                    value, stat = None, None
                self._data = (value, stat)
                self.last_error = None
                self._ready.set()
                backoff = _BACKOFF_MIN
                self._wake.wait(_IDLE)
            except Exception as exc:
                if self.closed:
                    break
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("reading %s failed (%s); retrying in %.2fs", self.path, self.last_error, backoff)
                self._wake.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    # -- the experiment switch -------------------------------------------------

    def flag(self) -> Flag | None:
        """The node's value as a flag (``None`` when absent or invalid)."""
        value = self._data[0]
        cached_value, cached_flag = self._flag
        if value == cached_value:
            return cached_flag
        flag = _parse(self.path, value)
        self._flag = (value, flag)
        return flag


def _parse(path: str, value: str | None) -> Flag | None:
    if value is None:
        return None
    name = posixpath.basename(path.rstrip("/")) or "experiment"
    try:
        return parse_text(name, _as_flagstaff(value))
    except ValidationError as exc:
        log.warning("experiment %s holds an invalid value, so nobody is selected: %s", path, exc)
        return None


def _as_flagstaff(value: str) -> str:
    """zkswitch's dialect as a flagstaff document: a bare number, or an object that
    names no bucketing, selects by ``user_id % 100`` (``bucketing: modulo100``).

    Keys keep their order (no ``encode_document``, which sorts them): the order of an
    experiment's variants is part of its bucketing."""
    doc = decode_document(value)
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        doc = {"percentage": doc, "bucketing": BucketingMode.MODULO100.value}
    elif isinstance(doc, dict) and "bucketing" not in doc:
        doc = {**doc, "bucketing": BucketingMode.MODULO100.value}
    else:
        return value
    return json.dumps(doc, ensure_ascii=False)


def selected_for_experiment(user_id: int | str, experiment: str | DataWatcher) -> bool:
    """Whether ``user_id`` is in ``experiment`` (a znode path or a watcher):
    ``user_id % 100 < value`` for a number. Never does I/O; False until read."""
    watcher = experiment if isinstance(experiment, DataWatcher) else _board().watcher(experiment)
    flag = watcher.flag()
    if flag is None:
        return False
    key = str(user_id)
    return evaluate(flag, Context(user_id=key)).enabled
