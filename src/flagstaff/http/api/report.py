"""The report resource: an experiment's results from the server's event store.

``GET /api/v1/flags/{name}/report`` (a read token) answers the JSON of
:func:`flagstaff.report.report_dict`: per metric and variant the units, the rate or mean,
the lift with its interval, the chance to win, and the sample-ratio check against the
flag's experiment weights. Query: ``metric`` (event names, comma-separated, each may end in
``:conversion`` or ``:mean``; default every event name), ``control`` (default ``control_1``,
else the first variant), ``format=svg`` with ``plot=intervals`` (the first metric's, or
``metric``'s first) or ``plot=counts`` for an ``image/svg+xml`` picture.

404: no such flag, or no exposure of it yet; 400: a control that is not a variant;
501: the server has no event store (:attr:`~flagstaff.http.state.Settings.events_db`) or
lacks the ``stats`` extra.
"""

from __future__ import annotations

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
    from flagstaff.report import ExperimentReport

__all__ = ["experiment_report", "flag_report"]

PLOTS = ("intervals", "counts")


def experiment_report(
    state: ServerState, name: str, metrics: tuple[str, ...] = (), control: str | None = None
) -> ExperimentReport:
    """The report of ``name`` (blocking: run it in the thread pool). Raises
    :class:`~flagstaff.errors.NotFoundError` for no flag, :class:`ApiError` for the rest."""
    if state.events_db is None:
        raise ApiError(501, "no event store configured (Settings.events_db)")
    try:
        from flagstaff.report import NoExposures, build
        from flagstaff.stats import AnalysisError
    except ModuleNotFoundError as exc:
        raise ApiError(501, f"reports need the stats extra: {exc}") from None
    record = state.store.get(name)
    if record is None:
        raise NotFoundError(name)
    try:
        experiment = parse_text(record.name, record.raw).experiment
    except ValidationError:
        experiment = None  # a bad document: clients skip it; the split is then assumed equal
    weights = dict(experiment.variants) if experiment is not None else None
    try:
        return build(state.events_db, name, metrics=metrics, control=control, weights=weights)
    except NoExposures as exc:
        raise ApiError(404, str(exc), exposures=0) from None
    except AnalysisError as exc:
        raise ApiError(400, str(exc)) from None


async def flag_report(request: Request) -> Response:
    params = query(request, "metric", "control", "format", "plot")
    require(request, Permission.READ)
    name = flag_name(request)
    fmt = params.get("format", "json")
    if fmt not in ("json", "svg"):
        raise ApiError(400, f"format must be json or svg, not {fmt!r}")
    plot = params.get("plot", "intervals")
    if plot not in PLOTS:
        raise ApiError(400, f"plot must be intervals or counts, not {plot!r}")
    metrics = tuple(m.strip() for m in params.get("metric", "").split(",") if m.strip())
    result = await call(experiment_report, state_of(request), name, metrics, params.get("control"))
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
