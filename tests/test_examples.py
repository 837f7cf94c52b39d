"""Every script in examples/ runs and prints what its docstring promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> patterns its output must contain
EXPECTED: dict[str, list[str]] = {
    "evaluate_a_flag.py": [
        r"alice \(named in users\)\s+enabled=True\s+reason=target rule=users",
        r"an employee\s+enabled=True\s+reason=target rule=employee",
        r"a logged-out visitor\s+enabled=False reason=default",
    ],
    "admin_writes.py": [
        r"refused: invalid flag 'fast_checkout': percentage: must be a number between 0 and 100",
        r"v3 by release-bot: 50\n",
        r'v5 by release-bot: \{"enabled":false,"percentage":50,"users":\["qa-lead"\]\}',
        r'v6 by release-bot: \{"percentage":50,"users":\["qa-lead"\]\}',
    ],
    "experiment_split.py": [
        r"control_1\s+(9\.\d|10\.\d)%",
        r"green\s+2\d\.\d%",
        r"user1 always gets \w+",
    ],
    "schedule_at_midnight.py": [
        r"2026-12-31T23:59:59\+00:00  enabled=False  reason=schedule",
        r"2027-01-01T00:00:00\+00:00  enabled=True  reason=target",
    ],
    "local_overrides.py": [
        r"alice: new_checkout=False \(default\), search_ranker=None \(default\), dark_mode=True",
        r"store untouched: 25",
    ],
    "web_flask.py": [
        r"GET /\?user=alice\s+-> light page, new checkout",
        r"GET /\?user=bob\s+-> dark page, old checkout",
        r"GET /\s+-> light page, old checkout",
    ],
    "web_django.py": [
        r"GET /\?user=alice\s+-> light page, new checkout",
        r"GET /\?user=bob\s+-> dark page, old checkout",
        r"GET /\s+-> light page, old checkout",
    ],
    "web_starlette.py": [
        r"GET /\?user=alice\s+-> new checkout\nGET /\?user=bob\s+-> old checkout\nGET /\s+-> old checkout",
    ],
    "templates_jinja2.py": [r"Hi alice: the new digest \(compact\)", r"Hi bob: the classic digest"],
    "templates_mako.py": [
        r"user=alice\s+-> new sidebar",
        r"user=bob\s+-> old sidebar",
        r"feature=sidebar\s+-> old sidebar",  # unsigned: anyone could type it, so it forces nothing
        r"feature=<token>\s+-> new sidebar",  # a signed forcing token does
    ],
    "asyncio_wait.py": [r"dark mode on\? False", r"changed: True on"],
}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for pattern in EXPECTED[script]:
        assert re.search(pattern, proc.stdout), f"{script}: {pattern!r} not in:\n{proc.stdout}"


def test_web_examples_serve_on_distinct_ports_clear_of_flagstaff_serve() -> None:
    import ast

    ports = {}
    for name in ("web_flask.py", "web_django.py", "web_starlette.py"):
        tree = ast.parse((EXAMPLES / name).read_text())
        (port,) = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["PORT"]
            and isinstance(node.value, ast.Constant)
        ]
        ports[name] = port
        assert ":8000" not in (EXAMPLES / name).read_text(), name
    assert len(set(ports.values())) == len(ports), ports
    assert 8000 not in ports.values()  # flagstaff serve's default
