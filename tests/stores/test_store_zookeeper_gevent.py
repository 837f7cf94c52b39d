"""The ZooKeeper store's conformance suite again, under gevent.

gevent needs the process monkey-patched before anything else is imported, so
the suite runs in a child pytest: ``monkey.patch_all()`` first, then the
conformance class of ``test_store_zookeeper.py`` (and the session expiry
test, and the tree watch's: its notices are routed through kazoo's gevent
handler too). There the store picks the gevent runtime by itself and kazoo's
``SequentialGeventHandler``; ``FLAGSTAFF_EXPECT_RUNTIME`` makes the child
check that it really did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.zk_server import require_zookeeper

_CHILD = (
    "from gevent import monkey; monkey.patch_all()\nimport sys, pytest\nsys.exit(pytest.main(sys.argv[1:]))\n"
)


@pytest.mark.timeout(240)
def test_conformance_under_gevent() -> None:
    pytest.importorskip("gevent")
    require_zookeeper()
    here = Path(__file__).parents[1]
    env = {**os.environ, "FLAGSTAFF_EXPECT_RUNTIME": "gevent"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(here / "stores" / "test_store_zookeeper.py"),
            "-k",
            "TestZooKeeperStore or session_expiry_resets or bare_kazoo or digest_acl"
            " or other_clients_arrive or reconnect_registers",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        check=False,
        cwd=here.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed is not None and int(passed.group(1)) >= 25, tail
    assert "skipped" not in proc.stdout, tail
