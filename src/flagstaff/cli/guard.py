"""``flagstaff guard NAME --events PATH``: judge a flag's guardrails, and halt it.

::

    $ flagstaff guard checkout --events events.db
    checkout: BREACHED errors +3.1% [2.4, 3.8] > 2% (n 5210/5188)
    $ flagstaff guard checkout --events events.db --enforce --watch 300 --max-rounds 288
    checkout: halted: guard: errors +3.1% [2.4, 3.8] > 2% (n 5210/5188)

``--enforce`` turns a breached flag off through the writer (``enabled: false``, the
evidence as the history entry's author; see :mod:`flagstaff.guard`). ``--watch SECONDS``
checks again every SECONDS, at most ``--max-rounds`` times (default 1), stopping at a
halt. Exit status: 0 no guardrail breached, 1 breached (halted or not).
"""

from __future__ import annotations

import argparse
import time

from flagstaff.cli._files import opened
from flagstaff.cli._output import EXIT, Out, UsageError
from flagstaff.cli._registry import Commands

__all__ = ["cmd_guard", "register"]


def register(command: Commands) -> None:
    """Add ``flagstaff guard`` (see the module doc)."""
    p = command("guard", cmd_guard, "judge a flag's guardrails from the event store; --enforce halts it")
    p.add_argument("name", metavar="NAME", help="the flag")
    p.add_argument("--events", required=True, metavar="PATH", help="the SQLite event store")
    p.add_argument("--enforce", action="store_true", help="turn the flag off when a guardrail is breached")
    p.add_argument("--watch", type=float, default=None, metavar="SECONDS", help="check again every SECONDS")
    p.add_argument("--max-rounds", type=int, default=1, metavar="N", help="with --watch: at most N checks")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided significance (default 0.05)")


def cmd_guard(args: argparse.Namespace, out: Out) -> int:
    from flagstaff.admin import Admin
    from flagstaff.guard import Guard, GuardVerdict

    if args.max_rounds < 1:
        raise UsageError("--max-rounds must be at least 1")
    if args.watch is not None and args.watch < 0:
        raise UsageError("--watch must be 0 or more seconds")

    def show(verdict: GuardVerdict) -> None:
        if out.json:
            out.emit(verdict.to_dict())
            return
        if verdict.halted:
            out.line(f"{verdict.flag}: halted: {verdict.evidence}")
        elif not verdict.results:
            out.line(f"{verdict.flag}: no guardrails")
        for r in verdict.results:
            state = "BREACHED" if r.breached else "ok"
            extra = f" ({r.problem})" if r.problem else ""
            out.line(f"{verdict.flag}: {state} {r.evidence}{extra}")

    with opened(args.store) as store:
        guard = Guard(Admin(store, author=args.author), args.events, alpha=args.alpha)
        step = guard.enforce if args.enforce else guard.check
        rounds = 1 if args.watch is None else args.max_rounds
        try:
            for i in range(rounds):
                if i:
                    time.sleep(args.watch)
                verdict = step(args.name)
                show(verdict)
                if verdict.halted:
                    break
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    return EXIT.NO if verdict.breached else EXIT.OK
