"""What commands read: flags files (JSON, or YAML with PyYAML) and stores opened by URL.

A file that cannot be read is a :class:`~flagstaff.cli._output.UsageError`
(exit 2); one that is read but holds no document is a
:class:`~flagstaff.errors.ValidationError` (exit 1). A store opened with
:func:`opened` is closed when the command is done with it, whatever happened.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flagstaff.admin import read_documents
from flagstaff.cli._output import UsageError
from flagstaff.document import TOP_KEYS, decode_document
from flagstaff.errors import Problem, ValidationError
from flagstaff.stores import Store, open_store

__all__ = ["is_flags_mapping", "opened", "read_flag_set", "read_flags_file", "read_source"]


def read_flags_file(path: str) -> Any:
    """Decode a JSON (or, with PyYAML installed, YAML) file."""
    p = Path(path)
    try:
        text = sys.stdin.read() if path == "-" else p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {path}: not UTF-8 text") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError(f"{path}: reading YAML needs PyYAML: pip install 'flagstaff[yaml]'") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError([Problem("", f"not YAML: {exc}")]) from None
    return decode_document(text)


def is_flags_mapping(data: Any) -> bool:
    """A flags file maps names to documents; a single document uses flag keys.

    An object whose keys are all flag-document keys (``users``, ``enabled``…)
    is read as one document; any other object as a map of flags.
    """
    if not isinstance(data, dict):
        return False
    return not data or not set(data) <= TOP_KEYS


def read_flag_set(path: str) -> dict[str, Any]:
    """A flags file (name -> document) or a store export."""
    data = read_flags_file(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected an object mapping flag names to documents")
    return data


def read_source(spec: str) -> dict[str, Any]:
    """Documents from a store URL or a flags file."""
    if "://" in spec:
        with opened(spec) as store:
            return read_documents(store)
    return read_flag_set(spec)


@contextmanager
def opened(url: str) -> Iterator[Store]:
    """The store at ``url``, closed on the way out."""
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()
