"""The evaluator: ``evaluate(flag, context, now) -> Decision``.

Pure: no I/O, no locks, no clock reads of its own (the time comes in as
``now`` or ``context.time``), and it never raises. It reads top to bottom in
evaluation order:

1. the master switch: ``"enabled": "off"``/``false`` beats every other key;
2. the schedule: outside ``[start, end)`` the flag is off;
3. the compiled checks, in order: a ``url`` forced variant, ``"enabled": "on"``,
   the selectors (``admin``, ``users``, ``rules``…), the percentages, and last
   the experiment; the first that decides wins;
4. nothing matched: off, with ``Reason.DEFAULT``.

A flag with a top-level ``variants`` list gives every enabled user one of them.
"""

from __future__ import annotations

import logging

from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.model import Flag

__all__ = ["evaluate", "unknown"]

_log = logging.getLogger("flagstaff.evaluate")


def evaluate(flag: Flag, context: Context, now: float | None = None) -> Decision:
    """Decide ``flag`` for ``context``. ``now`` (epoch seconds) overrides
    ``context.time`` for schedules; a scheduled flag with no time is an error."""
    constant = flag.constant
    if constant is not None:
        return constant
    try:
        if flag.schedule is not None:
            when = now if now is not None else context.time
            if when is None:
                return Decision(
                    flag.name, False, Reason.ERROR, error="flag has a schedule but no time was given"
                )
            if not flag.schedule.active(when):
                return flag.scheduled_off or Decision(flag.name, False, Reason.SCHEDULE, rule="schedule")
        # Steps 3 and 4, compiled by flagstaff.model into one function.
        return flag.run(context)
    except Exception as exc:  # evaluation never raises into the caller
        _log.debug("flag %r failed to evaluate", flag.name, exc_info=True)
        return Decision(flag.name, False, Reason.ERROR, error=f"{type(exc).__name__}: {exc}")


def unknown(name: str) -> Decision:
    """The decision for a flag that does not exist: off."""
    return Decision(name, False, Reason.UNKNOWN_FLAG, error=f"no flag named {name!r}")
