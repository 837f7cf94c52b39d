"""A loopback TCP proxy for partition tests (threads, bounded, closed by the test).

``partition()`` cuts every open connection and refuses new ones (accepted then
closed at once) until ``heal()``; ``blackhole()`` keeps connections open but
forwards nothing, like a network that silently drops packets.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)  # so the accept loop sees close() promptly
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut = False
        self._hole = False
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="tcpproxy")  # type: ignore[arg-type]
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
            client.settimeout(None)
            if self._cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            if self._cut:  # partitioned while connecting
                self._drop(client, upstream)
                continue
            self._spawn(self._pump, client, upstream)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self._closed:
                ready, _, _ = select.select([a, b], [], [], 0.2)
                if self._hole:
                    time.sleep(0.05)  # hold the bytes in the kernel buffers, forward nothing
                    continue
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            # partition() or close() closed the pair under us: select() then raises ValueError
            # (a closed socket's fileno is -1) rather than OSError.
            return
        finally:
            self._drop(a, b)

    def _drop(self, a: socket.socket, b: socket.socket) -> None:
        with self._lock:
            if (a, b) in self._pairs:
                self._pairs.remove((a, b))
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def partition(self) -> None:
        self._cut = True
        with self._lock:
            pairs = list(self._pairs)
        for a, b in pairs:
            self._drop(a, b)

    def blackhole(self) -> None:
        self._hole = True

    def heal(self) -> None:
        self._cut = False
        self._hole = False

    def close(self) -> None:
        self._closed = True
        self.partition()
        self._listener.close()
        for t in list(self._threads):
            t.join(2)
