"""A pytest plugin: pin flags for one test, restored after it.

Installed with flagstaff (entry point ``pytest11``), it gives every test suite
two fixtures and one marker::

    def test_new_checkout(flagstaff_flags):
        flagstaff_flags.pin(new_checkout="on", button_color="variant:green")
        assert checkout_page().uses_new_flow

    @pytest.mark.flagstaff(new_checkout="off")
    def test_old_checkout(flagstaff_flags): ...

``flagstaff_flags`` pins through the override layer (:mod:`flagstaff.overrides`)
of the client that the ``flagstaff_client`` fixture returns: by default a fresh
client over an empty ``memory://`` store, closed after the test. Have the fixture
return the client your code uses by overriding it in your ``conftest.py``::

    @pytest.fixture
    def flagstaff_client():
        return myapp.flags          # the application's flagstaff.Client

A pinned value is what ``--flag NAME=VALUE`` takes (``"on"``, ``"off"``, ``25``,
``"variant:green"``, a flag document). The store is never written, and the
overrides the client had before the test (say from ``FLAGSTAFF_OVERRIDES``)
are put back after it, whatever the test did.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from flagstaff.client import Client, connect
from flagstaff.model import Flag
from flagstaff.overrides import compile_overrides, parse_override

__all__ = ["FlagPins", "flagstaff_client", "flagstaff_flags"]

SOURCE = "pytest"


class FlagPins:
    """Flags pinned on one client for one test; :meth:`restore` undoes them all."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._saved: Mapping[str, Flag] = client.overrides

    def pin(self, flags: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        """Pin each ``name=value`` (a ``--flag`` value string, or a flag document)."""
        given = {**(flags or {}), **more}
        documents = {
            name: parse_override(f"{name}={value}")[1] if isinstance(value, str) else value
            for name, value in given.items()
        }
        self.client.set_overrides({**self.client.overrides, **compile_overrides(documents, SOURCE)})

    def __setitem__(self, name: str, value: Any) -> None:
        self.pin({name: value})

    def unpin(self, *names: str) -> None:
        """Serve these flags from the store again (or as they were before the test)."""
        current = dict(self.client.overrides)
        for name in names:
            if name in self._saved:
                current[name] = self._saved[name]
            else:
                current.pop(name, None)
        self.client.set_overrides(current)

    def restore(self) -> None:
        """Put back the overrides the client had before the test."""
        self.client.set_overrides(self._saved)


@pytest.fixture
def flagstaff_client() -> Iterator[Client]:
    """The client ``flagstaff_flags`` pins on: override it to return yours."""
    client = connect("memory://", timeout=5.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def flagstaff_flags(request: pytest.FixtureRequest, flagstaff_client: Client) -> Iterator[FlagPins]:
    """Pin flags for this test (``.pin(name=value)``, ``[name] = value``)."""
    pins = FlagPins(flagstaff_client)
    try:
        for marker in reversed(list(request.node.iter_markers("flagstaff"))):  # closest marker wins
            pins.pin(*marker.args, **marker.kwargs)
        yield pins
    finally:
        pins.restore()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "flagstaff(**flags): pin flags for this test through the flagstaff_flags fixture"
    )
