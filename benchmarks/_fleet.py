"""Subscriber processes for the propagation benchmarks (bench_zookeeper, bench_etcd_redis).

Each child process prints ``ready COUNT TIME`` once it holds the flags, then
``SEQ TIME`` for every value of the bench flag it sees (wall-clock seconds, so
parent and children compare times); it exits when the parent closes its stdin.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

__all__ = ["Fleet", "percentile"]


class Fleet:
    """N subscriber processes started with ``argv`` and what they report."""

    def __init__(self, n: int, argv: list[str]) -> None:
        self.cond = threading.Condition()
        self.seen: dict[int, list[float]] = {}
        self.ready: list[tuple[int, float]] = []
        self.procs = [
            subprocess.Popen(
                [sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        self.readers = [threading.Thread(target=self._read, args=(p,), daemon=True) for p in self.procs]
        for t in self.readers:
            t.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            with self.cond:
                if parts[0] == "ready":
                    self.ready.append((int(parts[1]), float(parts[2])))
                else:
                    self.seen.setdefault(int(parts[0]), []).append(float(parts[1]))
                self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def close(self) -> None:
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
