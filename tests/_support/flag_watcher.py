"""A separate process that follows one flag, as a service using flagstaff would.

Run by the browser tests (``python tests/_support/flag_watcher.py STORE_URL FLAG USER_ID``):
it connects a :class:`flagstaff.Client` to the store, prints ``ready on|off``
once it has loaded, then ``change on|off REASON`` each time the decision for
that user changes. It exits when its standard input closes or after
``--seconds`` (a bound, so a failed test can never leave it running).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import flagstaff


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("flag")
    parser.add_argument("user")
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the test closed our stdin
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    deadline = time.monotonic() + args.seconds
    context = {"user_id": args.user}
    with flagstaff.connect(args.store, timeout=30.0) as client:
        last = client.evaluate(args.flag, context)
        print("ready", "on" if last.enabled else "off", last.reason.value, flush=True)
        while not stop.is_set() and time.monotonic() < deadline:
            client.wait_for_change(args.flag, 0.5, context)
            # Compare with what was printed, not with what wait_for_change saw at
            # its call: a change landing between two waits is then not missed.
            now = client.evaluate(args.flag, context)
            if (now.enabled, now.variant) != (last.enabled, last.variant):
                print("change", "on" if now.enabled else "off", now.reason.value, flush=True)
                last = now
    return 0


if __name__ == "__main__":
    sys.exit(main())
