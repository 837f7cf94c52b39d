"""Experiment pictures as SVG text: lift intervals per variant, exposures over time.

Hand-written SVG (no plotting library, no script): the dashboard inlines it server-side
and ``flagstaff report --plot FILE.svg`` writes it. Output is deterministic (same input,
same bytes: numbers are formatted to two decimals, series in the order given), sized by
``viewBox`` so it scales to its container, and every label passes through XML escaping:
variant and metric names come from flag documents, which are user input.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stats import Comparison

__all__ = ["COLOURS", "counts_svg", "interval_svg"]

# By verdict (Verdict.value): green better, red worse, grey cannot tell.
COLOURS = {"win": "#2e7d32", "lose": "#c62828", "flat": "#757575"}
# Series colours for counts_svg, by position (colour-blind-safe Okabe-Ito order).
_SERIES = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")

_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _n(x: float) -> str:
    return f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(title)}">'
    )
    return "\n".join([head, f"<title>{_e(title)}</title>", *body, "</svg>"]) + "\n"


def interval_svg(comparisons: Sequence[Comparison], *, title: str = "Relative lift") -> str:
    """One horizontal bar per treatment: its lift interval around a zero line.

    Each variant is one ``<g class="interval ...">`` holding the bar (coloured by verdict),
    the point estimate and the labels. The axis is symmetric around 0 and spans every bound.
    """
    label_w, plot_w, text_w, row_h, top = 150, 360, 190, 30, 40
    width = label_w + plot_w + text_w
    height = top + row_h * max(len(comparisons), 1) + 30
    span = max([abs(b) for c in comparisons for b in c.lift_interval] + [0.01]) * 1.1

    def x(v: float) -> float:
        return label_w + (v + span) / (2 * span) * plot_w

    body = [f'<text x="10" y="20" {_FONT} font-weight="bold">{_e(title)}</text>']
    bottom = top + row_h * len(comparisons)
    body.append(
        f'<line class="zero" x1="{_n(x(0))}" y1="{top - 6}" x2="{_n(x(0))}" y2="{bottom}" '
        'stroke="#000" stroke-width="1"/>'
    )
    for tick in (-span, 0.0, span):
        anchor = "start" if tick < 0 else "end" if tick > 0 else "middle"
        body.append(
            f'<text x="{_n(x(tick))}" y="{bottom + 16}" {_FONT} text-anchor="{anchor}" '
            f'fill="#555">{_e(_pct(tick))}</text>'
        )
    for i, c in enumerate(comparisons):
        verdict = c.verdict.value
        colour = COLOURS[verdict]
        mid = top + row_h * i + row_h / 2
        low, high = c.lift_interval
        summary = f"{_pct(c.lift)} [{_pct(low)}, {_pct(high)}]"
        body += [
            f'<g class="interval {verdict}" data-variant="{_e(c.variant)}">',
            f'<text x="{label_w - 10}" y="{_n(mid + 4)}" {_FONT} text-anchor="end">{_e(c.variant)}</text>',
            f'<rect x="{_n(x(low))}" y="{_n(mid - 5)}" width="{_n(max(x(high) - x(low), 1.0))}" '
            f'height="10" rx="3" fill="{colour}" fill-opacity="0.75"/>',
            f'<line x1="{_n(x(c.lift))}" y1="{_n(mid - 9)}" x2="{_n(x(c.lift))}" y2="{_n(mid + 9)}" '
            f'stroke="{colour}" stroke-width="2"/>',
            f'<text x="{label_w + plot_w + 10}" y="{_n(mid + 4)}" {_FONT} fill="{colour}">'
            f"{_e(summary)}</text>",
            "</g>",
        ]
    return _svg(width, height, title, body)


def counts_svg(series: Mapping[str, Sequence[tuple[str, int]]], *, title: str = "Exposures") -> str:
    """A small line chart: exposures per period (``(label, count)``, e.g. ISO days) per variant.

    The x axis is the sorted union of every series' labels (ISO dates sort in time); a
    period a variant has no point for counts 0. One ``<polyline class="series">`` per variant.
    """
    left, plot_w, plot_h, top, legend_w = 60, 440, 180, 36, 150
    width, height = left + plot_w + legend_w, top + plot_h + 40
    labels = sorted({label for points in series.values() for label, _ in points})
    peak = max([count for points in series.values() for _, count in points] + [1])

    def x(i: int) -> float:
        return left + (i / (len(labels) - 1) * plot_w if len(labels) > 1 else plot_w / 2)

    def y(count: int) -> float:
        return top + plot_h - count / peak * plot_h

    body = [
        f'<text x="10" y="20" {_FONT} font-weight="bold">{_e(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#000"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#000"/>',
        f'<text x="{left - 6}" y="{top + 4}" {_FONT} text-anchor="end" fill="#555">{peak:,}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" {_FONT} text-anchor="end" fill="#555">0</text>',
    ]
    if labels:
        body.append(f'<text x="{left}" y="{top + plot_h + 18}" {_FONT} fill="#555">{_e(labels[0])}</text>')
    if len(labels) > 1:
        body.append(
            f'<text x="{left + plot_w}" y="{top + plot_h + 18}" {_FONT} text-anchor="end" '
            f'fill="#555">{_e(labels[-1])}</text>'
        )
    position = {label: i for i, label in enumerate(labels)}
    for k, (variant, points) in enumerate(series.items()):
        colour = _SERIES[k % len(_SERIES)]
        counts = dict.fromkeys(labels, 0) | dict(points)
        coords = " ".join(f"{_n(x(position[lab]))},{_n(y(counts[lab]))}" for lab in labels)
        legend_y = top + 16 * k + 6
        body += [
            f'<polyline class="series" data-variant="{_e(variant)}" points="{coords}" fill="none" '
            f'stroke="{colour}" stroke-width="2"/>',
            f'<rect x="{left + plot_w + 16}" y="{legend_y - 8}" width="10" height="10" fill="{colour}"/>',
            f'<text x="{left + plot_w + 32}" y="{legend_y + 1}" {_FONT}>{_e(variant)}</text>',
        ]
    return _svg(width, height, title, body)
