"""Run every ``benchmarks/bench_*.py`` and print one table.

Usage: ``python benchmarks/run.py [--quick] [--only NAME ...]``. Each module has
``run(quick: bool) -> list[Row]`` (see ``_row.py``). A module that fails is
reported in the table's footer and the exit status is 1; the others still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _row import Row  # noqa: E402  (needs the path set up above)


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(rows: list[Row]) -> str:
    header = ("group", "name", "value", "unit", "floor", "x floor", "target")
    table = [header]
    for r in rows:
        ratio = f"{r.value / r.floor:.2f}" if r.floor else "-"
        table.append((r.group, r.name, _fmt(r.value), r.unit, _fmt(r.floor), ratio, r.target))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {2, 4, 5}
    lines = []
    for n, row in enumerate(table):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds (each module < 10 s but bench_fleet: 1-2 min)"
    )
    parser.add_argument("--only", nargs="*", default=None, help="module names, e.g. bench_eval")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem not in args.only:
            continue
        t0 = time.perf_counter()
        try:
            rows.extend(_load(path).run(args.quick))
        except Exception:
            failed.append(path.stem)
            traceback.print_exc()
        print(f"# {path.stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"# python {platform.python_version()} on {platform.machine()}, quick={args.quick}")
    print(render(rows))
    print(f"# {len(rows)} rows in {time.perf_counter() - started:.1f} s")
    if failed:
        print(f"# FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
