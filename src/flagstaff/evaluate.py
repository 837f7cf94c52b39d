"""The evaluator: ``evaluate(flag, context, now) -> Decision``.

Pure: no I/O, no locks, no clock reads of its own (the time comes in as
``now`` or ``context.time``), and it never raises. It reads top to bottom in
evaluation order:

1. the master switch: ``"enabled": "off"``/``false`` beats every other key;
2. ``deny``: off with ``Reason.DENIED`` (compiled as the first check of ``run``; a
   flag with a schedule asks ``run`` when the schedule is not active);
3. the schedule: outside ``[start, end)`` the flag is off (a flag with a ``ramp`` has
   an always-active schedule, so it too needs the time);
4. the compiled checks, in order: ``prerequisites``, a ``url`` forced variant,
   ``"enabled": "on"``, the selectors (``admin``, ``users``, ``rules``…), the
   percentages (a ``ramp``'s step at that time is the flag-level percentage), the
   experiment, and the ``targeting`` rules; the first that decides wins;
5. nothing matched: the ``default`` serve, else off with ``Reason.DEFAULT``.

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
    ``context.time`` for schedules and ramps; a scheduled (or ramped) flag with no time
    is an error."""
    constant = flag.constant
    if constant is not None:
        return constant
    try:
        if flag.timed:  # a schedule, or prerequisites: both read the time
            when = now if now is not None else context.time
            if (flag.requires or flag.ramp is not None) and now is not None and context.time != now:
                # A prerequisite, and a ramp's step, are decided from the context alone:
                # give it this moment.
                context = context.with_time(now)
            if flag.schedule is not None and (when is None or not flag.schedule.active(when)):
                if flag.denies:  # deny comes before the schedule; run checks it first
                    denied = flag.run(context)
                    if denied.reason is Reason.DENIED:
                        return denied
                if when is None:
                    what = "a ramp" if flag.ramp is not None else "a schedule"
                    return Decision(
                        flag.name, False, Reason.ERROR, error=f"flag has {what} but no time was given"
                    )
                return flag.scheduled_off or Decision(flag.name, False, Reason.SCHEDULE, rule="schedule")
        # Steps 2 and 4, compiled by flagstaff.model into one function (flagstaff.checks).
        return flag.run(context)
    except Exception as exc:  # evaluation never raises into the caller
        _log.debug("flag %r failed to evaluate", flag.name, exc_info=True)
        return Decision(flag.name, False, Reason.ERROR, error=f"{type(exc).__name__}: {exc}")


def unknown(name: str) -> Decision:
    """The decision for a flag that does not exist: off."""
    return Decision(name, False, Reason.UNKNOWN_FLAG, error=f"no flag named {name!r}")
