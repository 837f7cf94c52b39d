"""How a command answers: its exit code, its table or JSON on stdout, its notes on stderr.

Every command module and every extension (:mod:`flagstaff.compat.cli`,
:mod:`flagstaff.http.cli`) writes through :class:`Out` and returns an
:class:`EXIT` code; :class:`UsageError` and :class:`Failed` are the two errors
that only the command line raises (``main`` turns every error into its exit
code and one line on stderr). This module imports nothing else of the CLI, so an
extension can use it without pulling in the commands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

from flagstaff.document import decode_document, printable_text
from flagstaff.errors import FlagstaffError, ValidationError

__all__ = ["EXIT", "Failed", "Out", "ProgressBar", "UsageError", "compact", "decoded", "format_table"]


class EXIT:
    """Exit codes scripts can rely on (see :mod:`flagstaff.cli`)."""

    OK = 0
    NO = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    UNAVAILABLE = 5
    OUTCOME_UNKNOWN = 6
    INTERRUPTED = 130


class UsageError(FlagstaffError):
    """Bad arguments or an unreadable input file (exit 2)."""


class Failed(FlagstaffError):
    """A command's answer is "no" and it has already said why (exit 1)."""


class Out:
    """Where a command writes: a table or JSON on stdout, notes on stderr."""

    def __init__(self, as_json: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json = as_json
        self.stdout = stdout
        self.stderr = stderr

    def emit(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.stdout.write(format_table(headers, rows))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """An aligned, plain-text table (two spaces between columns)."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def compact(value: Any) -> str:
    """A document on one line, keys sorted (``diff`` and ``watch`` lines)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def decoded(raw: str) -> Any:
    """The stored document, or, when it is none, its text made printable (bad bytes escaped)."""
    try:
        return decode_document(raw)
    except ValidationError:
        return printable_text(raw)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn in place (no dependency)."""

    def __init__(self, stream: TextIO, label: str, width: int = 30) -> None:
        self.stream = stream
        self.label = label
        self.width = width
        self._last = -1.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return  # redraw at most ten times a second
        self._last = now
        frac = done / total if total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {frac:4.0%}")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
