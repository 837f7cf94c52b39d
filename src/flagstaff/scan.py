"""Moved to :mod:`flagstaff.cli.scan` (``flagstaff scan``); this old import path still works."""

from flagstaff.cli.scan import (
    CATEGORIES,
    Finding,
    Reference,
    Report,
    find_references,
    find_template_references,
    parse_created,
    register,
    scan,
)

__all__ = [
    "CATEGORIES",
    "Finding",
    "Reference",
    "Report",
    "find_references",
    "find_template_references",
    "parse_created",
    "register",
    "scan",
]
