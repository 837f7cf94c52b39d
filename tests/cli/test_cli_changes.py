"""``flagstaff change``: against a running server (a real uvicorn on loopback) and on the local store."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagstaff.admin import Admin
from flagstaff.cli import main
from flagstaff.http.app import Settings, create_app
from flagstaff.http.tokens import Permission
from flagstaff.stores import open_store
from tests._support.http_server import ServerThread, make_token


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    app = create_app(f"sqlite:///{tmp_path}/flags.db", settings=Settings(requires_approval=True))
    state = app.state.flagstaff
    state.admin.set("checkout", 10)
    with ServerThread(app) as server:
        yield server.url, state
    state.close()


def test_propose_approve_apply_against_a_server(
    served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = served
    monkeypatch.setenv("FLAGSTAFF_TOKEN", make_token(state, Permission.WRITE, "alice"))
    code, out, _ = run(
        "change", "propose", "checkout", "--document", "50", "--comment", "half", "--url", url, "--json"
    )
    assert code == 0
    change = json.loads(out)
    assert change["status"] == "pending" and change["base_version"] == 1
    code, _, err = run("change", "approve", str(change["id"]), "--url", url)
    assert code == 1 and "approve token" in err  # alice's token is a write token
    monkeypatch.setenv("FLAGSTAFF_TOKEN", make_token(state, Permission.APPROVE, "bob"))
    code, out, _ = run("change", "approve", str(change["id"]), "--url", url)
    assert code == 0 and "approved by bob" in out
    code, out, _ = run("change", "list", "--url", url, "--status", "approved")
    assert code == 0 and "checkout" in out and "bob" in out
    code, out, _ = run("change", "apply", str(change["id"]), "--url", url)
    assert code == 0 and "applied as version 2" in out
    assert state.store.get("checkout").raw == "50"
    code, _, err = run("change", "show", "999", "--url", url)
    assert code == 3 and "no change request #999" in err


def test_a_stale_apply_prints_what_changed_and_exits_4(
    served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = served
    alice = make_token(state, Permission.WRITE, "alice")
    monkeypatch.setenv("FLAGSTAFF_TOKEN", alice)
    _, out, _ = run("change", "propose", "checkout", "--document", "50", "--url", url, "--json")
    change_id = str(json.loads(out)["id"])
    monkeypatch.setenv("FLAGSTAFF_TOKEN", make_token(state, Permission.APPROVE, "bob"))
    assert run("change", "approve", change_id, "--url", url)[0] == 0
    state.admin.set("checkout", 20)  # someone changed it out of band
    monkeypatch.setenv("FLAGSTAFF_TOKEN", alice)
    code, _, err = run("change", "apply", change_id, "--url", url)
    assert code == 4
    assert "changed after the proposal" in err and "-10" in err and "+20" in err


def test_locally_the_author_is_the_identity(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/flags.db"
    store = open_store(url)
    Admin(store, author="seed").set("checkout", 10)
    store.close()
    code, out, err = run(
        "--store", url, "--author", "alice", "change", "propose", "checkout", "--document", "30", "--json"
    )
    assert code == 0, err
    change_id = str(json.loads(out)["id"])
    code, _, err = run("--store", url, "--author", "alice", "change", "approve", change_id)
    assert code == 1 and "someone else must approve it" in err
    assert run("--store", url, "--author", "bob", "change", "approve", change_id)[0] == 0
    code, out, _ = run("--store", url, "--author", "alice", "change", "apply", change_id)
    assert code == 0 and "applied as version 2" in out
    store = open_store(url)
    try:
        assert store.get("checkout").raw == "30"  # type: ignore[union-attr]
        author = store.history("checkout", limit=1)[0].author
        assert author is not None and author.startswith(
            f"alice (approved by bob, change request #{change_id})"
        )
    finally:
        store.close()
    assert (tmp_path / "flags.db.changes").exists()  # beside the token database, as serve uses it
    code, _, err = run("--store", url, "change", "propose", "checkout")
    assert code == 2 and "--document" in err
