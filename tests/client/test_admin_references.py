"""Admin, the one writer, keeps references whole: segments written like flags, and
missing segments, missing prerequisites, prerequisite cycles, overlapping layers
and deletes of documents still in use refused, each naming the path and the culprit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flagstaff.admin import Admin
from flagstaff.errors import ConflictError, InUseError, NotFoundError, Problem, ValidationError
from flagstaff.model import decode_document
from flagstaff.stores.sqlite import SQLiteStore

STAFF = {"description": "Internal staff", "users": ["alice"], "groups": ["employee"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path / 'refs.db'}")
    yield s
    s.close()


@pytest.fixture
def admin(store: SQLiteStore) -> Admin:
    return Admin(store, author="ann@test")


def doc(store: SQLiteStore, key: str) -> Any:
    rec = store.get(key)
    return None if rec is None else decode_document(rec.raw)


def problems(err: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(p.path, p.message) for p in err.value.problems]


def rule_on(*segments: str) -> dict[str, Any]:
    return {"targeting": [{"segments": list(segments), "serve": "on"}]}


def requires(*names: str) -> dict[str, Any]:
    return {"prerequisites": list(names), "everyone": True}


def layered(start: int, end: int, layer: str = "checkout") -> dict[str, Any]:
    return {
        "experiment": {
            "variants": {"a": 10},
            "everyone": True,
            "layer": {"name": layer, "range": [start, end]},
        }
    }


# --------------------------------------------------------------------------- segments as documents


def test_a_segment_is_written_like_a_flag(admin: Admin, store: SQLiteStore) -> None:
    out = admin.set("segment:staff", STAFF)
    assert out.changed and out.record is not None and out.record.version == 1
    assert doc(store, "segment:staff") == STAFF
    assert store.history("segment:staff")[0].author == "ann@test"
    again = admin.set("segment:staff", dict(STAFF))  # the same document: no write
    assert not again.changed and store.get("segment:staff").version == 1  # type: ignore[union-attr]
    with pytest.raises(ConflictError):
        admin.set("segment:staff", {"users": ["bob"]}, expect=0)
    admin.set("segment:staff", {"users": ["bob"]}, expect=1)
    assert doc(store, "segment:staff") == {"users": ["bob"]}
    edited = admin.update("segment:staff", lambda d: {**d, "groups": ["ops"]})
    assert edited.changed and doc(store, "segment:staff") == {"users": ["bob"], "groups": ["ops"]}


def test_a_segment_document_is_validated_as_a_segment(admin: Admin, store: SQLiteStore) -> None:
    with pytest.raises(ValidationError) as err:
        admin.set("segment:staff", {"userz": ["alice"]})
    assert any(p.path == "userz" and "did you mean 'users'" in p.message for p in err.value.problems)
    with pytest.raises(ValidationError):
        admin.set("segment:staff", "on")  # a flag document is no segment
    assert store.load().revision == 0


def test_a_new_segment_name_follows_the_new_name_rule(admin: Admin, store: SQLiteStore) -> None:
    with pytest.raises(ValidationError) as err:
        admin.set("segment:bad name", STAFF)
    assert "'bad name' is not a valid segment name" in str(err.value)
    with pytest.raises(ValidationError):
        admin.set("segment:", STAFF)
    admin.set("segment:internal-staff", STAFF)
    with pytest.raises(ValidationError) as err:
        admin.set("segment:Internal_Staff", STAFF)
    assert "looks the same as the existing segment 'internal-staff'" in str(err.value)
    # Kinds apart: a flag may share a segment's name.
    admin.set("internal-staff", "on")
    assert set(admin.segments()) == {"internal-staff"}
    assert set(admin.flags()) == {"internal-staff"}


def test_flags_and_segments_are_listed_apart(admin: Admin) -> None:
    admin.set("segment:staff", STAFF)
    admin.set("segment:eu", {"rules": [{"attribute": "country", "op": "in", "value": ["FR", "DE"]}]})
    admin.set("beta", rule_on("staff"))
    assert list(admin.segments()) == ["eu", "staff"]
    assert decode_document(admin.segments()["staff"].raw) == STAFF
    assert list(admin.flags()) == ["beta"]
    with pytest.raises(NotFoundError, match="no segment named 'gone'"):
        admin.get("segment:gone")


# --------------------------------------------------------------------------- refusals


def test_a_flag_naming_a_missing_segment_is_refused(admin: Admin, store: SQLiteStore) -> None:
    admin.set("segment:staff", STAFF)
    doc_ = {
        "deny": {"segments": ["fraud"]},
        "targeting": [{"groups": ["beta"], "serve": "on"}, {"segments": ["staff", "ghosts"], "serve": "on"}],
    }
    with pytest.raises(ValidationError) as err:
        admin.set("new_checkout", doc_)
    assert problems(err) == [
        ("deny.segments[0]", "no segment named 'fraud'"),
        ("targeting[1].segments[1]", "no segment named 'ghosts'"),
    ]
    assert "invalid flag 'new_checkout'" in str(err.value)
    assert store.get("new_checkout") is None
    admin.set("segment:fraud", {"users": ["mallory"]})
    admin.set("segment:ghosts", {})
    assert admin.set("new_checkout", doc_).changed


def test_an_edit_adding_a_missing_segment_is_refused(admin: Admin, store: SQLiteStore) -> None:
    admin.set("f", {"groups": ["beta"]})
    with pytest.raises(ValidationError) as err:
        admin.update("f", lambda d: {**d, "targeting": [{"not_segments": ["eu"], "serve": "on"}]})
    assert problems(err) == [("targeting[0].not_segments[0]", "no segment named 'eu'")]
    assert doc(store, "f") == {"groups": ["beta"]}


def test_a_missing_prerequisite_is_refused(admin: Admin, store: SQLiteStore) -> None:
    admin.set("new_checkout", "on")
    admin.set("segment:pricing", STAFF)
    with pytest.raises(ValidationError) as err:
        admin.set(
            "v2", {"prerequisites": ["new_checkout", {"flag": "pricing", "variant": "b"}], "everyone": True}
        )
    # A segment of that name is no flag.
    assert problems(err) == [("prerequisites[1]", "no flag named 'pricing'")]
    assert store.get("v2") is None
    admin.set("pricing", {"variants": ["a", "b"], "everyone": True})
    admin.set(
        "v2", {"prerequisites": ["new_checkout", {"flag": "pricing", "variant": "b"}], "everyone": True}
    )
    assert doc(store, "v2")["prerequisites"][0] == "new_checkout"


def test_a_prerequisite_cycle_is_refused_naming_the_chain(admin: Admin, store: SQLiteStore) -> None:
    admin.set("new_checkout", "on")
    admin.set("new_checkout_v2", requires("new_checkout"))
    with pytest.raises(ValidationError) as err:
        admin.set("new_checkout", requires("new_checkout_v2"))
    assert problems(err) == [("prerequisites[0]", "cycle new_checkout -> new_checkout_v2 -> new_checkout")]
    assert doc(store, "new_checkout") == "on"

    # Longer: a -> b -> c, then c -> a closes it; the path names the offending entry.
    admin.set("c", "on")
    admin.set("b", requires("c"))
    admin.set("a", {"prerequisites": ["new_checkout", {"flag": "b"}], "everyone": True})
    with pytest.raises(ValidationError) as err:
        admin.update("c", lambda d: requires("new_checkout", "a"))
    assert problems(err) == [("prerequisites[1]", "cycle c -> a -> b -> c")]
    assert doc(store, "c") == "on"


def test_two_experiments_overlapping_in_a_layer_are_refused(admin: Admin, store: SQLiteStore) -> None:
    admin.set("checkout_copy", layered(0, 50))
    with pytest.raises(ValidationError) as err:
        admin.set("checkout_color", layered(40, 100))
    [(path, message)] = problems(err)
    assert path == "experiment.layer.range"
    assert "overlaps flag 'checkout_copy'" in message and "layer 'checkout'" in message
    assert store.get("checkout_color") is None
    admin.set("checkout_color", layered(50, 100))  # adjacent ranges do not overlap
    admin.set("search_ranking", layered(0, 100, layer="search"))  # another layer
    with pytest.raises(ValidationError, match="overlaps flag 'checkout_color'"):
        admin.update("checkout_copy", lambda d: layered(0, 60))


def test_delete_of_a_segment_in_use_is_refused_listing_the_flags(admin: Admin, store: SQLiteStore) -> None:
    admin.set("segment:staff", STAFF)
    admin.set("beta", rule_on("staff"))
    admin.set("alpha", {"deny": {"segments": ["staff"]}, "everyone": True})
    admin.set("other", "on")
    with pytest.raises(InUseError) as err:
        admin.delete("segment:staff")
    assert err.value.used_by == ("alpha", "beta")
    assert str(err.value) == "segment 'staff' is used by 2 flags: 'alpha', 'beta'; remove it from them first"
    assert store.get("segment:staff") is not None
    admin.set("alpha", "on")
    admin.set("beta", "off")
    admin.delete("segment:staff")
    assert store.get("segment:staff") is None


def test_delete_of_a_required_flag_is_refused(admin: Admin, store: SQLiteStore) -> None:
    admin.set("new_checkout", "on")
    admin.set("new_checkout_v2", requires("new_checkout"))
    with pytest.raises(InUseError, match=r"flag 'new_checkout' is required .* by 1 flag: 'new_checkout_v2'"):
        admin.delete("new_checkout")
    assert store.get("new_checkout") is not None
    admin.delete("new_checkout", force=True)  # the escape hatch: the dependant now dangles
    assert store.get("new_checkout") is None


def test_a_dangling_document_stays_editable(admin: Admin, store: SQLiteStore) -> None:
    # Arrived by another route (a direct store write, an old import): not refused on edit.
    store.put("f", '{"targeting": [{"segments": ["gone"], "serve": "on"}], "prerequisites": ["nope"]}')
    assert admin.rollout("f", 20).changed
    assert admin.disable("f").changed
    assert doc(store, "f")["enabled"] is False
    # ...but a write that adds another dangling reference still is.
    with pytest.raises(ValidationError) as err:
        admin.update("f", lambda d: {**d, "deny": {"segments": ["also-gone"]}})
    assert problems(err) == [("deny.segments[0]", "no segment named 'also-gone'")]


# --------------------------------------------------------------------------- bulk


def test_import_carries_segments_and_checks_references_in_the_import(
    admin: Admin, store: SQLiteStore
) -> None:
    result = admin.import_documents({"segment:staff": STAFF, "beta": rule_on("staff")})
    assert result.created == ("beta", "segment:staff")
    assert doc(store, "segment:staff") == STAFF

    with pytest.raises(ValidationError) as err:
        admin.import_documents({"gamma": rule_on("nobody"), "delta": "on"})
    assert err.value.problems == (Problem("gamma: targeting[0].segments[0]", "no segment named 'nobody'"),)
    assert store.get("delta") is None  # nothing written

    # Pruning a segment a kept flag uses would leave it dangling.
    with pytest.raises(ValidationError, match="'beta' still name it"):
        admin.import_documents({"beta": rule_on("staff")}, prune=True)
    assert store.get("segment:staff") is not None
