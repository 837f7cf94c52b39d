"""Subscriber processes for the propagation benchmarks (bench_zookeeper, bench_etcd_redis, bench_fleet).

Each child process prints ``ready COUNT TIME`` once it holds the flags (optionally
followed by ``key=number`` fields, kept per process in :attr:`Fleet.details`),
then ``SEQ TIME`` for every value of the bench flag it sees (wall-clock seconds,
so parent and children compare times); it exits when the parent closes its stdin.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["Fleet", "percentile"]


class Fleet:
    """N subscriber processes started with ``argv`` and what they report.

    ``logs``: a directory for each child's stderr (``child-N.log``); by default the
    children share the parent's stderr. ``env``: the children's environment (default: ours).
    """

    def __init__(
        self, n: int, argv: list[str], *, logs: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        self.cond = threading.Condition()
        self.seen: dict[int, list[float]] = {}
        self.ready: list[tuple[int, float]] = []
        self.spawned: list[float] = []  # wall-clock time each child was started, by index
        self.ready_at: dict[int, float] = {}  # the ready line's TIME, by child index
        self.details: dict[int, dict[str, float]] = {}  # the ready line's key=number fields, by index
        self.seen_by: dict[int, dict[int, float]] = {}  # seq -> {child index: first time it saw seq}
        self._logs: list[IO[str]] = []
        self.procs: list[subprocess.Popen[str]] = []
        for i in range(n):
            err = None
            if logs is not None:
                err = open(logs / f"child-{i}.log", "w")  # noqa: SIM115 (closed in close())
                self._logs.append(err)
            self.spawned.append(time.time())
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, *argv],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=env,
                    text=True,
                )
            )
        self.readers = [
            threading.Thread(target=self._read, args=(i, p), daemon=True) for i, p in enumerate(self.procs)
        ]
        for t in self.readers:
            t.start()

    def _read(self, index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if not parts:
                continue
            with self.cond:
                if parts[0] == "ready":
                    self.ready.append((int(parts[1]), float(parts[2])))
                    self.ready_at[index] = float(parts[2])
                    fields = (p.partition("=") for p in parts[3:])
                    self.details[index] = {k: float(v) for k, _, v in fields}
                else:
                    seq, at = int(parts[0]), float(parts[1])
                    self.seen.setdefault(seq, []).append(at)
                    self.seen_by.setdefault(seq, {}).setdefault(index, at)
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
        for f in self._logs:
            f.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
