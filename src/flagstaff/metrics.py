"""Prometheus metrics for any process holding a client, in one line::

    import flagstaff.metrics
    flagstaff.metrics.register(client)  # prometheus_client's default registry

Needs the ``prometheus`` extra (``pip install 'flagstaff[prometheus]'``). The
values are read from :meth:`Client.status` and :attr:`Client.evaluations` when
the registry is scraped (a custom collector), so nothing is done between
scrapes and evaluation stays free of metric calls. Every sample carries a
``store`` label (the client's store URL, password removed), so several clients
can share one registry.

The samples themselves (:func:`client_samples`) are the ones ``flagstaff
serve`` shows on ``/metrics``: the names mean the same thing in both places.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flagstaff.client import Client

__all__ = ["HELP", "ClientCollector", "Sample", "client_samples", "register"]

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]

#: Every metric a client exposes: name -> (type, help text).
HELP: dict[str, tuple[str, str]] = {
    "flagstaff_store_state": (
        "gauge",
        "1 for the state the client is in (live, stale, cached, defaults).",
    ),
    "flagstaff_data_age_seconds": (
        "gauge",
        "How far behind the store the served flags may be: 0 when live, else since the last contact.",
    ),
    "flagstaff_flags": ("gauge", "Flags in the served snapshot."),
    "flagstaff_segments": ("gauge", "Segments in the served snapshot."),
    "flagstaff_invalid_flags": (
        "gauge",
        "Flags and segments whose latest document is invalid (the last good one is served).",
    ),
    "flagstaff_revision": ("gauge", "Store revision of the served snapshot."),
    "flagstaff_client_evaluations_total": (
        "counter",
        "Evaluations the client answered (is_enabled, evaluate, variant; each flag of all).",
    ),
    "flagstaff_client_unknown_flag_evaluations_total": (
        "counter",
        "Evaluations of a flag the client does not hold (answered off).",
    ),
    "flagstaff_client_error_evaluations_total": (
        "counter",
        "Evaluations with a context that could not be used (answered off).",
    ),
}

_STATES = ("live", "stale", "cached", "defaults")


def client_samples(client: Client) -> list[Sample]:
    """The client's health and evaluation counts as ``(name, labels, value)`` samples."""
    status = client.status()
    counts = client.evaluations
    samples: list[Sample] = [
        ("flagstaff_store_state", (("state", state),), 1.0 if status.state.value == state else 0.0)
        for state in _STATES
    ]
    if status.age is not None:  # no data at all: no age to give
        samples.append(("flagstaff_data_age_seconds", (), status.age))
    samples += [
        ("flagstaff_flags", (), float(status.flags)),
        ("flagstaff_segments", (), float(status.segments)),
        ("flagstaff_invalid_flags", (), float(len(status.invalid))),
        ("flagstaff_revision", (), float(status.revision)),
        ("flagstaff_client_evaluations_total", (), float(counts.total)),
        ("flagstaff_client_unknown_flag_evaluations_total", (), float(counts.unknown)),
        ("flagstaff_client_error_evaluations_total", (), float(counts.errors)),
    ]
    return samples


class ClientCollector:
    """A prometheus-client custom collector for one or more clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: registering a client does not keep it (or its store connections) alive.
        self._clients: weakref.WeakSet[Client] = weakref.WeakSet()

    def add(self, client: Client) -> None:
        with self._lock:
            self._clients.add(client)

    def describe(self) -> Iterable[Any]:
        # The names, for the registry's duplicate check, without reading any client.
        return [_family(name, []) for name in HELP]

    def collect(self) -> Iterator[Any]:
        with self._lock:
            clients = list(self._clients)
        by_name: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}
        for client in clients:
            for name, labels, value in client_samples(client):
                by_name[name].append(({"store": client.store_url, **dict(labels)}, value))
        for name, samples in by_name.items():
            yield _family(name, samples)


# One collector per registry: a second client joins the first one's collector (a second
# collector would repeat its metric names, which a registry refuses).
_COLLECTORS: weakref.WeakKeyDictionary[Any, ClientCollector] = weakref.WeakKeyDictionary()
_COLLECTORS_LOCK = threading.Lock()


def register(client: Client, registry: Any = None) -> ClientCollector:
    """Expose ``client``'s state, data age, invalid-document count and evaluation
    counts in ``registry`` (prometheus-client's default ``REGISTRY`` when None).
    Returns the collector; registering the same client twice is harmless."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError(
            "flagstaff.metrics.register needs prometheus-client: pip install 'flagstaff[prometheus]'"
        ) from exc
    target = prometheus_client.REGISTRY if registry is None else registry
    with _COLLECTORS_LOCK:
        collector = _COLLECTORS.get(target)
        if collector is None:
            collector = _COLLECTORS[target] = ClientCollector()
            collector.add(client)
            target.register(collector)
            return collector
    collector.add(client)
    return collector


def _family(name: str, samples: list[tuple[dict[str, str], float]]) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    kind, text = HELP[name]
    labels = sorted({key for labels, _ in samples for key in labels}) or ["store"]
    family: Any
    if kind == "counter":
        # CounterMetricFamily adds the _total suffix itself.
        family = CounterMetricFamily(name.removesuffix("_total"), text, labels=labels)
    else:
        family = GaugeMetricFamily(name, text, labels=labels)
    for sample_labels, value in samples:
        family.add_metric([sample_labels.get(key, "") for key in labels], value)
    return family
