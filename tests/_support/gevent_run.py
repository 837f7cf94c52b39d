"""Run the client tests again with gevent monkey-patching (see test_client_gevent.py).

The client never imports threading for its work: it takes its tasks, events
and locks from the injected Runtime, which is the gevent one in a patched
process. This script proves it by running the same test modules on greenlets;
``FLAGSTAFF_EXPECT_RUNTIME`` makes them assert which runtime they got.

    .venv/bin/python tests/_support/gevent_run.py [pytest args...]
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

MODULES = [
    "tests/client/test_client.py",
    "tests/client/test_client_fork.py",
    "tests/client/test_client_stores.py",
]


def main() -> int:
    os.environ["FLAGSTAFF_EXPECT_RUNTIME"] = "gevent"
    args = sys.argv[1:] or MODULES
    return int(pytest.main(["-q", "-p", "no:cacheprovider", *args]))


if __name__ == "__main__":
    sys.exit(main())
