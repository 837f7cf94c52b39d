"""The public surface: ``flagstaff.__all__`` is sorted, complete and importable."""

from __future__ import annotations

import types

import flagstaff


def test_all_is_sorted() -> None:
    assert flagstaff.__all__ == sorted(flagstaff.__all__)


def test_all_is_importable() -> None:
    for name in flagstaff.__all__:
        assert getattr(flagstaff, name) is not None, name


def test_all_is_complete() -> None:
    # Every public name the package module defines or imports is listed (modules aside).
    public = {
        name
        for name, value in vars(flagstaff).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(flagstaff.__all__)
