"""Parsing flag documents: what is accepted, and errors that name the field and say what is wrong."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstaff import Context, Flag, Reason, ValidationError, checks, document, evaluate, model, parse_flag
from flagstaff.bucketing import BucketingMode
from flagstaff.document import (
    EXPERIMENT_KEYS,
    TOP_KEYS,
    check_new_name,
    decode_document,
    encode_document,
    name_key,
)
from flagstaff.model import Kind, Switch, parse_flags
from flagstaff.rules import OPERATORS


def _problems(document: Any, name: str = "f") -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_flag(name, document)
    assert info.value.flag == name
    assert str(info.value).startswith(f"invalid flag {name!r}: ")
    return [(p.path, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    ("document", "path", "says"),
    [
        ("On", "", "a string flag must be 'on' or 'off', not 'On'"),
        (101, "", "a percentage must be between 0 and 100, not 101"),
        (float("inf"), "", "finite number"),
        (None, "", "not null"),
        ([1], "", "not a list"),
        ({"enabeld": "on"}, "enabeld", "unknown key; did you mean 'enabled'?"),
        ({"enabled": "yes"}, "enabled", "must be 'on', 'off', true or false, not \"yes\""),
        ({"admin": "false"}, "admin", 'must be true or false, not "false"'),
        ({"users": "umbrae"}, "users", "must be a list of strings"),
        ({"percentage": "50"}, "percentage", 'must be a number between 0 and 100, not "50"'),
        ({"percent_loggedin": 150}, "percent_loggedin", "between 0 and 100, not 150"),
        ({"bucketing": "sha256"}, "bucketing", 'unknown mode "sha256"; expected one of flagstaff, rollout'),
        ({"bucket_by": 5}, "bucket_by", "must be 'user'"),
        ({"bucket_by": ["org", "org"]}, "bucket_by", "a non-empty list of distinct names"),
        ({"salt": ""}, "salt", "must be a non-empty string"),
        ({"kind": "forever"}, "kind", "must be one of 'temporary', 'permanent', 'release'"),
        ({"tags": "ui"}, "tags", "must be a list of strings"),
        ({"schedule": {"start": "tomorrow"}}, "schedule.start", '"tomorrow" is not a time'),
        ({"schedule": {"start": "2027-01-01T00:00:00"}}, "schedule.start", "with a UTC offset"),
        ({"schedule": {"start": 10, "end": 5}}, "schedule", "'end' must be after 'start'"),
        ({"schedule": {}}, "schedule", "needs 'start', 'end' or both"),
        ({"variants": ["a", "a"]}, "variants", "distinct variant names"),
        ({"regex": "(a"}, "regex", "not a valid RE2 expression"),
        ({"url": 5}, "url", "must be a name, a list of names, or an object"),
        ({"rules": ["plan"]}, "rules[0]", "must be an object such as"),
        (
            {"rules": [{"attribute": "plan", "op": "equals", "value": 1}]},
            "rules[0].op",
            'unknown operator "equals"',
        ),
        ({"rules": [{"attribute": "plan", "op": "eq"}]}, "rules[0].value", "op 'eq' needs a value"),
        (
            {"rules": [{"attribute": "n", "op": "gt", "value": "x"}]},
            "rules[0].value",
            "op 'gt' needs a number",
        ),
        (
            {"rules": [{"attribute": "v", "op": "semver_gt", "value": "1.2"}]},
            "rules[0].value",
            "semantic version",
        ),
        (
            {"rules": [{"attribute": "v", "op": "in", "value": [["x"]]}]},
            "rules[0].value",
            "list of strings or numbers",
        ),
        (
            {"rules": [{"all": [{"attribute": "a", "op": "exists"}, {"op": "exists"}]}]},
            "rules[0].all[1].attribute",
            "must name",
        ),
        (
            {"experiment": {"loggedin": True}},
            "experiment.variants",
            "must be an object mapping variant names",
        ),
        (
            {"experiment": {"everyone": True, "variants": {"a": 40}}},
            "experiment.variants.a",
            "more than 100/3",
        ),
        (
            {"experiment": {"everyone": True, "variants": {"a": 5}, "percent_loggedin": 5}},
            "experiment.percent_loggedin",
            "do not apply inside an experiment",
        ),
        (
            {"experiment": {"everyone": True, "variants": {"a": 5}, "experiment_id": "1"}},
            "experiment.experiment_id",
            "must be an integer",
        ),
        ({"variants": ["x"], "experiment": {"everyone": True, "variants": {"a": 5}}}, "variants", "not both"),
    ],
)
def test_bad_document_names_the_field(document: Any, path: str, says: str) -> None:
    problems = _problems(document)
    assert any(p == path and says in m for p, m in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems({"admin": 1, "users": "x", "percentage": -5, "colour": "red"})
    assert {p for p, _ in problems} == {"admin", "users", "percentage", "colour"}


@pytest.mark.parametrize("name", ["", " x", "a/b", ".hidden", "x" * 201, "tab\there"])
def test_bad_flag_names(name: str) -> None:
    with pytest.raises(ValidationError, match="not a valid flag name"):
        parse_flag(name, "on")


def test_documents_that_are_not_json() -> None:
    assert _problems({"x": {1, 2}})[0][1].startswith("not representable as JSON")
    for raw, says in [("", "empty document"), ("{nope", "not JSON: Expecting property name")]:
        with pytest.raises(ValidationError, match=says):
            decode_document(raw)
    assert decode_document(" on\n") == "on"
    assert decode_document(b"25") == 25


def test_flag_is_frozen_and_keeps_the_document() -> None:
    doc = {
        "description": "new homepage",
        "owner": "web",
        "kind": "temporary",
        "tags": ["ui"],
        "percentage": 5,
    }
    flag = parse_flag("home", doc)
    assert isinstance(flag, Flag)
    assert (flag.description, flag.owner, flag.kind, flag.tags) == (
        "new homepage",
        "web",
        Kind.TEMPORARY,
        ("ui",),
    )
    assert flag.value == doc
    assert flag.document == encode_document(doc)
    assert flag.switch is Switch.TARGETED
    assert flag.mode is BucketingMode.FLAGSTAFF
    assert flag.salt == "home"
    with pytest.raises(dataclasses.FrozenInstanceError):
        flag.salt = "other"  # type: ignore[misc]


def test_switch_and_constants() -> None:
    assert parse_flag("f", "on").constant is not None
    assert parse_flag("f", {"enabled": "off", "users": ["a"]}).switch is Switch.OFF
    assert parse_flag("f", {"enabled": False}).constant is not None
    assert parse_flag("f", {"enabled": True}).constant is not None  # no selector: always off
    assert parse_flag("f", {"users": ["a"]}).constant is None


def test_shared_salt_aligns_buckets_and_names_differ_otherwise() -> None:
    a = parse_flag("a", {"salt": "shared", "percentage": 50})
    b = parse_flag("b", {"salt": "shared", "percentage": 50})
    c = parse_flag("c", {"percentage": 50})
    users = [Context(user_id=f"u{i}") for i in range(200)]
    assert [evaluate(a, u).enabled for u in users] == [evaluate(b, u).enabled for u in users]
    assert [evaluate(a, u).enabled for u in users] != [evaluate(c, u).enabled for u in users]


def test_parse_flags_separates_good_from_bad() -> None:
    flags, errors = parse_flags({"good": "on", "bad": "maybe", "worse": {"admin": 2}})
    assert list(flags) == ["good"]
    assert sorted(e.flag or "" for e in errors) == ["bad", "worse"]


def test_examples_in_the_docs_parse() -> None:
    import json
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "flags.md").read_text(encoding="utf-8")
    documents = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL):
        documents += [json.loads(chunk) for chunk in block.split("\n\n") if chunk.strip()]
    assert len(documents) >= 6
    segments = 0
    for doc in documents:
        try:
            parse_flag("example", doc)
        except ValidationError as not_a_flag:
            # A segment's example (docs/flags.md "Segments") parses as a segment, nothing else does.
            from flagstaff.segments import parse_segment

            try:
                parse_segment("example", doc)
            except ValidationError:
                raise not_a_flag from None
            segments += 1
    assert segments >= 1  # the segment example is checked too


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(sorted(TOP_KEYS))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=4) | _json)
def test_any_json_is_parsed_or_refused_never_crashes(document: Any) -> None:
    try:
        flag = parse_flag("f", document)
    except ValidationError as exc:
        assert exc.problems
        assert all(p.message for p in exc.problems)
        return
    evaluate(flag, Context(user_id="u", groups=frozenset({"admin"})), now=0.0)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(EXPERIMENT_KEYS)), _json, max_size=4))
def test_any_experiment_is_parsed_or_refused_never_crashes(experiment: Any) -> None:
    try:
        flag = parse_flag("f", {"experiment": experiment})
    except ValidationError as exc:
        assert all(p.path.startswith("experiment") for p in exc.problems)
        return
    evaluate(flag, Context(user_id="u"))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([*OPERATORS, "nope"]),
    _json,
    st.one_of(st.none(), st.booleans(), _json),
    _json,
)
def test_any_clause_is_parsed_or_refused_and_evaluation_never_raises(
    op: str, value: Any, negate: Any, attribute_value: Any
) -> None:
    clause: dict[str, Any] = {"attribute": "a", "op": op, "value": value}
    if negate is not None:
        clause["negate"] = negate
    try:
        flag = parse_flag("f", {"rules": [clause]})
    except ValidationError as exc:
        assert all(p.path.startswith("rules[0]") for p in exc.problems)
        return
    decision = evaluate(flag, Context(attributes={"a": attribute_value}))
    assert decision.reason is not Reason.ERROR, decision.error


# --------------------------------------------------------------------------- names of new flags


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("flag_\u65e5\u672c", "character 6 is U+65E5 '\u65e5' (CJK UNIFIED IDEOGRAPH-65E5)"),
        ("flag\u200b", "character 5 is U+200B (ZERO WIDTH SPACE)"),
        ("ab\u202ecd", "character 3 is U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("x\ud800", "character 2 is U+D800"),
        ("a b", "character 2 is U+0020 (SPACE)"),
        ("a/b", "character 2 is U+002F '/' (SOLIDUS)"),
        ("-lead", "character 1 is U+002D '-' (HYPHEN-MINUS)"),
        ("", "it is empty"),
        ("a" * 201, "it is 201 characters long"),
    ],
)
def test_new_name_outside_the_alphabet_is_refused_naming_the_character(name: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_new_name(name)
    assert info.value.problems[0].path == "name"
    assert says in info.value.problems[0].message
    str(info.value).encode("utf-8")  # the message itself is printable text (surrogates escaped)


@pytest.mark.parametrize("name", ["a", "checkout", "new-checkout.v2_beta", "A" + "9" * 199])
def test_new_name_in_the_alphabet_is_accepted(name: str) -> None:
    check_new_name(name, ["other", "checkout2"])


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ("New-Checkout", "new_checkout"),
        ("new.checkout", "new-checkout"),
        ("fl0g", "flog"),
        ("v1", "vl"),
        ("Ilama", "llama"),
        ("flag", "flag\u200b"),  # an existing name with an invisible character
        ("flag", "\uff46lag"),  # fullwidth f, folded by NFKC
    ],
)
def test_a_new_name_that_looks_like_an_existing_one_is_refused(new: str, old: str) -> None:
    assert name_key(new) == name_key(old)
    with pytest.raises(ValidationError, match="looks the same as the existing flag"):
        check_new_name(new, ["unrelated", old])


def test_stored_names_outside_the_new_alphabet_still_parse() -> None:
    # Reading is not stricter than before: data already in a store is not stranded.
    for name in ("flag_\u65e5\u672c", "flag:x", "a@b"):
        assert parse_flag(name, "on").name == name


def test_a_lone_surrogate_in_a_document_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="not representable as JSON"):
        parse_flag("f", {"description": "\ud800"})


# --------------------------------------------------------------------------- the module split


def _imports(module: types.ModuleType) -> set[str]:
    """Every name a module imports, as ``module`` and ``module.name``."""
    tree = ast.parse(inspect.getsource(module))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_wire_format_imports_nothing_of_the_engine() -> None:
    # Stores import flagstaff.document alone: it must not pull in the compiler.
    engine = {name for name in _imports(document) if name.startswith("flagstaff")}
    assert engine <= {"flagstaff.errors", "flagstaff.errors.Problem", "flagstaff.errors.ValidationError"}


@pytest.mark.parametrize("module", [model, checks], ids=lambda m: m.__name__)
def test_no_hash_outside_bucketing(module: types.ModuleType) -> None:
    # Every hash formula is flagstaff.bucketing's (its contract comment, its vectors).
    names = _imports(module)
    for banned in ("zlib", "hashlib", "mmh3", "FMIX", "salt_seed", "threshold", "VARIANT_SALT_SUFFIX"):
        assert not any(n == banned or n.endswith(f".{banned}") for n in names), banned


def test_model_still_exports_the_wire_names() -> None:
    # Imports written before flagstaff.document existed keep working.
    for name in model.__all__:
        assert getattr(model, name) is not None, name
    for name in ("decode_document", "encode_document", "validate_name", "json_schema", "printable_text"):
        assert getattr(model, name) is getattr(document, name)
    assert model.MAX_DOCUMENT_BYTES == document.MAX_DOCUMENT_BYTES == 4 * 1024 * 1024
    assert model.TOP_KEYS is document.TOP_KEYS
