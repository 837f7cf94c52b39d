"""Importing an integration without its extra says which extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("flagstaff.integrations.openfeature", "openfeature", "openfeature"),
    ("flagstaff.integrations.flask", "flask", "flask"),
    ("flagstaff.integrations.jinja2", "jinja2", "jinja2"),
    ("flagstaff.integrations.mako", "mako", "mako"),
]

# The package is made unimportable the way a missing install is seen: None in sys.modules
# makes `import pkg` raise ModuleNotFoundError(name="pkg").
PROBE = """
import sys
sys.modules[{package!r}] = None
try:
    import {module}
except ModuleNotFoundError as exc:
    print(type(exc).__name__, exc.name, "|", exc)
else:
    print("imported")
"""


@pytest.mark.parametrize(("module", "package", "extra"), CASES)
def test_missing_extra_is_named(module: str, package: str, extra: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(package=package, module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    kind, _, message = proc.stdout.strip().partition(" | ")
    assert kind.startswith(f"ModuleNotFoundError {package}")  # still a ModuleNotFoundError
    assert f"pip install 'flagstaff[{extra}]'" in message
    assert module in message


def test_other_missing_modules_are_not_blamed_on_the_extra() -> None:
    from flagstaff._extras import missing_extra

    exc = ModuleNotFoundError("No module named 'somethingelse'", name="somethingelse")
    assert missing_extra(exc, "flask", "flask", "flagstaff.integrations.flask") is exc


def test_old_openfeature_path_names_the_extra() -> None:
    # flagstaff.openfeature (moved to flagstaff.integrations.openfeature) still says what to install.
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(package="openfeature", module="flagstaff.openfeature")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ModuleNotFoundError openfeature")
    assert "pip install 'flagstaff[openfeature]'" in proc.stdout
