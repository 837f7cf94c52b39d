"""The dashboard's flag list at scale: filter every flag cheaply, then build views for one page.

Listing 10,000 flags must answer in well under a second (issue 16: 300 ms of server
time, measured by ``benchmarks/bench_dashboard.py``). The full :class:`~flagstaff.http.views.FlagView`
of a flag costs a history read (its last change) and an indented copy of its document,
so :func:`list_page` filters on :class:`Facts` (from the compiled flag, which
:func:`~flagstaff.http.present.compiled` remembers) and builds views only for the
rows of the page shown (``PAGE_SIZE``). Staleness needs each flag's last change: it is
read only for temporary flags, and only when the ``stale`` filter asks.

Archived flags are left out unless ``archived=only`` (just them) or ``archived=all``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from flagstaff.http.present import compiled, flag_state
from flagstaff.model import Flag, Kind
from flagstaff.stores.base import HistoryEntry, Record

__all__ = ["ARCHIVED_CHOICES", "PAGE_SIZE", "Facts", "ListPage", "Query", "facts_of", "list_page"]

PAGE_SIZE = 100
ARCHIVED_CHOICES = ("", "only", "all")  # hide archived flags (default), only them, all


@dataclass(frozen=True, slots=True)
class Facts:
    """What the list filters on, for one flag (no history read, no document copy)."""

    name: str
    state: str
    kind: str | None
    owner: str | None
    tags: tuple[str, ...]
    archived: bool
    text: str  # what the search box matches, lower-cased

    @property
    def temporary(self) -> bool:
        return self.kind is not None and self.kind in _TEMPORARY


_TEMPORARY = frozenset(k.value for k in Kind if k.temporary)


def facts_of(record: Record) -> Facts:
    """The list facts of a stored flag (an invalid one: ``state`` ``invalid``, its name only)."""
    return _facts(record.name, record.raw)


# Remembered by (name, text), as present.compiled is: a listing of 10,000 unchanged flags
# is then 10,000 dictionary reads (measured: 150 ms a listing without, under 20 ms with).
@functools.lru_cache(maxsize=16384)
def _facts(name: str, raw: str) -> Facts:
    flag = compiled(name, raw)
    if isinstance(flag, Flag):
        kind = flag.kind.value if flag.kind else None
        words = [name, flag.description or "", flag.owner or "", *flag.tags]
        return Facts(
            name,
            flag_state(flag),
            kind,
            flag.owner,
            flag.tags,
            flag.archived,
            " ".join(words).lower(),
        )
    return Facts(name, "invalid", None, None, (), False, name.lower())


@dataclass(frozen=True, slots=True)
class Query:
    """The list's query string: search, filters, archived, page (1-based)."""

    q: str = ""
    state: str = ""
    kind: str = ""
    owner: str = ""
    tag: str = ""
    archived: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> Query:
        page = params.get("page", "1")
        archived = params.get("archived", "")
        return cls(
            params.get("q", ""),
            params.get("state", ""),
            params.get("kind", ""),
            params.get("owner", ""),
            params.get("tag", ""),
            archived if archived in ARCHIVED_CHOICES else "",
            int(page) if page.isdigit() and int(page) > 0 else 1,
        )

    @property
    def words(self) -> tuple[str, ...]:
        """The search words, lower-cased: every one must be in a flag's text."""
        return tuple(self.q.lower().split())

    def admits(
        self, f: Facts, stale: frozenset[str] = frozenset(), words: tuple[str, ...] | None = None
    ) -> bool:
        """Whether ``f`` passes: ``stale`` names the stale flags (for ``kind=stale``), ``words``
        are :attr:`words` (given by a caller that asks for many flags)."""
        if (self.archived == "" and f.archived) or (self.archived == "only" and not f.archived):
            return False
        return (
            all(w in f.text for w in (self.words if words is None else words))
            and (not self.state or f.state == self.state)
            and (not self.kind or (f.name in stale if self.kind == "stale" else f.kind == self.kind))
            and (not self.owner or f.owner == self.owner)
            and (not self.tag or self.tag in f.tags)
        )

    def link(self, page: int) -> str:
        """The query string of page ``page`` with these filters (``?q=…&page=2``)."""
        from urllib.parse import urlencode

        pairs = [
            (k, v)
            for k, v in (
                ("q", self.q),
                ("state", self.state),
                ("kind", self.kind),
                ("owner", self.owner),
                ("tag", self.tag),
                ("archived", self.archived),
            )
            if v
        ]
        if page > 1:
            pairs.append(("page", str(page)))
        return "?" + urlencode(pairs) if pairs else "?"


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of the filtered list: the names on it, and what the page header says."""

    names: tuple[str, ...]
    matched: int  # flags that pass the filters
    total: int  # flags not archived (or archived, with archived=only)
    archived: int  # archived flags in the store
    page: int
    pages: int
    owners: tuple[str, ...]
    tags: tuple[str, ...]


def list_page(
    records: Mapping[str, Record],
    query: Query,
    last: Callable[[list[str]], Mapping[str, HistoryEntry]],
    *,
    now: float,
    stale_days: float,
) -> ListPage:
    """Filter ``records`` (flags only) by ``query`` and cut out its page. ``last(names)`` reads
    the newest history entry of each name; it is called only for the ``stale`` filter."""
    facts = [_facts(n, records[n].raw) for n in sorted(records)]
    stale_names: frozenset[str] = frozenset()
    if query.kind == "stale":
        candidates = [f.name for f in facts if f.temporary and not f.archived]
        entries = last(candidates)
        limit = stale_days * 86400
        stale_names = frozenset(n for n, e in entries.items() if now - e.at > limit)
    words = query.words
    plain = query == Query(page=query.page)  # no search, no filter: every flag not archived
    matched = [f.name for f in facts if (not f.archived if plain else query.admits(f, stale_names, words))]
    pages = max(1, -(-len(matched) // PAGE_SIZE))
    page = min(query.page, pages)
    first = (page - 1) * PAGE_SIZE
    archived = sum(f.archived for f in facts)
    return ListPage(
        names=tuple(matched[first : first + PAGE_SIZE]),
        matched=len(matched),
        total=archived
        if query.archived == "only"
        else len(facts)
        if query.archived
        else len(facts) - archived,
        archived=archived,
        page=page,
        pages=pages,
        owners=tuple(sorted({f.owner for f in facts if f.owner})),
        tags=tuple(sorted({t for f in facts for t in f.tags})),
    )
