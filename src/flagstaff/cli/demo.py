"""``flagstaff demo``: load the example flags into a store and show decisions.

This is what ``make run`` runs. It imports ``examples/flags.json`` through the
validated write path (re-running it restores the examples; flags already
as in the file are not rewritten), then evaluates every flag
for a handful of typical visitors and prints what each gets and why.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from flagstaff.admin import Admin
from flagstaff.cli._files import read_flag_set
from flagstaff.cli._output import Out, UsageError, format_table
from flagstaff.context import Context
from flagstaff.decision import Decision, Reason
from flagstaff.evaluate import evaluate
from flagstaff.model import decode_document, parse_flag
from flagstaff.stores import open_store

__all__ = [
    "DEMO_USERS",
    "cell",
    "cmd_demo",
    "decide_all",
    "default_demo_store",
    "find_examples",
    "run_demo",
]

DEMO_USERS: dict[str, Context] = {
    "alice": Context(user_id="alice", user_name="alice", groups=frozenset({"employee"})),
    "bob": Context(user_id="bob", attributes={"plan": "pro", "app_version": "2.4.1"}),
    "carol": Context(user_id="carol", groups=frozenset({"beta"}), location="programming"),
    "qa-7": Context(user_id="qa-7", attributes={"plan": "free", "app_version": "2.4.1"}),
    "visitor": Context(cookie_id="c0ffee42", features=("inbox_v2",)),
}
"""A few typical visitors: an employee, a paying customer, a beta tester in a
subreddit, a QA account, and a logged-out visitor who asked for ``?feature=inbox_v2``."""


def find_examples(path: str | None = None) -> Path:
    """The flags file: ``path``, else ``examples/flags.json`` here, else the copy packaged
    with flagstaff (``flagstaff/data/flags.json``), so the demo works from an installed wheel."""
    if path is not None:
        return Path(path)
    here = Path.cwd() / "examples" / "flags.json"
    if here.exists():
        return here
    # In the source tree the packaged file is a symlink to examples/flags.json (one copy to
    # edit); building a wheel copies its content. Wheels install as plain files, so the
    # resource is a real path.
    return Path(str(resources.files("flagstaff").joinpath("data", "flags.json")))


def default_demo_store() -> str:
    """The SQLite file in the working directory when that store is available."""
    if importlib.util.find_spec("flagstaff.stores.sqlite") is not None:
        return "sqlite:///flagstaff.db"
    return "memory://demo"


def cmd_demo(args: argparse.Namespace, out: Out) -> int:
    """``flagstaff demo``: the store only when one was given (else :func:`default_demo_store`)."""
    return run_demo(
        store_url=args.store if args.store_given else None,
        flags_path=args.flags,
        out=out.stdout,
        as_json=out.json,
        author=args.author,
    )


def decide_all(
    documents: dict[str, Any], users: dict[str, Context], now: float
) -> list[tuple[str, str, Decision]]:
    """``(flag, user, decision)`` for every flag and user."""
    rows = []
    for name, doc in documents.items():
        flag = parse_flag(name, doc)
        for user, ctx in users.items():
            rows.append((name, user, evaluate(flag, ctx, now)))
    return rows


def run_demo(
    *,
    store_url: str | None = None,
    flags_path: str | None = None,
    out: TextIO,
    as_json: bool = False,
    author: str | None = None,
    now: float | None = None,
) -> int:
    """Load the examples, print decisions; returns the exit code."""
    path = find_examples(flags_path)
    if not path.exists():
        raise UsageError(f"cannot find the example flags at {path}; pass --flags FILE")
    documents = read_flag_set(str(path))
    url = store_url or default_demo_store()
    store = open_store(url)
    try:
        result = Admin(store, author=author).import_documents(documents)
        # Evaluate what the store holds now, as a client would.
        records = store.load().records
        stored = {name: decode_document(records[name].raw) for name in documents}
    finally:
        store.close()
    when = time.time() if now is None else now
    rows = decide_all(stored, DEMO_USERS, when)
    if as_json:
        data = {
            "store": url,
            "import": result.to_dict(),
            "decisions": [{"user": user, **d.to_dict()} for _, user, d in rows],
        }
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    out.write(
        f"Loaded {len(documents)} example flags from {_show_path(path)} into {url} "
        f"({len(result.created)} created, {len(result.updated)} updated, "
        f"{len(result.unchanged)} unchanged).\n\n"
    )
    out.write(_describe_users(DEMO_USERS))
    matrix: dict[str, dict[str, str]] = {}
    for name, user, decision in rows:
        matrix.setdefault(name, {})[user] = cell(decision, killable=isinstance(stored[name], dict))
    out.write(
        format_table(
            ["flag", *DEMO_USERS],
            [[name, *(cells[user] for user in DEMO_USERS)] for name, cells in matrix.items()],
        )
    )
    out.write("\nEach cell: on/off or the variant, and (what decided it).\n")
    if url.startswith("memory:"):
        out.write("\n(The flags lived in memory only; give --store sqlite:///flagstaff.db to keep them.)\n")
    else:
        cmd = _command() + ("" if store_url is None else f" --store {url}")
        out.write(f"\nTry: {cmd} check new_checkout --user bob\n then: {cmd} rollout new_checkout 100\n")
    return 0


def cell(decision: Decision, *, killable: bool = False) -> str:
    """A short answer with its reason: ``on (users)``, ``bm25 (regex)``, ``off``."""
    head = decision.variant or ("on" if decision.enabled else "off")
    reason = decision.reason
    if reason is Reason.TARGET:
        why = decision.rule
    elif reason is Reason.OFF:
        why = "kill switch" if killable else None  # a bare "off" needs no explanation
    elif reason in (Reason.ON, Reason.DEFAULT):
        why = None
    else:
        why = reason.value
    return f"{head} ({why})" if why else head


def _describe_users(users: dict[str, Context]) -> str:
    lines = ["Visitors:"]
    for name, ctx in users.items():
        facts: list[str] = []
        if ctx.user_id is not None:
            facts.append(f"user id {ctx.user_id}")
        else:
            facts.append(f"logged out, cookie {ctx.cookie_id}")
        if ctx.groups:
            facts.append("groups " + ",".join(sorted(ctx.groups)))
        if ctx.location:
            facts.append(f"in /r/{ctx.location}")
        if ctx.features:
            facts.append("?feature=" + ",".join(ctx.features))
        facts += [f"{k}={v}" for k, v in ctx.attributes.items()]
        lines.append(f"  {name:8} {'; '.join(facts)}")
    return "\n".join(lines) + "\n\n"


def _command() -> str:
    """How the user ran us, so the hint can be pasted: ``.venv/bin/flagstaff``…"""
    argv0 = Path(sys.argv[0])
    if argv0.name == "__main__.py":
        return f"{Path(sys.executable).name} -m flagstaff"
    found = shutil.which("flagstaff")
    if found is not None and Path(found).resolve() == argv0.resolve():
        return "flagstaff"
    return _show_path(argv0)


def _show_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
