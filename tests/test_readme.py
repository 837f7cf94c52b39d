"""The README's commands and its working example run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    first = blocks("sh")[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == ["make run", "make test"]
    assert README.index("make run") < 200
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_example_runs(tmp_path: Path) -> None:
    example = README[README.index("## A working example") :]
    shell, python = blocks("sh")[1], re.findall(r"```python\n(.*?)```", example, flags=re.S)[0]
    assert len(shell.splitlines()) + len(python.splitlines()) < 30
    env = {k: v for k, v in os.environ.items() if k != "FLAGSTAFF_STORE"}
    for line in shell.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "flagstaff"
        proc = subprocess.run(
            [sys.executable, "-m", "flagstaff", *argv[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
    proc = subprocess.run(
        [sys.executable, "-c", python],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "new checkout for alice"
    assert re.fullmatch(r"(True percentage percentage|False default None)", lines[1]), lines[1]
    assert (tmp_path / "flagstaff.db").exists()
