"""``flagstaff report NAME``: an experiment's results from the event store.

::

    $ flagstaff report new_checkout --metric purchase --metric revenue:mean
    $ flagstaff report new_checkout --json
    $ flagstaff report new_checkout --plot results.svg

Reads the flag from the store (its experiment's weights are what the sample-ratio check
expects) and the exposures and metric events from the SQLite event store ``--events`` names:
by default the file ``serve`` writes beside a SQLite store (``flagstaff.db`` ->
``flagstaff.db.events``). Prints a table per metric and the SRM line
(:func:`flagstaff.stats.render_text`), or JSON with ``--json``; ``--plot FILE.svg`` writes
the interval plots and the exposure counts (``.png`` needs matplotlib). Exit 1 when the
store holds no exposure of the flag; 3 when there is no such flag. Needs the ``stats`` extra.
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
        help="a metric event name, NAME:conversion or NAME:mean (repeatable; default: every event name)",
    )
    p.add_argument("--control", metavar="VARIANT", help="the control (default control_1, else the first)")
    p.add_argument("--plot", metavar="FILE", help="write the plots to FILE.svg (or .png, with matplotlib)")


def default_events(store_url: str) -> str | None:
    """``serve``'s default event store: beside a SQLite store's file, none for other stores.

    The rule of :func:`flagstaff.http.state.default_events_db`, kept here so the command
    line needs no web stack (a test holds the two equal)."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and parts.path not in ("", "/", "/:memory:"):
        return parts.path[1:] + ".events"
    return None


def cmd_report(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.report import NoExposures, build, report_dict
    from flagstaff.stats import AnalysisError, render_text

    events = args.events or default_events(args.store)
    if events is None:
        raise UsageError(f"no default event store beside {args.store}: give --events PATH")
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
        result = build(events, args.name, metrics=args.metric, control=args.control, weights=weights)
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
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]  # optional, for PNG only

        matplotlib.use("Agg")
        from matplotlib import pyplot  # type: ignore[import-not-found, unused-ignore]
    except ModuleNotFoundError:
        raise UsageError(
            "a PNG plot needs matplotlib (pip install matplotlib); --plot FILE.svg needs nothing"
        ) from None
    metrics = result.result.metrics
    fig, axes = pyplot.subplots(len(metrics) + 1, 1, figsize=(7, 2 + 1.6 * (len(metrics) + 1)))
    for ax, m in zip(axes, metrics, strict=False):
        comps = m.comparisons
        for i, c in enumerate(comps):
            low, high = c.lift_interval
            ax.plot([low * 100, high * 100], [i, i], linewidth=6)
            ax.plot([c.lift * 100], [i], "k|", markersize=14)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(range(len(comps)), [c.variant for c in comps])
        ax.set_title(f"{m.name}: relative lift (%) vs {result.control}")
    ax = axes[-1]
    for variant, points in result.daily.items():
        ax.plot([d for d, _ in points], [n for _, n in points], marker="o", label=variant)
    ax.set_title("units first exposed per day")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    pyplot.close(fig)
