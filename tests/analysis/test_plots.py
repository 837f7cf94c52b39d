"""flagstaff.plots: well-formed, escaped, deterministic SVG with one mark per variant."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from flagstaff.plots import COLOURS, counts_svg, interval_svg
from flagstaff.stats import Comparison, MetricKind, VariantStats, Verdict, compare

NS = {"svg": "http://www.w3.org/2000/svg"}
HOSTILE = '<script>alert("x")</script> & "b"'


def _comparisons() -> list[Comparison]:
    a = VariantStats.conversions("control", 10_000, 1_000)
    return [
        compare(MetricKind.BINOMIAL, a, VariantStats.conversions("blue", 10_000, 1_150)),
        compare(MetricKind.BINOMIAL, a, VariantStats.conversions(HOSTILE, 10_000, 860)),
        compare(MetricKind.BINOMIAL, a, VariantStats.conversions("same", 10_000, 1_010)),
    ]


def test_interval_svg_parses_has_one_interval_per_variant_and_colours_by_verdict() -> None:
    comparisons = _comparisons()
    assert [c.verdict for c in comparisons] == [Verdict.WIN, Verdict.LOSE, Verdict.FLAT]
    svg = interval_svg(comparisons, title="signup <rate>")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox")
    groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "interval" in (g.get("class") or "")]
    assert [g.get("data-variant") for g in groups] == ["blue", HOSTILE, "same"]
    fills = [g.find("svg:rect", NS).get("fill") for g in groups]  # type: ignore[union-attr]
    assert fills == [COLOURS["win"], COLOURS["lose"], COLOURS["flat"]]
    assert root.find("svg:title", NS).text == "signup <rate>"  # type: ignore[union-attr]
    assert len(root.findall("svg:line[@class='zero']", NS)) == 1


def test_interval_bars_sit_on_the_right_side_of_zero() -> None:
    root = ET.fromstring(interval_svg(_comparisons()))
    zero = float(root.find("svg:line[@class='zero']", NS).get("x1"))  # type: ignore[union-attr,arg-type]
    win, lose, flat = (g.find("svg:rect", NS) for g in root.iter("{http://www.w3.org/2000/svg}g"))
    assert float(win.get("x")) > zero  # type: ignore[union-attr,arg-type]
    assert float(lose.get("x")) + float(lose.get("width")) < zero  # type: ignore[union-attr,arg-type]
    assert float(flat.get("x")) < zero < float(flat.get("x")) + float(flat.get("width"))  # type: ignore[union-attr,arg-type]


def test_hostile_labels_are_escaped_and_output_is_deterministic() -> None:
    svg = interval_svg(_comparisons())
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg == interval_svg(_comparisons())
    series = {HOSTILE: [("2026-12-01", 10), ("2026-12-02", 30)], "control": [("2026-12-02", 25)]}
    counts = counts_svg(series)
    assert "<script>" not in counts
    assert counts == counts_svg(series)


def test_counts_svg_one_line_per_variant_over_the_shared_days() -> None:
    series = {
        "control": [("2026-12-01", 100), ("2026-12-02", 180), ("2026-12-03", 90)],
        "blue": [("2026-12-01", 95), ("2026-12-03", 110)],
    }
    root = ET.fromstring(counts_svg(series))
    lines = root.findall("svg:polyline[@class='series']", NS)
    assert [line.get("data-variant") for line in lines] == ["control", "blue"]
    for line in lines:
        assert len(line.get("points", "").split()) == 3  # blue's missing day counts 0
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "2026-12-01" in texts and "2026-12-03" in texts and "180" in texts


def test_empty_inputs_still_draw() -> None:
    ET.fromstring(interval_svg([]))
    ET.fromstring(counts_svg({}))
    ET.fromstring(counts_svg({"a": [("d", 0)]}))
