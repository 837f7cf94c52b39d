"""The golden cases whose flags read other documents (``tests/golden/env/*.json``: segments in
targeting and deny, prerequisites, holdouts and layers), asked of a real server over HTTP.

Each file's segments (under ``segment:NAME``) and flags are written straight into one SQLite
store per file, as any writer could (a cycle written behind the admin's back included), and a
server follows it: its snapshot links every flag to the segments and flags of its revision.
Each case is a ``POST /api/v1/evaluate``; the answer must carry the golden decision
(``enabled``, ``variant``, ``reason``, ``rule``), the one the engine gives a flag linked to the
file's documents (``tests/engine/test_evaluate.py``), and the ``value`` that flag serves for it.
Contexts and clocks become requests as in ``test_golden_over_http.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from flagstaff import evaluate, parse_flag
from flagstaff.context import to_context
from flagstaff.document import segment_key
from flagstaff.http.app import create_app
from flagstaff.model import Flag
from flagstaff.segments import Segment, parse_segment
from flagstaff.stores import open_store
from tests._support.http_server import ServerThread, make_admin_token
from tests.http.test_golden_over_http import needs_the_evaluators_missing_clock, request_context

FILES = sorted((Path(__file__).parents[1] / "golden" / "env").glob("*.json"))


def _data(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


CASES = {
    f"{path.stem}-{i}-{case['flag']}": (path, case)
    for path in FILES
    for i, case in enumerate(_data(path)["cases"])
    if not needs_the_evaluators_missing_clock(_data(path)["flags"][case["flag"]], case)
}


@dataclass
class Env:
    """One file's documents as the engine links them (the pure answer to compare with)."""

    flags: dict[str, Flag] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    holdouts: tuple[Segment, ...] = ()


def _linked(data: dict[str, Any]) -> Env:
    env = Env()
    env.segments = {name: parse_segment(name, doc) for name, doc in data.get("segments", {}).items()}
    env.holdouts = tuple(s for s in env.segments.values() if s.holdout)
    env.flags = {name: parse_flag(name, doc).linked(env) for name, doc in data["flags"].items()}
    return env


@dataclass
class Served:
    api: httpx.Client
    env: Env


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Served]]:
    out: dict[Path, Served] = {}
    closing = []
    try:
        for path in FILES:
            data = _data(path)
            url = f"sqlite:///{tmp_path_factory.mktemp('golden-env') / 'flags.db'}"
            store = open_store(url)
            for name, document in data.get("segments", {}).items():
                store.put(segment_key(name), json.dumps(document))
            for name, document in data["flags"].items():
                store.put(name, json.dumps(document))
            store.close()
            app = create_app(url)
            state = app.state.flagstaff
            closing.append(state)
            assert set(state.client.snapshot.flags) == set(data["flags"])
            server = ServerThread(app)
            closing.append(server)
            api = httpx.Client(
                base_url=server.url,
                headers={"Authorization": f"Bearer {make_admin_token(state)}"},
                timeout=10,
            )
            closing.append(api)
            out[path] = Served(api, _linked(data))
        yield out
    finally:
        for thing in reversed(closing):
            if isinstance(thing, ServerThread):
                thing.stop()
            else:
                thing.close()


def test_there_are_env_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_golden_env_case_over_http(servers: dict[Path, Served], case_id: str) -> None:
    path, case = CASES[case_id]
    served = servers[path]
    name = case["flag"]
    flag = served.env.flags[name]
    pure = evaluate(flag, to_context(case["context"]), case.get("now"))
    expect = case["expect"]
    assert (pure.enabled, pure.variant, pure.reason.value) == (
        expect["enabled"],
        expect["variant"],
        expect["reason"],
    ), case.get("note")

    response = served.api.post("/api/v1/evaluate", json={"flag": name, "context": request_context(case)})
    assert response.status_code == 200, response.text
    answer = response.json()["decisions"][name]
    over_http = (answer["enabled"], answer.get("variant"), answer["reason"], answer.get("rule"))
    assert over_http == (pure.enabled, pure.variant, pure.reason.value, pure.rule), case.get("note")
    if "rule" in expect:
        assert answer.get("rule") == expect["rule"]
    assert answer["value"] == flag.value_of(pure)
