"""``flagstaff report NAME``: an experiment's results from the event store.

::

    $ flagstaff report new_checkout --metric purchase --metric revenue:mean
    $ flagstaff report new_checkout --json
    $ flagstaff report new_checkout --plot results.svg
    $ flagstaff report new_checkout --metric revenue/purchase --since 2026-01-01 --cuped-days 14

Reads the flag from the store (its experiment's weights are what the sample-ratio check
expects) and the exposures and metric events from the SQLite event store ``--events`` names:
by default the file ``serve`` writes beside a SQLite store (``flagstaff.db`` ->
``flagstaff.db.events``). Prints a table per metric and the SRM line
(:func:`flagstaff.stats.render_text`), or JSON with ``--json``; ``--plot FILE.svg`` writes
the interval plots and the exposure counts (``.png`` needs matplotlib, the ``plots`` extra).
``--experiment-id``, ``--since``/``--until`` and ``--cuped-days`` narrow and adjust the report
(:class:`flagstaff.report.Query`). Exit 1 when the store holds no exposure of the flag; 3
when there is no such flag. Needs the ``stats`` extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flagstaff.admin import Admin
from flagstaff.cli._files import opened
from flagstaff.cli._output import EXIT, Failed, Out, UsageError
from flagstaff.cli._registry import Commands
from flagstaff.errors import ValidationError
from flagstaff.model import parse_text

if TYPE_CHECKING:
    from flagstaff.report import ExperimentReport

__all__ = ["cmd_report", "default_events", "register"]


def register(commands: Commands) -> None:
    """Add ``flagstaff report`` (see the module doc)."""
    p = commands(
        "report", cmd_report, "an experiment's results: lift, intervals, chance to win, sample ratio"
    )
    p.add_argument("name", metavar="NAME", help="the experiment's flag")
    p.add_argument("--events", metavar="PATH", help="the SQLite event store (default: beside a SQLite store)")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="EVENT",
        help="a metric event name, NAME:conversion, NAME:mean, or NUM/DEN for a ratio"
        " (repeatable; default: every event name)",
    )
    p.add_argument("--control", metavar="VARIANT", help="the control (default control_1, else the first)")
    p.add_argument("--plot", metavar="FILE", help="write the plots to FILE.svg (or .png, with matplotlib)")
    p.add_argument(
        "--experiment-id", type=int, metavar="ID", help="only exposures recorded with this experiment id"
    )
    p.add_argument(
        "--since", metavar="TIME", help="only units first exposed at or after TIME (ISO 8601 or epoch)"
    )
    p.add_argument("--until", metavar="TIME", help="only exposures and metric events before TIME")
    p.add_argument(
        "--cuped-days",
        type=float,
        metavar="N",
        help="CUPED: each unit's same metric in the N days before its first exposure as the covariate",
    )


def default_events(store_url: str) -> str | None:
    """``serve``'s default event store: beside a SQLite store's file, none for other stores.

    The rule of :func:`flagstaff.http.state.default_events_db`, kept here so the command
    line needs no web stack (a test holds the two equal)."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return parts.path[1:] + ".events"
    return None


def cmd_report(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.report import NoExposures, Query, build, report_dict
    from flagstaff.stats import AnalysisError, render_text

    events = args.events or default_events(args.store)
    if events is None:
        raise UsageError(f"no default event store beside {args.store}: give --events PATH")
    try:
        query = Query(
            args.name,
            tuple(args.metric),
            args.control,
            experiment_id=args.experiment_id,
            since=_time(args.since, "--since"),
            until=_time(args.until, "--until"),
            cuped_days=args.cuped_days,
        )
    except AnalysisError as exc:
        raise UsageError(str(exc)) from None
    plot = Path(args.plot) if args.plot else None
    if plot is not None and plot.suffix.lower() not in (".svg", ".png"):
        raise UsageError(f"--plot writes .svg or .png, not {plot.name!r}")
    with opened(args.store) as store:
        rec = Admin(store).get(args.name)
    try:
        flag = parse_text(rec.name, rec.raw)
    except ValidationError as exc:
        out.note(f"flagstaff: flag {args.name!r} holds a bad document: {exc}")
        return EXIT.NO
    weights = dict(flag.experiment.variants) if flag.experiment is not None else None
    try:
        result = build(events, query, weights=weights)
    except NoExposures as exc:
        out.note(f"flagstaff: {exc} ({events})")
        raise Failed(str(exc)) from None
    except AnalysisError as exc:
        raise UsageError(str(exc)) from None
    if plot is not None:
        _write_plot(result, plot)
    if out.json:
        out.emit(report_dict(result))
    else:
        out.stdout.write(render_text(result.result))
        if result.excluded:
            out.line(f"{result.excluded:,} units saw more than one variant and are excluded")
        if plot is not None:
            out.note(f"flagstaff: wrote {plot}")
    return EXIT.OK


def _time(text: str | None, option: str) -> float | None:
    from flagstaff.report import parse_time
    from flagstaff.stats import AnalysisError

    try:
        return None if text is None else parse_time(text)
    except AnalysisError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _write_plot(result: ExperimentReport, path: Path) -> None:
    from flagstaff.report import figure_svg

    try:
        if path.suffix.lower() == ".svg":
            path.write_text(figure_svg(result), encoding="utf-8")
        else:
            _write_png(result, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_png(result: ExperimentReport, path: Path) -> None:
    from flagstaff.report import figure_png

    try:
        picture = figure_png(result)
    except ModuleNotFoundError:
        raise UsageError(
            "a PNG plot needs matplotlib (pip install 'flagstaff[plots]'); --plot FILE.svg needs nothing"
        ) from None
    path.write_bytes(picture)
