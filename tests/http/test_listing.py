"""The dashboard's list at scale (flagstaff.http.listing): filters, archived, pages, links."""

from __future__ import annotations

import json
from collections.abc import Mapping

from flagstaff.http.listing import PAGE_SIZE, Query, facts_of, list_page
from flagstaff.stores.base import HistoryEntry, Record

NOW = 1_800_000_000.0


def _records(n: int) -> dict[str, Record]:
    out = {}
    for i in range(n):
        doc = {"percentage": i % 100, "kind": "release" if i % 2 else "ops", "owner": f"team-{i % 3}"}
        if i % 10 == 0:
            doc["archived"] = True
        out[f"f{i:03d}"] = Record(f"f{i:03d}", json.dumps(doc), 1)
    out["broken"] = Record("broken", '{"percentage": 500}', 1)
    return out


def _no_history(names: list[str]) -> Mapping[str, HistoryEntry]:
    raise AssertionError("history is read only for the stale filter")


def test_pages_leave_archived_flags_out_by_default() -> None:
    records = _records(250)
    page = list_page(records, Query.parse({}), _no_history, now=NOW, stale_days=30)
    assert (page.matched, page.total, page.archived, page.pages) == (226, 226, 25, 3)
    assert len(page.names) == PAGE_SIZE and page.names[0] == "broken"
    last = list_page(records, Query.parse({"page": "99"}), _no_history, now=NOW, stale_days=30)
    assert (last.page, len(last.names)) == (3, 26)  # past the end: the last page
    only = list_page(records, Query.parse({"archived": "only"}), _no_history, now=NOW, stale_days=30)
    assert only.matched == 25 and all(int(n[1:]) % 10 == 0 for n in only.names)
    everything = list_page(records, Query.parse({"archived": "all"}), _no_history, now=NOW, stale_days=30)
    assert (everything.matched, everything.total) == (251, 251)


def test_search_and_filters_and_the_invalid() -> None:
    records = _records(30)
    query = Query.parse({"q": "TEAM-1 f0", "kind": "release"})  # every word, any case
    page = list_page(records, query, _no_history, now=NOW, stale_days=30)
    assert page.names == ("f001", "f007", "f013", "f019", "f025")  # f004, f010…: ops
    assert list_page(
        records, Query.parse({"q": "team-1 f00"}), _no_history, now=NOW, stale_days=30
    ).names == (
        "f001",
        "f004",
        "f007",
    )
    assert facts_of(records["broken"]).state == "invalid"
    bad = list_page(records, Query.parse({"state": "invalid"}), _no_history, now=NOW, stale_days=30)
    assert bad.names == ("broken",)
    assert page.owners == ("team-0", "team-1", "team-2")


def test_the_stale_filter_reads_history_of_temporary_flags_only() -> None:
    records = _records(6)
    asked: list[list[str]] = []

    def last(names: list[str]) -> Mapping[str, HistoryEntry]:
        asked.append(names)
        return {
            n: HistoryEntry(n, 1, 1, NOW - (40 if n == "f001" else 1) * 86400, "a", None, "{}") for n in names
        }

    page = list_page(records, Query.parse({"kind": "stale"}), last, now=NOW, stale_days=30)
    assert asked == [["f001", "f003", "f005"]]  # release flags; ops and archived are not asked
    assert page.names == ("f001",)


def test_query_parse_and_links() -> None:
    assert Query.parse({"page": "-3", "archived": "bogus"}) == Query()
    query = Query.parse({"q": "a b", "owner": "team 1", "page": "4"})
    assert query.link(2) == "?q=a+b&owner=team+1&page=2"
    assert query.link(1) == "?q=a+b&owner=team+1"
    assert Query().link(1) == "?"
