"""A client following a store keeps going past one bad document (issue 12, section 1).

The exact report: ``UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'`` while a client
follows the database. The bad flag must be skipped and named in ``status()`` (its last good
version kept), every other flag must keep updating, and repairing the row must bring the flag
back, with no restart.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import flagstaff
from flagstaff.client import Client, Options, State
from flagstaff.follower import Follower
from flagstaff.model import decode_document, encode_document, printable_text
from flagstaff.snapshot import Snapshot
from flagstaff.stores.base import Change, Record, decode_raw
from flagstaff.stores.sqlite import SQLiteStore
from tests._support.client import FakeStore, eventually

pytestmark = pytest.mark.timeout(60)

ON = encode_document("on")
OFF = encode_document("off")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "f.db"
    store = SQLiteStore(str(path))
    store.put("a", ON)
    store.put("b", OFF)
    store.close()
    yield path


@pytest.fixture
def client(db: Path) -> Iterator[Client]:
    c = flagstaff.connect(f"sqlite:///{db}?poll=0.02", timeout=5)
    yield c
    c.close()


def _sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(statement, args)
    conn.close()


def test_undecodable_row_is_one_bad_document_and_repair_brings_it_back(db: Path, client: Client) -> None:
    assert client.is_enabled("a") and not client.is_enabled("b")
    _sql(db, "UPDATE flagstaff_flags SET raw=X'FFFE00' WHERE name='a'")
    assert eventually(lambda: "a" in client.status().invalid)
    status = client.status()
    assert status.state is State.LIVE
    assert "not UTF-8" in status.invalid["a"] and "0xff" in status.invalid["a"]
    assert client.is_enabled("a")  # the last good version is kept

    # Every other flag keeps updating.
    store = SQLiteStore(str(db))
    store.put("b", ON)
    assert eventually(lambda: client.is_enabled("b"))

    # Repairing the row brings the flag back, with no restart.
    _sql(db, "UPDATE flagstaff_flags SET raw=? WHERE name='a'", OFF)
    assert eventually(lambda: not client.is_enabled("a"))
    assert eventually(lambda: "a" not in client.status().invalid)
    assert client.status().state is State.LIVE
    store.close()


def test_undecodable_text_and_invalid_rows_do_not_stop_a_fresh_load(db: Path) -> None:
    # Text that is not UTF-8 (not a blob) made sqlite3 fail the whole query; a row that is
    # not JSON and one that is not a flag are each one bad document too.
    _sql(db, "UPDATE flagstaff_flags SET raw=CAST(? AS TEXT) WHERE name='a'", b'{"enabled":true\xff}')
    insert = "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('default', ?, ?)"
    _sql(db, insert, "c", '{"enabled": tru')
    _sql(db, insert, "d", '{"percentage": 300}')
    _sql(db, insert, "e", 42)
    with flagstaff.connect(f"sqlite:///{db}?poll=0.02", timeout=5) as c:
        status = c.status()
        assert status.state is State.LIVE
        assert set(status.invalid) - {"e"} == {"a", "c", "d"}  # a number may be a document
        assert "e" in status.invalid or "e" in c.all()
        assert "0xff" in status.invalid["a"]
        assert "not JSON" in status.invalid["c"]
        assert c.is_enabled("b") is False and "b" in c.all()
        store = SQLiteStore(str(db))
        assert store.get("a") is not None  # a read of the bad row does not raise either
        assert [e.name for e in store.history(limit=10)]  # nor does reading its history
        store.put("b", ON)
        assert eventually(lambda: c.is_enabled("b"))
        store.close()


def test_decode_raw_keeps_the_bytes_and_decode_document_names_them() -> None:
    text = decode_raw(b'{"enabled":true,"description":"\xff\xfe"}')
    assert text.encode("utf-8", "surrogateescape") == b'{"enabled":true,"description":"\xff\xfe"}'
    with pytest.raises(flagstaff.ValidationError, match=r"not UTF-8 text: byte 0xff at offset 31"):
        decode_document(text)
    with pytest.raises(flagstaff.ValidationError, match=r"byte 0xff at offset 0"):
        decode_document(b"\xff\xfe\x00")
    assert decode_raw("on") == "on"
    shown = printable_text(text + "\x1b[31m\u202e\x00\n", newlines=False)
    assert shown == '{"enabled":true,"description":"\\xff\\xfe"}\\x1b[31m\\u202e\\x00\\n'
    shown.encode("utf-8")  # always printable


def test_a_value_no_check_foresaw_is_one_bad_document_not_the_end_of_the_watch() -> None:
    # A third-party store handing over something that is not text (its own bug) used to raise
    # out of the parser and end the watch task for good; it is one bad document like any other.
    fake = FakeStore({"f": "on", "g": "off"}, revision=1)
    with Client(fake, Options(timeout=5)) as c:
        fake.emit(Change("f", Record("f", 12345, 2), 2))  # type: ignore[arg-type]
        assert eventually(lambda: "f" in c.status().invalid)
        assert "cannot read the document" in c.status().invalid["f"]
        assert c.is_enabled("f")  # its last good version
        fake.emit(Change("g", Record("g", "on", 2), 3))
        assert eventually(lambda: c.is_enabled("g"))
        fake.emit(Change("f", Record("f", "off", 3), 4))
        assert eventually(lambda: not c.is_enabled("f") and not c.status().invalid)
        assert c.status().state is State.LIVE


def test_a_row_whose_name_is_not_utf8_is_skipped_not_the_end_of_the_load(db: Path, client: Client) -> None:
    # sqlite3 failed the whole query on such a name: no load at all, and a dead watch.
    insert = (
        "INSERT INTO flagstaff_flags (namespace, name, raw) VALUES ('default', CAST(? AS TEXT), '\"on\"')"
    )
    _sql(db, insert, b"x\xff")
    store = SQLiteStore(str(db))
    store.put("b", ON)
    assert eventually(lambda: client.is_enabled("b"))
    assert set(store.load().records) == {"a", "b"}
    assert {e.name for e in store.history(limit=20)} == {"a", "b"}
    store.close()
    with flagstaff.connect(f"sqlite:///{db}", timeout=5) as fresh:
        assert fresh.status().state is State.LIVE and set(fresh.all()) == {"a", "b"}


def test_a_change_the_client_fails_to_apply_leads_to_a_reload_not_a_dead_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeStore({"f": "off"}, revision=1)
    with Client(fake, Options(timeout=5)) as c:
        real_apply = Follower._apply
        calls = []

        def failing_once(self: Follower, change: Change, snap: Snapshot, changed: set[str]) -> Snapshot:
            calls.append(change)
            if len(calls) == 1:
                raise RuntimeError("a bug in applying")
            return real_apply(self, change, snap, changed)

        monkeypatch.setattr(Follower, "_apply", failing_once)
        loads = fake.loads
        fake.records["f"] = Record("f", "on", 2)
        fake.revision = 2
        fake.emit(Change("f", Record("f", "on", 2), 2))
        assert eventually(lambda: c.is_enabled("f"))  # taken by the reload that followed
        assert fake.loads > loads
        assert eventually(lambda: c.status().state is State.LIVE and c.status().last_error is None)
        fake.emit(Change("f", Record("f", "off", 3), 3))  # and the watch goes on
        assert eventually(lambda: not c.is_enabled("f"))
