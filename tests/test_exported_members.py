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


def test_every_error_is_exported_and_in_the_error_tree() -> None:
    # The errors module's docstring draws the hierarchy users catch against: each class in
    # flagstaff.errors.__all__ appears there, and is exported from the package too.
    from flagstaff import errors

    tree = errors.__doc__ or ""
    for name in errors.__all__:
        if name == "Problem":  # a value inside ValidationError, not an exception
            continue
        assert isinstance(getattr(errors, name), type), name
        assert f"── {name} " in tree or f"    {name}\n" in tree, (
            f"{name} missing from the error tree in flagstaff.errors"
        )
        assert getattr(flagstaff, name) is getattr(errors, name), name


def test_write_outcome_unknown_is_a_store_unavailable() -> None:
    # Code that catches StoreUnavailable (retry later, exit 5) still catches it; code that
    # knows better can tell "maybe applied" from "not applied".
    assert issubclass(flagstaff.WriteOutcomeUnknown, flagstaff.StoreUnavailable)
