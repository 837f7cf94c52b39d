"""A loopback TCP fault proxy for the reliability scenarios (threads, bounded, closed by the test).

Modes, switched from the test at any time (``proxy.mode = ...``):

- ``pass``: bytes flow both ways;
- ``reset``: every open connection is cut with a TCP reset, and new ones are accepted and
  reset at once (a host that refuses, or a middlebox that kills the flow);
- ``drop_replies``: the client's bytes reach the server, the server's answers are thrown
  away (the connections stay open, so the client waits for its own timeout).

``drop_reply_after(trigger)`` aims one fault at one request: the first connection whose
client-to-server bytes contain ``trigger`` forwards them whole, and when the server starts
answering (so it has acted on the request) the answer is dropped and both sides are reset.
That is the ambiguous write: applied by the store, its acknowledgement lost.

One thread accepts, one thread per connection pumps both directions with ``select``;
``close()`` cuts everything and joins them. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading

MODES = ("pass", "reset", "drop_replies")
_POLL = 0.1  # seconds a pump waits in select(), so mode changes and close() act promptly


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0), not a polite FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``upstream`` (``"host:port"``), with faults on demand."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(_POLL)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = "pass"
        self._closed = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._trigger: bytes | None = None
        self._fired = threading.Event()
        self.connections = 0  # accepted and forwarded, for the tests' own sanity checks
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self._mode = mode
        if mode == "reset":
            with self._lock:
                pairs = list(self._pairs)
                self._pairs.clear()
            for a, b in pairs:
                _reset(a)
                _reset(b)

    def drop_reply_after(self, trigger: bytes) -> threading.Event:
        """Arm the one-shot ambiguous-write fault (see the module doc); the event is set once it fired."""
        with self._lock:
            self._trigger = trigger
            self._fired = threading.Event()
            return self._fired

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="netfault")  # type: ignore[arg-type]
        t.start()
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._mode == "reset" or self._closed:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _reset(client)
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.add((client, upstream))
                self.connections += 1
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        tail = b""  # the end of the client's previous chunk: a trigger may straddle two reads
        armed = False  # this connection carried the trigger: drop the answer, then reset
        try:
            while not self._closed and self._mode != "reset":
                ready, _, _ = select.select([client, upstream], [], [], _POLL)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        trigger = self._trigger
                        if trigger is not None and not armed and trigger in tail + data:
                            with self._lock:
                                if self._trigger is trigger:
                                    self._trigger = None
                                    armed = True
                        if trigger is not None:
                            tail = (tail + data)[-len(trigger) :]
                        upstream.sendall(data)
                    elif armed:
                        self._fired.set()  # the server answered: it acted; the client never hears
                        return
                    elif self._mode != "drop_replies":
                        client.sendall(data)
        except (OSError, ValueError):
            return  # reset or closed under us (a closed socket's fileno is -1: ValueError)
        finally:
            with self._lock:
                self._pairs.discard((client, upstream))
            _reset(client)
            _reset(upstream)

    def close(self) -> None:
        self._closed = True
        self.mode = "reset"
        with contextlib.suppress(OSError):
            self._listener.close()
        for t in list(self._threads):
            t.join(2)
