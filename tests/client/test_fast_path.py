"""Client.is_enabled's fast path (a lean client, Flag.quick) answers as the full path does,
whatever form the context is passed in: the forms it converts inline (a bare id,
``{"user_id": id}``) and the ones it hands to ``to_context``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from flagstaff import Context, evaluate
from flagstaff.client import Client, Options
from flagstaff.context import to_context
from flagstaff.stores.memory import MemoryStore

FLAGS: dict[str, Any] = {
    "pct": {"percentage": 37},
    "users": {"users": ["u1", "7", "é"]},
    "cookie": {"percentage": 50, "bucket_by": "cookie"},
    "off": False,
}

CONTEXTS: list[Any] = [
    *[f"u{i}" for i in range(60)],
    "",
    "é",
    "\udc80x",  # a lone surrogate: strict UTF-8 refuses it, the full path decides
    {"user_id": "\udc80x"},
    7,
    True,  # not an id: an error, off
    3.5,
    None,
    *({"user_id": f"u{i}"} for i in range(60)),
    {"user_id": ""},
    {"user_id": 7},
    {"user_id": None},
    {"user": "u1"},
    {"user_id": "u1", "cookie_id": "c1"},
    {"cookie_id": "c2"},
    Context(user_id="u1"),
    Context(cookie_id="c3"),
    ["not", "a", "context"],
]


@pytest.fixture
def clients() -> Iterator[tuple[Client, Client]]:
    store = MemoryStore()
    for name, doc in FLAGS.items():
        store.put(name, json.dumps(doc))
    lean = Client(store, Options(timeout=5))
    full = Client(store, Options(timeout=5))
    full.set_overrides({"unrelated": lean.snapshot.flags["off"]})  # overrides: the full path
    try:
        assert lean._lean and not full._lean
        yield lean, full
    finally:
        lean.close()
        full.close()
        store.close()


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_the_fast_path_answers_as_the_full_path(clients: tuple[Client, Client], name: str) -> None:
    lean, full = clients
    flag = lean.snapshot.flags[name]
    for given in CONTEXTS:
        expected = full.is_enabled(name, given)
        # twice: the first call of a bare id builds its shared context, the second finds it
        assert lean.is_enabled(name, given) is expected, given
        assert lean.is_enabled(name, given) is expected, given
        try:
            ctx = to_context(given)
        except (TypeError, ValueError):
            assert expected is False, given
        else:
            assert expected is evaluate(flag, ctx).enabled, given


def test_the_fast_path_counts_every_evaluation(clients: tuple[Client, Client]) -> None:
    lean, _ = clients
    before = lean.evaluations
    given: list[Any] = ["u1", {"user_id": "u2"}, Context(user_id="u3"), None, "u1", ["bad"]]
    for one in given:
        lean.is_enabled("pct", one)
    after = lean.evaluations
    assert (after.total - before.total, after.errors - before.errors) == (6, 1)
