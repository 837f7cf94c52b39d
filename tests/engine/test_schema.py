"""The published JSON Schema agrees with the parser: same keys, same verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flagstaff import ValidationError, parse_flag
from flagstaff.bucketing import BucketingMode
from flagstaff.document import (
    CLAUSE_KEYS,
    DENY_KEYS,
    EXPERIMENT_KEYS,
    LAYER_KEYS,
    PREREQUISITE_KEYS,
    SCHEDULE_KEYS,
    SEGMENT_KEYS,
    SELECTOR_KEYS,
    SERVE_KEYS,
    TARGETING_KEYS,
    TOP_KEYS,
    json_schema,
    segment_schema,
)
from flagstaff.rules import OPERATORS
from flagstaff.segments import parse_segment

GOLDEN = Path(__file__).parents[1] / "golden"
SCHEMA = json_schema()
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
DEFS = SCHEMA["$defs"]


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_keys_match_the_model_exactly() -> None:
    selectors = set(DEFS["selectors"]["properties"])
    assert selectors == set(SELECTOR_KEYS)
    assert set(DEFS["flag"]["properties"]) | selectors == set(TOP_KEYS)
    assert set(DEFS["experiment"]["properties"]) | selectors == set(EXPERIMENT_KEYS)
    assert set(DEFS["clause"]["properties"]) == set(CLAUSE_KEYS)
    assert tuple(DEFS["flag"]["properties"]["schedule"]["properties"]) == SCHEDULE_KEYS
    assert DEFS["clause"]["properties"]["op"]["enum"] == list(OPERATORS)
    assert DEFS["flag"]["properties"]["bucketing"]["enum"] == [m.value for m in BucketingMode]


def test_schema_keys_of_the_issue_14_objects_match_the_model() -> None:
    assert tuple(DEFS["deny"]["properties"]) == DENY_KEYS
    assert tuple(DEFS["targeting_rule"]["properties"]) == TARGETING_KEYS
    serve_keys = set()
    for form in DEFS["serve"]["oneOf"]:
        serve_keys |= set(form.get("properties", ()))
    assert serve_keys == set(SERVE_KEYS)
    (_, obj) = DEFS["prerequisite"]["oneOf"]
    assert tuple(obj["properties"]) == PREREQUISITE_KEYS
    assert tuple(DEFS["layer"]["properties"]) == LAYER_KEYS


SEGMENT_SCHEMA = segment_schema()
SEGMENT_VALIDATOR = Draft202012Validator(SEGMENT_SCHEMA)


def test_segment_schema_keys_match_the_parser() -> None:
    Draft202012Validator.check_schema(SEGMENT_SCHEMA)
    segment = SEGMENT_SCHEMA["$defs"]["segment"]
    assert tuple(segment["properties"]) == SEGMENT_KEYS
    # The clause and rule formats are the flag schema's, copied.
    for name in ("clause", "rule", "names", "percent", "bucket_by"):
        assert SEGMENT_SCHEMA["$defs"][name] == DEFS[name]


GOOD_SEGMENTS = [
    {},
    {"users": ["alice", 42], "groups": ["employee"], "exclude_users": ["bob"]},
    {"rules": [{"attribute": "email", "op": "ends_with", "value": "@example.com"}], "description": "staff"},
    {"percentage": 5, "salt": "holdout-2027", "holdout": True, "bucket_by": ["account", "user"]},
]
BAD_SEGMENTS = [
    "on",
    [],
    {"user": ["a"]},
    {"users": "a"},
    {"rules": []},
    {"percentage": 101},
    {"salt": ""},
    {"holdout": "yes"},
    {"bucket_by": []},
    {"tags": "x"},
]


@pytest.mark.parametrize("document", GOOD_SEGMENTS, ids=[json.dumps(b)[:60] for b in GOOD_SEGMENTS])
def test_segment_schema_and_parser_both_accept(document: Any) -> None:
    SEGMENT_VALIDATOR.validate(document)
    parse_segment("s", document)


@pytest.mark.parametrize("document", BAD_SEGMENTS, ids=[json.dumps(b)[:60] for b in BAD_SEGMENTS])
def test_segment_schema_and_parser_both_reject(document: Any) -> None:
    assert not SEGMENT_VALIDATOR.is_valid(document)
    with pytest.raises(ValidationError):
        parse_segment("s", document)


def _golden_documents() -> list[Any]:
    docs = []
    for path in [*sorted(GOLDEN.glob("*.json")), *sorted((GOLDEN / "env").glob("*.json"))]:
        for name, doc in json.loads(path.read_text(encoding="utf-8"))["flags"].items():
            docs.append(pytest.param(doc, id=f"{path.stem}-{name}"))
    return docs


@pytest.mark.parametrize("document", _golden_documents())
def test_schema_accepts_every_golden_document(document: Any) -> None:
    VALIDATOR.validate(document)


def test_segment_schema_accepts_every_golden_segment() -> None:
    validator = Draft202012Validator(segment_schema())
    segments = json.loads((GOLDEN / "env" / "targeting.json").read_text(encoding="utf-8"))["segments"]
    assert segments
    for document in segments.values():
        validator.validate(document)


def test_schema_accepts_every_seed_document() -> None:
    from flagstaff.document import decode_document
    from tests.engine.test_seeds import HANOI_CDC_ON, LINES

    for raw in LINES:
        VALIDATOR.validate(decode_document(raw))
    VALIDATOR.validate(HANOI_CDC_ON)
    VALIDATOR.validate(1)


BAD = [
    "On",
    "true",
    101,
    -1,
    None,
    [],
    {"enabeld": "on"},
    {"enabled": "yes"},
    {"admin": "true"},
    {"users": "umbrae"},
    {"percentage": "50"},
    {"percent_loggedin": 150},
    {"bucketing": "sha256"},
    {"bucket_by": ""},
    {"bucket_by": []},
    {"targeting": []},
    {"targeting": [{"groups": ["beta"]}]},
    {"targeting": [{"grups": ["beta"], "serve": "on"}]},
    {"targeting": [{"serve": {"percentage": 10, "variant": "a"}}]},
    {"targeting": [{"serve": {"percentage": 101}}]},
    {"targeting": [{"serve": "maybe"}]},
    {"default": {"variants": {}}},
    {"deny": {}},
    {"deny": {"user": ["a"]}},
    {"deny": {"segments": []}},
    {"prerequisites": []},
    {"prerequisites": [{"variant": "b"}]},
    {"prerequisites": [{"flag": "x", "variant": "b", "enabled": True}]},
    {"values": {}},
    {"experiment": {"everyone": True, "variants": {"a": 10}, "layer": {"name": "L"}}},
    {"experiment": {"everyone": True, "variants": {"a": 10}, "layer": {"name": "L", "range": [0, 101]}}},
    {"experiment": {"everyone": True, "variants": {"a": 10}, "holdout": "yes"}},
    {"salt": ""},
    {"kind": "forever"},
    {"tags": "ui"},
    {"schedule": {}},
    {"schedule": {"start": "tomorrow"}},
    {"schedule": {"begin": 0}},
    {"variants": []},
    {"variants": ["a", "a"]},
    {"variants": ["a"], "experiment": {"everyone": True, "variants": {"b": 10}}},
    {"experiment": {"everyone": True}},
    {"experiment": {"everyone": True, "variants": {"a": 101}}},
    {"experiment": {"everyone": True, "variants": {"a": 10}, "percent_loggedin": 5}},
    {"experiment": {"everyone": True, "variants": {"a": 10}, "experiment_id": "12345"}},
    {"url": 5},
    {"rules": []},
    {"rules": ["plan"]},
    {"rules": [{"attribute": "plan", "op": "equals", "value": "pro"}]},
    {"rules": [{"attribute": "plan", "op": "eq"}]},
    {"rules": [{"attribute": "plan", "op": "eq", "value": "pro", "not": True}]},
    {"rules": [{"all": []}]},
]


@pytest.mark.parametrize("document", BAD, ids=[json.dumps(b)[:60] for b in BAD])
def test_schema_and_parser_both_reject(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)
    with pytest.raises(ValidationError):
        parse_flag("f", document)
