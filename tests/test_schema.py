"""The published JSON Schema agrees with the parser: same keys, same verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flagstaff import ValidationError, parse_flag
from flagstaff.bucketing import BucketingMode
from flagstaff.model import (
    CLAUSE_KEYS,
    EXPERIMENT_KEYS,
    SCHEDULE_KEYS,
    SELECTOR_KEYS,
    TOP_KEYS,
    json_schema,
)
from flagstaff.rules import OPERATORS

GOLDEN = Path(__file__).parent / "golden"
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


def _golden_documents() -> list[Any]:
    docs = []
    for path in sorted(GOLDEN.glob("*.json")):
        for name, doc in json.loads(path.read_text(encoding="utf-8"))["flags"].items():
            docs.append(pytest.param(doc, id=f"{path.stem}-{name}"))
    return docs


@pytest.mark.parametrize("document", _golden_documents())
def test_schema_accepts_every_golden_document(document: Any) -> None:
    VALIDATOR.validate(document)


def test_schema_accepts_every_seed_document() -> None:
    from flagstaff.model import decode_document
    from test_seeds import HANOI_CDC_ON, LINES

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
    {"bucket_by": "device"},
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
