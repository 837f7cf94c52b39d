"""``flagstaff serve``'s tunables of the client-side endpoint and the change scheduler:
``--client-key-rate/-burst``, ``--client-address-rate/-burst`` and ``--schedule-interval``
reach the server that starts, and bad values stop it with a clear message."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flagstaff.http.app as http_app
from flagstaff.cli import main
from flagstaff.http.clientside import ClientSide
from flagstaff.http.scheduler import Scheduler


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``serve`` replaces the root logger's handlers with its own: put them back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *options: str) -> dict[str, Any]:
    """Run ``serve`` with ``options`` up to the app it builds: the real app is made, what it
    holds recorded, then the start is interrupted before it listens."""
    seen: dict[str, Any] = {}
    real_create_app = http_app.create_app
    schedulers: list[Scheduler] = []
    real_init = Scheduler.__init__

    def recording_init(self: Scheduler, state: Any, interval: float) -> None:
        real_init(self, state, interval)
        schedulers.append(self)

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = real_create_app(*args, **kwargs)
        state = app.state.flagstaff
        seen["settings"] = state.settings
        seen["key_buckets"] = (state.client_key_buckets.rate, state.client_key_buckets.burst)
        seen["address_buckets"] = (state.client_address_buckets.rate, state.client_address_buckets.burst)
        seen["scheduler_intervals"] = [s.interval for s in schedulers]
        app.state.environments.close()
        raise KeyboardInterrupt  # stop before uvicorn starts; serve closes its socket and returns

    monkeypatch.setattr(http_app, "create_app", create_app)
    monkeypatch.setattr(Scheduler, "__init__", recording_init)
    store = f"sqlite:///{tmp_path / 'flags.db'}"
    code = main(["--store", store, "serve", "--port", "0", "--log-level", "warning", *options])
    assert code != 0 and seen, "serve did not reach create_app"
    return seen


def test_defaults_are_the_settings_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, root_logging: None
) -> None:
    seen = started(monkeypatch, tmp_path)
    defaults = ClientSide()
    assert seen["settings"].clientside == defaults
    assert seen["key_buckets"] == (defaults.key_rate, defaults.key_burst)
    assert seen["address_buckets"] == (defaults.address_rate, defaults.address_burst)
    assert seen["settings"].schedule_interval == 5.0
    assert seen["scheduler_intervals"] == [5.0]


def test_options_reach_the_buckets_and_the_scheduler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, root_logging: None
) -> None:
    seen = started(
        monkeypatch,
        tmp_path,
        "--client-key-rate",
        "500",
        "--client-key-burst",
        "1000",
        "--client-address-rate",
        "0.5",
        "--client-address-burst",
        "4",
        "--client-origins",
        "https://app.example.com",
        "--schedule-interval",
        "0.25",
    )
    clientside = seen["settings"].clientside
    assert clientside.origins == ("https://app.example.com",)
    assert seen["key_buckets"] == (500.0, 1000.0)
    assert seen["address_buckets"] == (0.5, 4.0)
    assert seen["settings"].schedule_interval == 0.25
    assert seen["scheduler_intervals"] == [0.25]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--schedule-interval", "0"], "--schedule-interval must be a positive number of seconds, not 0"),
        (["--schedule-interval", "-3"], "--schedule-interval must be a positive number of seconds, not -3"),
        (["--schedule-interval", "nan"], "--schedule-interval must be a positive number of seconds, not nan"),
        (["--schedule-interval", "inf"], "--schedule-interval must be a positive number of seconds, not inf"),
        (["--client-key-rate", "0"], "--client-key-rate must be a positive number, not 0"),
        (["--client-address-rate", "-1"], "--client-address-rate must be a positive number, not -1"),
        (["--client-key-burst", "0.5"], "--client-key-burst must be at least 1 (a request), not 0.5"),
        (["--client-address-burst", "nan"], "--client-address-burst must be a positive number, not nan"),
    ],
)
def test_bad_values_stop_the_server_with_a_clear_message(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--store", "memory://", "serve", "--port", "0", *options]) == 2
    assert message in capsys.readouterr().err


def test_a_value_that_is_not_a_number_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--store", "memory://", "serve", "--client-key-rate", "fast"]) == 2
    assert "--client-key-rate: invalid float value: 'fast'" in capsys.readouterr().err


def test_client_side_settings_refuse_a_burst_below_one_request() -> None:
    with pytest.raises(ValueError, match="bursts must be at least 1 request"):
        ClientSide(address_burst=0.5)
    with pytest.raises(ValueError, match="must be positive"):
        ClientSide(key_rate=float("nan"))
