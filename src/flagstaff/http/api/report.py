"""The report resource: an experiment's results from the server's event store.

``GET /api/v1/flags/{name}/report`` (a read token) answers the JSON of
:func:`flagstaff.report.report_dict`: per metric and variant the units, the rate or mean,
the lift with its interval, the chance to win, and the sample-ratio check against the
flag's experiment weights. Query: ``metric`` (event names, comma-separated, each may end in
``:conversion`` or ``:mean``, or ``NUM/DEN`` for a ratio; default every event name),
``control`` (default ``control_1``, else the first variant), ``experiment_id``, ``since`` and
``until`` (epoch seconds or ISO 8601), ``cuped_days`` (the fields of
:class:`flagstaff.report.Query`), ``format=svg`` with ``plot=intervals`` (the first metric's,
or ``metric``'s first) or ``plot=counts`` for an ``image/svg+xml`` picture.

Reports come from one process-wide :class:`flagstaff.report.ReportCache` (the dashboard's
flag page uses it too): a store unchanged since the last identical request answers from
memory; any event written since computes afresh.

404: no such flag, or no exposure of it yet; 400: a control that is not a variant, a bad
query value;
501: the server has no event store (:attr:`~flagstaff.http.state.Settings.events_db`) or
lacks the ``stats`` extra.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flagstaff.errors import NotFoundError, ValidationError
from flagstaff.http.api._common import ApiError, call, flag_name, query
from flagstaff.http.auth import require
from flagstaff.http.state import ServerState, state_of
from flagstaff.http.tokens import Permission
from flagstaff.model import parse_text

if TYPE_CHECKING:
    from flagstaff.report import ExperimentReport, Query, ReportCache

__all__ = ["QUERY", "experiment_report", "flag_report", "report_cache"]

PLOTS = ("intervals", "counts")
QUERY = ("metric", "control", "experiment_id", "since", "until", "cuped_days")
"""The query parameters that choose what a report is of (the rest choose its format)."""

_cache: list[ReportCache] = []  # at most one: made on first use
_cache_lock = threading.Lock()


def report_cache() -> ReportCache:
    """The process-wide cache of reports (made on first use: it needs the stats extra)."""
    with _cache_lock:
        if not _cache:
            from flagstaff.report import ReportCache

            _cache.append(ReportCache())
        return _cache[0]


def _query(name: str, params: Mapping[str, str]) -> Query:
    """The :class:`~flagstaff.report.Query` of the request's parameters; 400 for a bad value."""
    from flagstaff.report import Query
    from flagstaff.stats import AnalysisError

    try:
        experiment_id = int(params["experiment_id"]) if "experiment_id" in params else None
    except ValueError:
        raise ApiError(400, f"experiment_id must be an integer, not {params['experiment_id']!r}") from None
    try:
        cuped_days = float(params["cuped_days"]) if "cuped_days" in params else None
    except ValueError:
        raise ApiError(400, f"cuped_days must be a number of days, not {params['cuped_days']!r}") from None
    try:
        return Query(
            name,
            tuple(m.strip() for m in params.get("metric", "").split(",") if m.strip()),
            params.get("control"),
            experiment_id=experiment_id,
            since=_time(params, "since"),
            until=_time(params, "until"),
            cuped_days=cuped_days,
        )
    except AnalysisError as exc:
        raise ApiError(400, str(exc)) from None


def _time(params: Mapping[str, str], label: str) -> float | None:
    from flagstaff.report import parse_time
    from flagstaff.stats import AnalysisError

    if label not in params:
        return None
    try:
        return parse_time(params[label])
    except AnalysisError as exc:
        raise ApiError(400, f"{label}: {exc}") from None


def experiment_report(
    state: ServerState, name: str, params: Mapping[str, str] | None = None
) -> ExperimentReport:
    """The report of ``name`` (blocking: run it in the thread pool), for the query parameters
    ``params`` (:data:`QUERY`; none: the whole experiment). From :func:`report_cache`. Raises
    :class:`~flagstaff.errors.NotFoundError` for no flag, :class:`ApiError` for the rest."""
    if state.events_db is None:
        raise ApiError(501, "no event store configured (Settings.events_db)")
    try:
        from flagstaff.report import NoExposures
        from flagstaff.stats import AnalysisError
    except ModuleNotFoundError as exc:
        raise ApiError(501, f"reports need the stats extra: {exc}") from None
    query = _query(name, params or {})
    record = state.store.get(name)
    if record is None:
        raise NotFoundError(name)
    try:
        experiment = parse_text(record.name, record.raw).experiment
    except ValidationError:
        experiment = None  # a bad document: clients skip it; the split is then assumed equal
    weights = dict(experiment.variants) if experiment is not None else None
    try:
        return report_cache().get(state.events_db, query, weights)
    except NoExposures as exc:
        raise ApiError(404, str(exc), exposures=0) from None
    except AnalysisError as exc:
        raise ApiError(400, str(exc)) from None


async def flag_report(request: Request) -> Response:
    params = query(request, *QUERY, "format", "plot")
    require(request, Permission.READ)
    name = flag_name(request)
    fmt = params.get("format", "json")
    if fmt not in ("json", "svg"):
        raise ApiError(400, f"format must be json or svg, not {fmt!r}")
    plot = params.get("plot", "intervals")
    if plot not in PLOTS:
        raise ApiError(400, f"plot must be intervals or counts, not {plot!r}")
    result = await call(
        experiment_report, state_of(request), name, {k: params[k] for k in QUERY if k in params}
    )
    from flagstaff.report import counts_plot, interval_plot, report_dict

    if fmt == "json":
        return JSONResponse(report_dict(result))
    if plot == "counts":
        svg = counts_plot(result)
    elif not result.result.metrics:
        raise ApiError(404, f"no metric events to plot for {name!r}")
    else:
        svg = interval_plot(result)
    return Response(svg, media_type="image/svg+xml")
