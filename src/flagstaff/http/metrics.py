"""Prometheus metrics in the text exposition format, with no dependency.

Counters are kept in process (a dict under a lock); gauges are read when
scraped (the client's status, the number of event-stream subscribers). Label
values never carry flag names or tokens, so the series stay few and the
endpoint reveals nothing about the flags themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from flagstaff.metrics import HELP as CLIENT_HELP
from flagstaff.metrics import Labels, Sample

__all__ = ["Metrics"]

_HELP = {
    "flagstaff_evaluations_total": ("counter", "Flag evaluations served by the evaluate endpoint."),
    "flagstaff_http_requests_total": ("counter", "HTTP requests answered, by method and status class."),
    "flagstaff_writes_total": ("counter", "Accepted flag writes through the API, by action."),
    "flagstaff_changes_applied_total": ("counter", "Flag changes applied to the server's snapshot."),
    "flagstaff_auth_failures_total": ("counter", "Failed authentication attempts."),
    "flagstaff_event_subscribers": ("gauge", "Open event streams."),
    "flagstaff_guard_checks_total": ("counter", "Guardrail checks judged, by outcome (ok, breached)."),
    "flagstaff_guard_halts_total": ("counter", "Flags halted by the guard for a breached guardrail."),
    "flagstaff_guard_errors_total": ("counter", "Guard checks or rounds that failed (logged)."),
    # The server's client: the same samples an application exposes with flagstaff.metrics.
    **CLIENT_HELP,
}

_UNLABELLED = (
    "flagstaff_evaluations_total",
    "flagstaff_changes_applied_total",
    "flagstaff_auth_failures_total",
)


class Metrics:
    """Counters plus gauge callbacks, rendered on demand. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, Labels], float] = {}
        self._gauges: list[Callable[[], Iterable[Sample]]] = []
        # Counters without labels are shown from the start, at 0.
        for name in _UNLABELLED:
            self._counters[(name, ())] = 0.0

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + amount

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def gauge(self, collect: Callable[[], Iterable[Sample]]) -> None:
        """Add a callback returning ``(name, labels, value)`` samples at scrape time."""
        self._gauges.append(collect)

    def render(self) -> str:
        with self._lock:
            samples: list[Sample] = [(n, labels, v) for (n, labels), v in self._counters.items()]
        for collect in self._gauges:
            samples.extend(collect())
        by_name: dict[str, list[Sample]] = {}
        for sample in samples:
            by_name.setdefault(sample[0], []).append(sample)
        lines: list[str] = []
        for name in sorted(by_name):
            kind, text = _HELP.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for _, labels, value in sorted(by_name[name], key=lambda s: s[1]):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                number = _number(value)
                lines.append(f"{name}{{{label_text}}} {number}" if labels else f"{name} {number}")
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
