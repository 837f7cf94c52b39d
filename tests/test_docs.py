"""The code in README.md and docs/*.md runs as written.

Every ```python block runs in a fresh interpreter, in an empty working directory. A block may
need names it does not define (``client``, a Flask ``app``): an HTML comment right above it,
invisible when rendered, supplies them::

    <!-- doc-test
    import flagstaff
    client = flagstaff.connect("memory://")
    replace: redis://localhost:6379/0 => {redis}
    -->

``replace: OLD => NEW`` lines edit the block before it runs (``{redis}`` is a throwaway Redis
server's URL); the other lines run first, except those after a line ``then:``, which run after
the block (to exercise what it defined, e.g. send a request through a middleware). A block
that cannot run here says why instead: ``<!-- not-run: reason -->``; that list is kept short
and checked below. Top-level ``await`` and ``async with`` are allowed (as in an asyncio REPL).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._support.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

_BLOCK = re.compile(
    r"(?:<!--\s*(?P<kind>doc-test|not-run:)(?P<note>(?:(?!-->).)*?)-->\s*\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)```",
    re.S,
)

# Runs a block: top-level await allowed, like `python -m asyncio`.
_DRIVER = """
import ast, asyncio, sys
source = sys.stdin.read()
code = compile(source, "<doc block>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
result = eval(code, {"__name__": "__main__"})
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    code: str
    setup: str
    then: str
    replacements: tuple[tuple[str, str], ...]
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(lang: str) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for m in _BLOCK.finditer(text):
            if m["lang"] != lang:
                continue
            setup_lines: list[str] = []
            then_lines: list[str] = []
            replacements = []
            if m["kind"] == "doc-test":
                target = setup_lines
                for line in m["note"].strip("\n").splitlines():
                    if line.startswith("replace:"):
                        old, _, new = line[len("replace:") :].partition("=>")
                        replacements.append((old.strip(), new.strip()))
                    elif line.strip() == "then:":
                        target = then_lines
                    else:
                        target.append(line)
            found.append(
                Block(
                    doc=str(path.relative_to(REPO)),
                    line=text.count("\n", 0, m.start("code")) + 1,
                    lang=lang,
                    code=m["code"],
                    setup="\n".join(setup_lines),
                    then="\n".join(then_lines),
                    replacements=tuple(replacements),
                    not_run=m["note"].strip() if m["kind"] == "not-run:" else None,
                )
            )
    return found


PYTHON = blocks("python")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTAFF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("block", [b for b in PYTHON if b.not_run is None], ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code = block.code
    for old, new in block.replacements:
        assert old in code, f"{block.id}: replace target {old!r} is not in the block"
        url = request.getfixturevalue("redis_url") if "{redis}" in new else ""
        code = code.replace(old, new.replace("{redis}", url))
    source = f"{block.setup}\n{code}\n{block.then}"
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER],
        input=source,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id} failed:\n{source}\n{proc.stderr}"


SHELL = blocks("sh")


def _flagstaff_block(block: Block) -> bool:
    """A shell block of `flagstaff` commands (other tools' blocks, zkCli.sh, curl, are not ours)."""
    lines = [line for line in block.code.splitlines() if line.strip() and not line.startswith("#")]
    return bool(lines) and all(line.startswith("flagstaff ") for line in lines)


@pytest.mark.parametrize(
    "block", [b for b in SHELL if b.not_run is None and _flagstaff_block(b)], ids=lambda b: b.id
)
def test_shell_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Run by bash with the installed console script first on PATH: what a reader types after
    # `. .venv/bin/activate`. Set-up lines are shell too.
    code = block.code
    for old, new in block.replacements:
        assert old in code, f"{block.id}: replace target {old!r} is not in the block"
        url = request.getfixturevalue("redis_url") if "{redis}" in new else ""
        code = code.replace(old, new.replace("{redis}", url))
    env = _env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    script = f"set -euo pipefail\n{block.setup}\n{code}\n{block.then}"
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{block.id} failed:\n{script}\n{proc.stdout}\n{proc.stderr}"


def test_blocks_not_run_are_few_and_say_why() -> None:
    skipped = [b for b in [*PYTHON, *SHELL] if b.not_run is not None]
    assert len(PYTHON) >= 20  # the extraction finds the blocks
    assert sum(_flagstaff_block(b) for b in SHELL) >= 5
    assert len(skipped) <= 5, [b.id for b in skipped]
    for b in skipped:
        assert len(b.not_run or "") > 20, f"{b.id}: say why it cannot run here"


def test_one_database_name_everywhere() -> None:
    # Copied code that reads flags.db while the CLI writes flagstaff.db sees an empty store.
    for path in [*DOCS, *(REPO / "src").rglob("*.py"), *(REPO / "examples").glob("*.py")]:
        assert "flags.db" not in path.read_text(), path


def test_readme_links_every_doc() -> None:
    readme = (REPO / "README.md").read_text()
    for path in (REPO / "docs").glob("*.md"):
        assert f"(docs/{path.name})" in readme, path.name


def test_readme_says_how_to_reach_the_command_after_setup() -> None:
    readme = (REPO / "README.md").read_text()
    assert ". .venv/bin/activate" in readme
    makefile = (REPO / "Makefile").read_text()
    assert "pip install -q -e '.[" in makefile  # the venv gets the `flagstaff` console script


def test_readme_shell_commands_run_with_the_console_script(tmp_path: Path) -> None:
    # What a newcomer types after activating .venv: the installed `flagstaff` script.
    script = Path(sys.executable).parent / "flagstaff"
    example = (REPO / "README.md").read_text().split("## A working example", 1)[1]
    shell = re.findall(r"```sh\n(.*?)```", example, flags=re.S)[0]
    for line in shell.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[0] == "flagstaff"
        proc = subprocess.run(
            [str(script), *argv[1:]],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=_env(),
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
