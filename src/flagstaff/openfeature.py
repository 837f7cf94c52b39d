"""Moved to :mod:`flagstaff.integrations.openfeature`; this old import path still works."""

from flagstaff.integrations.openfeature import OVERRIDE, FlagstaffProvider, to_context

__all__ = ["OVERRIDE", "FlagstaffProvider", "to_context"]
