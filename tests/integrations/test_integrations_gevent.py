"""The web integration tests, run a second time under gevent monkey-patching.

tests/_support/gevent_run.py patches the process first, so the threaded WSGI servers in
these modules run each request on a greenlet, and ``flags`` must still give
each request its own scope (a ContextVar is per greenlet).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "tests/integrations/test_integrations_wsgi.py",
    "tests/integrations/test_integrations_flask.py",
    "tests/integrations/test_integrations_django.py",
]
# asyncio under a gevent-patched process is not a combination anyone deploys
# (asgiref refuses it): Django's async handler test runs on threads only.
DESELECT = ["-k", "not asgi_handler"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_web_integrations_pass_under_gevent() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_support" / "gevent_run.py"), *MODULES, *DESELECT],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert "1 deselected" in proc.stdout, proc.stdout[-2000:]
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "failed" not in proc.stdout, tail
