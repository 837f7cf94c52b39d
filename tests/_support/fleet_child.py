"""A process evaluating flags from a store in a loop, for the fleet fault tests (not a test module).

Usage: ``python fleet_child.py URL PROBE OTHERS``. The process connects a
:class:`flagstaff.Client` to URL and evaluates, in a bounded loop, the flag
PROBE for the users ``before`` and ``after`` and the flags ``f0`` ..
``f{OTHERS-1}`` (each expected on). It prints JSON lines on stdout:

- ``{"ready": t, "flags": n, "status": s}`` once the first load is done;
- ``{"state": s, "at": t}`` whenever what PROBE gives changes: ``before`` (on for
  user ``before`` only), ``after`` (for ``after`` only) or ``other``;
- ``{"done": ..., "evaluations": n, "exceptions": n, "mismatches": n, "errors": [...]}``
  when its stdin is closed (or the loop bound is hit).

Times are ``time.time()``, comparable with the parent's.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import flagstaff

LOOP_LIMIT = 2_000_000  # evaluation rounds; the parent ends us long before
TIME_LIMIT = 300.0  # seconds


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(url: str, probe: str, others: int) -> None:
    stop = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    client = flagstaff.connect(url, timeout=60)
    say(ready=time.time(), flags=client.status().flags, status=client.status().state.value)
    evaluations = exceptions = mismatches = 0
    errors: list[str] = []
    last = ""
    started = time.monotonic()
    for _ in range(LOOP_LIMIT):
        if stop.is_set() or time.monotonic() - started > TIME_LIMIT:
            break
        try:
            before = client.is_enabled(probe, {"user_name": "before"})
            after = client.is_enabled(probe, {"user_name": "after"})
            on = [client.is_enabled(f"f{i}") for i in range(others)]
            evaluations += 2 + others
        except Exception as exc:  # counted: the tests require none
            exceptions += 1
            if len(errors) < 5:
                errors.append(repr(exc))
            continue
        if not all(on):
            mismatches += 1
        state = "before" if before and not after else "after" if after and not before else "other"
        if state != last:
            say(state=state, at=time.time())
            last = state
        time.sleep(0.002)
    status = client.status()
    say(
        done=time.time(),
        evaluations=evaluations,
        exceptions=exceptions,
        mismatches=mismatches,
        errors=errors,
        status=status.state.value,
        flags=status.flags,
        last_error=status.last_error,
    )
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
