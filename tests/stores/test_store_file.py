"""The file store: conformance suite (JSON and YAML), hand edits, URL forms."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import flagstaff.stores.file as file_module
from flagstaff.errors import ConflictError, StoreUnavailable, UnsupportedStoreURL
from flagstaff.stores import open_store
from flagstaff.stores.base import Record, Store
from flagstaff.stores.file import FileStore
from flagstaff.testing import EventRecorder
from flagstaff.testing.conformance import StoreConformance, document


def _meta(path: Path) -> Path:
    return path.parent / f".{path.name}.flagstaff-meta.json"


class TestFileStore(StoreConformance):
    keeps_raw_text = False
    contact_bound = 2.0  # the conformance stores poll every 20 ms; the first failed read tells
    suffix = ".json"

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.dir = tmp_path

    def make_store(self, namespace: str) -> Store:
        store = FileStore.from_url(f"file://{self.dir / namespace}{self.suffix}?poll=0.02")
        # Under tests/_support/gevent_run.py the stores must be running on greenlets.
        assert store._runtime.name == os.environ.get("FLAGSTAFF_EXPECT_RUNTIME", "threads")
        return store

    def force_reset(self, store: Store) -> None:
        # Losing the sidecar loses the revision lineage: watches must reset.
        assert isinstance(store, FileStore)
        _meta(Path(store.path)).unlink()

    def write_raw(self, store: Store, name: str, data: bytes) -> None:
        # An editor's save: the file's other flags as they are, and ``data`` as this flag's
        # value (JSON flow syntax, which YAML reads too).
        assert isinstance(store, FileStore)
        path = Path(store.path)
        others = {n: r.raw for n, r in store.load().records.items() if n != name}
        items = [
            json.dumps(n).encode() + b": " + raw.encode("utf-8", "surrogateescape")
            for n, raw in others.items()
        ]
        items.append(json.dumps(name).encode() + b": " + data)
        tmp = path.with_name(path.name + ".edit")
        tmp.write_bytes(b"{" + b", ".join(items) + b"}\n")
        os.replace(tmp, path)

    def cut_off(self, store: Store) -> Callable[[], None]:
        # The file cannot be read (a directory stands in its place, as a broken mount might):
        # a read error, not a missing file (which reads as an empty, uninitialized store).
        assert isinstance(store, FileStore)
        path = Path(store.path)
        away = path.with_name(path.name + ".away")
        path.rename(away)
        path.mkdir()

        def restore() -> None:
            path.rmdir()
            away.rename(path)

        return restore


class TestYamlFileStore(TestFileStore):
    suffix = ".yaml"
    bytes_per_document = False  # YAML refuses a file with bytes that are not UTF-8, whole


# ------------------------------------------------------------------ URLs


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = FileStore.from_url(f"file://{tmp_path}/flags.json")
    assert absolute.path == str(tmp_path / "flags.json")
    assert absolute.url == f"file://{tmp_path}/flags.json"
    monkeypatch.chdir(tmp_path)
    relative = FileStore.from_url("file:flags.yml")
    assert relative.path == str(tmp_path / "flags.yml")
    opened = open_store(f"file://localhost{tmp_path}/f.json?poll=0.5")
    assert isinstance(opened, FileStore)
    opened.close()
    for bad in ["file://host/x.json", f"file://{tmp_path}/flags.txt", f"file://{tmp_path}/f.json?poll=0",
                f"file://{tmp_path}/f.json?colour=red"]:  # fmt: skip
        with pytest.raises(UnsupportedStoreURL):
            FileStore.from_url(bad)
    absolute.close()
    relative.close()


# ------------------------------------------------------------------ layout and hand edits


def test_file_layout_is_plain_sorted_json(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    store = FileStore(str(path))
    store.put("zeta", '{"enabled": true}')
    store.put("alpha", "off")
    text = path.read_text()
    assert json.loads(text) == {"alpha": "off", "zeta": {"enabled": True}}
    assert text.index('"alpha"') < text.index('"zeta"'), "keys are sorted for readable diffs"
    assert text.endswith("\n")
    meta = json.loads(_meta(path).read_text())
    assert meta["revision"] == 2
    assert meta["flags"]["zeta"]["version"] == 1
    assert [e["name"] for e in meta["log"]] == ["zeta", "alpha"]
    store.close()


def test_yaml_file_keeps_dates_as_text(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("launch:\n  enabled: true\n  schedule:\n    start: 2025-01-01\n")
    store = FileStore(str(path))
    record = store.get("launch")
    assert record is not None
    assert json.loads(record.raw) == {"enabled": True, "schedule": {"start": "2025-01-01"}}
    store.put("other", '{"percentage": 5}')
    assert yaml.safe_load(path.read_text())["other"] == {"percentage": 5}
    store.close()


def test_hand_written_file_without_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"alpha": "on", "beta": {"percentage": 10}}))
    store = FileStore(str(path))
    state = store.load()
    assert state.initialized is True
    assert {n: (r.raw, r.version) for n, r in state.records.items()} == {
        "alpha": ('"on"', 1),
        "beta": ('{"percentage":10}', 1),
    }
    assert state.revision == 2
    assert [e.author for e in store.history()] == [None, None]
    store.close()


def test_hand_edit_is_picked_up_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    store = FileStore(str(path), poll=0.02)
    first = store.put("alpha", document(1), author="alice")
    store.put("beta", document(2))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)

    values = json.loads(path.read_text())
    values["alpha"]["percentage"] = 99
    del values["beta"]
    values["gamma"] = "on"
    path.write_text(json.dumps(values))

    changes = recorder.wait_for_changes(3)
    assert [(c.name, c.record.version if c.record else None) for c in changes] == [
        ("alpha", 2),
        ("beta", None),
        ("gamma", 1),
    ]
    entry = store.history("alpha")[0]
    assert (entry.author, entry.before, entry.version) == (None, first.raw, 2)
    assert json.loads(entry.after or "")["percentage"] == 99
    # A second store object (another process, say) agrees on versions and revision.
    other = FileStore(str(path))
    assert other.load() == store.load()
    with pytest.raises(ConflictError):
        other.put("alpha", document(5), expect=1)
    other.close()
    store.close()


def test_missing_file_reads_empty_uninitialized_and_resets_watches(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    store = FileStore(str(path), poll=0.02)
    store.put("alpha", document(1))
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    path.unlink()
    recorder.wait_for_reset()
    state = store.load()
    assert dict(state.records) == {}
    assert state.initialized is False, "a vanished file must not look like 'no flags on purpose'"
    assert recorder.changes() == [], "a vanished file is not a deletion of every flag"
    path.write_text(json.dumps({"alpha": "on"}))
    change = recorder.wait_for_change(lambda c: c.name == "alpha")
    assert change.record is not None
    assert change.record.version == 2
    store.close()


def test_watch_that_fell_behind_the_log_resets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_module, "LOG_LIMIT", 5)
    store = FileStore(str(tmp_path / "flags.json"), poll=0.02)
    for i in range(10):
        store.put("alpha", document(i))
    assert len(store.history()) == 5
    recorder = EventRecorder()
    store.watch(recorder, since=1)
    assert "missed" in recorder.wait_for_reset().reason
    store.put("alpha", document(11))
    recorder.wait_for_change(lambda c: c.revision == 11)
    store.close()


def test_writes_keep_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text("{}")
    path.chmod(0o600)
    store = FileStore(str(path))
    store.put("alpha", "on")
    assert path.stat().st_mode & 0o777 == 0o600
    store.close()


def test_read_only_directory_reads_and_watches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps({"alpha": "on"}))
    real_open = os.open

    def no_lock_file(file: str, flags: int, *args: int) -> int:
        # What a read-only mount (a ConfigMap) answers; we may run as root here.
        if str(file).endswith(".flagstaff-lock"):
            raise PermissionError(errno.EROFS, "Read-only file system", file)
        return real_open(file, flags, *args)

    monkeypatch.setattr(file_module.os, "open", no_lock_file)
    store = FileStore(str(path), poll=0.02)
    assert store.get("alpha") == Record("alpha", '"on"', 1)
    recorder = EventRecorder()
    store.watch(recorder, since=store.load().revision)
    path.write_text(json.dumps({"alpha": "off"}))
    change = recorder.wait_for_change(lambda c: c.name == "alpha")
    assert change.record == Record("alpha", '"off"', 2)
    assert not _meta(path).exists(), "nothing may be written next to a read-only file"
    with pytest.raises(StoreUnavailable, match="cannot lock"):
        store.put("beta", "on")
    store.close()


def test_sidecar_log_is_bounded_by_text_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_module, "LOG_TEXT_LIMIT", 50_000)
    path = tmp_path / "flags.json"
    store = FileStore(str(path))
    for i in range(12):
        store.put("big", document(i, blob="z" * 10_000))
    entries = store.history()
    assert 1 <= len(entries) <= 3
    assert entries[0].revision == 12
    assert _meta(path).stat().st_size < 80_000
    store.close()


def test_yaml_round_trip_of_bare_on(tmp_path: Path) -> None:
    path = tmp_path / "flags.yml"
    store = FileStore(str(path))
    store.put("dark-mode", "on")
    store.put("date-like", '"2025-01-01"')
    again = FileStore(str(path))
    assert again.get("dark-mode") == Record("dark-mode", '"on"', 1)
    assert again.get("date-like") == Record("date-like", '"2025-01-01"', 1)
    store.close()
    again.close()


def test_a_flag_name_that_is_not_utf8_is_skipped_and_kept_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_bytes(b'{"good": "on", "x\xff": "on"}')
    store = FileStore(str(path))
    recorder = EventRecorder()
    store.watch(recorder, since=0)
    assert set(store.load().records) == {"good"}
    assert {e.name for e in store.history()} == {"good"}
    store.put("good", '"off"')
    recorder.wait_for_change(
        lambda c: c.name == "good" and c.record is not None and c.record.raw == '"off"', 5
    )
    assert all(c.name == "good" for c in recorder.changes())
    assert b'"x\xff": "on"' in path.read_bytes()  # written back as it was: nothing lost
    store.close()
