"""An immutable set of flags at one store revision.

A client holds one :class:`Snapshot` and replaces it wholesale (one attribute
assignment) when the store reports a change, so readers never take a lock and
never see half of a change. Applying a change copies the name -> flag dict
(a C-level copy, ~50 µs for 10,000 flags) rather than re-parsing anything.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from flagstaff.model import Flag

__all__ = ["Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Flags by name, the store revision they reflect, and when they were loaded."""

    flags: Mapping[str, Flag] = field(default_factory=lambda: MappingProxyType({}))
    revision: int = 0
    loaded_at: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.flags, MappingProxyType):
            object.__setattr__(self, "flags", MappingProxyType(dict(self.flags)))

    def get(self, name: str) -> Flag | None:
        return self.flags.get(name)

    def __len__(self) -> int:
        return len(self.flags)

    def __iter__(self) -> Iterator[str]:
        return iter(self.flags)

    def __contains__(self, name: object) -> bool:
        return name in self.flags

    def with_flag(self, flag: Flag, revision: int, at: float) -> Snapshot:
        """A new snapshot with ``flag`` added or replaced."""
        flags = _copy(self.flags)
        flags[flag.name] = flag
        return Snapshot(MappingProxyType(flags), revision, at)

    def without(self, name: str, revision: int, at: float) -> Snapshot:
        """A new snapshot with ``name`` removed (no-op copy if absent)."""
        flags = _copy(self.flags)
        flags.pop(name, None)
        return Snapshot(MappingProxyType(flags), revision, at)


def _copy(flags: Mapping[str, Flag]) -> dict[str, Flag]:
    # mappingproxy.copy() is the C-level dict copy (~50 us for 10,000 flags);
    # dict(proxy) goes through the mapping protocol and is ~15x slower.
    if isinstance(flags, MappingProxyType):
        return flags.copy()
    return dict(flags)
