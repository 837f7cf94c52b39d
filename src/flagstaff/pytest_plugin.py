"""Moved to :mod:`flagstaff.testing.pytest_plugin`; this old path still loads the plugin.

Installs whose ``pytest11`` entry point still names ``flagstaff.pytest_plugin``
get the same fixtures, marker and hook from here.
"""

from flagstaff.testing.pytest_plugin import (
    FlagPins,
    flagstaff_client,
    flagstaff_flags,
    pytest_configure,
)

__all__ = ["FlagPins", "flagstaff_client", "flagstaff_flags", "pytest_configure"]
