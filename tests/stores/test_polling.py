"""A polled watch survives a step that raises what it did not foresee."""

from __future__ import annotations

import logging

import pytest

from flagstaff.runtime import ThreadRuntime
from flagstaff.stores._polling import PollingWatch
from flagstaff.stores.base import Reset, WatchEvent
from flagstaff.testing import wait_until


class _Flaky(PollingWatch):
    def __init__(self, on_event: list[WatchEvent]) -> None:
        super().__init__(ThreadRuntime(), on_event.append, "test", lambda watch: None)
        self.steps = 0
        self._start("flagstaff-test-follow")

    def _step(self) -> float:
        self.steps += 1
        if self.steps == 1:
            raise RuntimeError("a bug in a step")
        if self.steps == 2:
            self._queue.push(Reset("after the bug"))
        return 0.01


def test_a_step_that_raises_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    events: list[WatchEvent] = []
    with caplog.at_level(logging.ERROR, logger="flagstaff.stores"):
        watch = _Flaky(events)
        try:
            wait_until(lambda: events, 5.0, message="the watch stopped after its step raised")
        finally:
            watch.stop()
    assert events == [Reset("after the bug")]
    assert watch.steps >= 2
    assert any("a bug in a step" in (r.exc_text or "") or r.exc_info for r in caplog.records)
