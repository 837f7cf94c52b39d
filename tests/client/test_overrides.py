"""Local overrides: parsing, the client's override layer, argparse, click and the environment."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flagstaff import Client, Options, Reason, SnapshotChange, ValidationError
from flagstaff.admin import Admin
from flagstaff.overrides import (
    ENV_VAR,
    add_argument,
    click_option,
    from_env,
    install,
    override_flag,
    parse_override,
)
from flagstaff.stores import open_store
from flagstaff.stores.memory import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    s = MemoryStore()
    admin = Admin(s, author="test")
    admin.set("checkout", "off")
    admin.set("color", {"enabled": "on", "variants": ["red"]})
    admin.set("exp", {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 25, "b": 25}}})
    yield s
    s.close()


@pytest.fixture
def client(store: MemoryStore) -> Iterator[Client]:
    with Client(store, Options(timeout=5)) as c:
        yield c


@pytest.mark.parametrize(
    ("spec", "document"),
    [
        ("a=on", "on"),
        ("a=off", "off"),
        ("a=25", 25),
        ("a = 12.5 ", 12.5),
        ("a=variant:blue", {"enabled": "on", "variants": ["blue"]}),
        ("a=true", True),
        ('a={"users": ["x", "y"]}', {"users": ["x", "y"]}),
        ("a=b=c", None),  # only the first '=' splits: "b=c" is not a value
    ],
)
def test_parse_override(spec: str, document: object) -> None:
    if document is None:
        with pytest.raises(ValidationError, match="must be on, off, a number"):
            parse_override(spec)
    else:
        assert parse_override(spec) == ("a", document)


@pytest.mark.parametrize("spec", ["a", "=on", "a=", "a=maybe", "a=variant:"])
def test_parse_override_refuses(spec: str) -> None:
    with pytest.raises(ValidationError, match=r"override .*(NAME=VALUE|must be on, off|needs a NAME)"):
        parse_override(spec)


def test_override_flag_validates_the_document() -> None:
    with pytest.raises(ValidationError, match="between 0 and 100"):
        override_flag("a", 150, "test")


def test_env_splits_outside_json() -> None:
    env = {ENV_VAR: 'a=on, b=off,c={"users": ["x", "y,z"]},d=variant:v1,'}
    assert from_env(env) == {
        "a": "on",
        "b": "off",
        "c": {"users": ["x", "y,z"]},
        "d": {"enabled": "on", "variants": ["v1"]},
    }
    assert from_env({}) == {}
    assert from_env({ENV_VAR: "  "}) == {}


def test_override_wins_and_says_so(client: Client, store: MemoryStore) -> None:
    assert client.evaluate("checkout").reason is Reason.OFF
    install(client, ["checkout=on", "color=variant:blue", "brand_new=variant:x"], environ={})
    d = client.evaluate("checkout", "u1")
    assert (d.enabled, d.reason, d.rule) == (True, Reason.OVERRIDE, "--flag")
    assert client.is_enabled("checkout", "u1") and client.is_enabled("checkout")
    assert client.variant("color", "u1") == "blue"
    assert client.evaluate("brand_new").variant == "x"  # a flag the store does not have
    assert client.all("u1")["color"].reason is Reason.OVERRIDE
    with client.scope("u1") as scope:
        assert scope.evaluate("checkout").reason is Reason.OVERRIDE
        assert client.is_enabled("checkout")
    # The store was not touched.
    assert json.loads(store.get("checkout").raw) == "off"  # type: ignore[union-attr]
    assert "brand_new" not in store.load().records


def test_override_of_a_percentage_depends_on_the_user(client: Client) -> None:
    install(client, ["checkout=50"], environ={})
    decisions = [client.evaluate("checkout", f"user{i}") for i in range(400)]
    on = sum(d.enabled for d in decisions)
    assert 120 < on < 280
    assert {d.reason for d in decisions} == {Reason.OVERRIDE}


def test_store_changes_are_held_under_an_override(client: Client, store: MemoryStore) -> None:
    install(client, ["checkout=on"], environ={})
    Admin(store).set("checkout", {"users": ["u9"]})
    deadline = time.monotonic() + 10
    while '"users"' not in client.snapshot.flags["checkout"].document:  # the watch applied it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.evaluate("checkout", "u1").reason is Reason.OVERRIDE
    install(client, [], environ={})  # clear: the store's newest version shows
    assert client.overrides == {}
    d = client.evaluate("checkout", "u9")
    assert (d.enabled, d.reason) == (True, Reason.TARGET)


def test_override_reports_no_exposure(store: MemoryStore) -> None:
    exposures: list[str] = []
    with Client(store, Options(timeout=5, on_exposure=lambda d, c: exposures.append(d.flag))) as c:
        for i in range(50):
            c.evaluate("exp", f"u{i}")
        before = len(exposures)
        assert before > 20
        pinned = {"experiment": {"experiment_id": 7, "loggedin": True, "variants": {"a": 25}}}
        install(c, [("exp", pinned)], environ={})
        decisions = [c.evaluate("exp", f"u{i}") for i in range(200)]
        assert {d.reason for d in decisions} == {Reason.OVERRIDE}
        assert {d.experiment_id for d in decisions} == {None}
        assert "a" in {d.variant for d in decisions}
        assert len(exposures) == before


def test_listeners_hear_override_changes(client: Client) -> None:
    heard: list[SnapshotChange] = []
    got = threading.Event()

    def listen(change: SnapshotChange) -> None:
        heard.append(change)
        got.set()

    client.on_change(listen)
    install(client, ["checkout=on", "other=off"], environ={})
    assert got.wait(5)
    assert heard[0].names == {"checkout", "other"}


def test_install_environment_then_command_line(client: Client) -> None:
    applied = install(client, [("checkout", "off")], environ={ENV_VAR: "checkout=on,color=variant:green"})
    assert applied == {"checkout": "off", "color": {"enabled": "on", "variants": ["green"]}}
    assert (client.evaluate("checkout").rule, client.is_enabled("checkout")) == ("--flag", False)
    assert client.evaluate("color").rule == ENV_VAR


def test_install_is_all_or_nothing(client: Client) -> None:
    install(client, ["checkout=on"], environ={})
    with pytest.raises(ValidationError) as err:
        install(client, ["color=variant:blue", 'bad={"percentage": 300}'], environ={})
    assert "bad.percentage" in str(err.value)
    assert set(client.overrides) == {"checkout"}


def test_argparse_helper() -> None:
    parser = argparse.ArgumentParser()
    add_argument(parser)
    args = parser.parse_args(["--flag", "a=on", "--flag", "b=variant:x"])
    assert args.flag_overrides == [("a", "on"), ("b", {"enabled": "on", "variants": ["x"]})]
    assert parser.parse_args([]).flag_overrides == []
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--flag", "a=maybe"])
    assert exit_.value.code == 2


def test_argparse_and_click_refuse_an_invalid_document_as_usage(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    # Valid syntax, invalid flag: once a traceback from install(); now exit 2 at parse time.
    parser = argparse.ArgumentParser()
    add_argument(parser)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--flag", 'a={"percentage": 150}'])
    assert exit_.value.code == 2
    assert "percentage: must be a number between 0 and 100" in capsys.readouterr().err

    @click.command()
    @click_option()
    def cli(flag_overrides: list[tuple[str, object]]) -> None:
        install(client, flag_overrides, environ={})

    bad = CliRunner().invoke(cli, ["--flag", 'a={"percentage": 150}'])
    assert bad.exit_code == 2, bad.output
    assert "percentage" in bad.output


def test_a_bad_environment_entry_names_the_variable(client: Client) -> None:
    with pytest.raises(ValidationError) as err:
        install(client, [], environ={ENV_VAR: 'ok=on,bad={"percentage": 300}'})
    assert ENV_VAR in str(err.value) and "bad.percentage" in str(err.value)
    assert client.overrides == {}


def test_argparse_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"checkout": "off"}))
    parser = argparse.ArgumentParser()
    add_argument(parser)
    args = parser.parse_args(["--flag", "checkout=on"])
    with Client(open_store(f"file://{path}"), Options(timeout=5)) as c:
        install(c, args.flag_overrides, environ={})
        assert c.evaluate("checkout").reason is Reason.OVERRIDE
    assert json.loads(path.read_text()) == {"checkout": "off"}


def test_click_option(client: Client) -> None:
    @click.command()
    @click_option()
    def cli(flag_overrides: list[tuple[str, object]]) -> None:
        install(client, flag_overrides, environ={})
        d = client.evaluate("checkout")
        click.echo(f"{d.enabled} {d.reason.value} {d.rule}")

    runner = CliRunner()
    result = runner.invoke(cli, ["--flag", "checkout=on"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "True override --flag"
    bad = runner.invoke(cli, ["--flag", "checkout=sometimes"])
    assert bad.exit_code == 2
    assert "Invalid value for '--flag'" in bad.output


def test_the_example_with_flags_and_environment() -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "local_overrides.py"
    env = {**os.environ, ENV_VAR: "new_checkout=off,dark_mode=off"}
    args = [
        sys.executable,
        str(script),
        "--flag",
        "new_checkout=on",
        "--flag",
        "search_ranker=variant:neural",
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (
        "bob: new_checkout=True (override), search_ranker=neural (override), dark_mode=False" in proc.stdout
    )
    assert "store untouched: 25" in proc.stdout
    assert "flag overrides in force" in proc.stderr
    bad = subprocess.run(
        [*args[:2], "--flag", "x=maybe"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "argument --flag" in bad.stderr
    bad_env = subprocess.run(
        args[:2], capture_output=True, text=True, timeout=60, env={**env, ENV_VAR: "x=maybe"}, check=False
    )
    assert bad_env.returncode == 2, bad_env.stderr
    assert ENV_VAR in bad_env.stderr and "Traceback" not in bad_env.stderr


def test_wait_for_change_wakes_on_an_override(client: Client) -> None:
    timer = threading.Timer(0.3, install, args=(client, ["checkout=on"]), kwargs={"environ": {}})
    timer.start()
    try:
        decision = client.wait_for_change("checkout", 30)
    finally:
        timer.join()
    assert decision is not None
    assert (decision.enabled, decision.reason) == (True, Reason.OVERRIDE)
