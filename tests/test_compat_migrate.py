"""Migration round trips: data written in each seed's own format into a real
redis-server, imported, and 100,000 users decided before (the seed's formula,
written out here independently) and after (flagstaff's evaluator)."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flagstaff import Context, evaluate, parse_flag
from flagstaff.compat.migrate import (
    MigrationError,
    apply,
    import_hanoi,
    import_reddit,
    import_rollout,
    read_hanoi,
    read_rollout,
    run_import,
)
from flagstaff.stores.memory import MemoryStore
from hanoi_suite._servers import redis_server

USERS = [str(i) for i in range(100_000)]
RAND_BASE = (2**32 - 1) / 100.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def crc(s: str) -> int:
    return zlib.crc32(s.encode())


def same_decisions(name: str, doc: Any, original: Callable[[str], bool]) -> int:
    """Asserts every user gets the same decision; returns how many are on."""
    flag = parse_flag(name, doc)
    on = 0
    for uid in USERS:
        before = original(uid)
        after = evaluate(flag, Context(user_id=uid)).enabled
        assert before is after, (name, uid, before, after)
        on += before
    return on


# --------------------------------------------------------------------------- rollout


def write_rollout_v2(r: redis.Redis, states: dict[str, str]) -> None:
    """What the rollout gem (2.x) stores: one string per feature plus the list."""
    for name, state in states.items():
        r.set(f"feature:{name}", state)
    r.set("feature:__features__", ",".join(states))


ROLLOUT_STATES = {
    "chat": "20.0|7,42,1001||{}",
    "beta_ui": '33.333|||{"owner":"web"}',
    "all_in": "100|||{}",
    "nobody": "0|5||{}",
    "signed_in": "0||all|{}",
}


def test_rollout_v2_6_round_trip(r: redis.Redis) -> None:
    write_rollout_v2(r, ROLLOUT_STATES)
    docs = import_rollout(r)
    assert set(docs) == set(ROLLOUT_STATES)
    assert all(d["bucketing"] == "rollout" for d in docs.values())
    on = same_decisions("chat", docs["chat"], lambda u: crc(u) < RAND_BASE * 20.0 or u in {"7", "42", "1001"})
    assert 19_000 < on < 21_000
    on = same_decisions("beta_ui", docs["beta_ui"], lambda u: crc(u) < RAND_BASE * 33.333)
    assert 32_000 < on < 34_700
    assert same_decisions("all_in", docs["all_in"], lambda u: crc(u) < RAND_BASE * 100) == len(USERS)
    assert same_decisions("nobody", docs["nobody"], lambda u: u == "5") == 1
    assert same_decisions("signed_in", docs["signed_in"], lambda u: True) == len(USERS)


def test_rollout_randomized_round_trip(r: redis.Redis) -> None:
    write_rollout_v2(r, {"chat": "20|||{}"})
    docs = import_rollout(r, randomize_percentage=True)
    assert docs["chat"]["bucketing"] == "rollout_randomized"
    on = same_decisions("chat", docs["chat"], lambda u: crc(u + "chat") < RAND_BASE * 20)
    assert 19_000 < on < 21_000


def test_rollout_v2_0_round_trip(r: redis.Redis) -> None:
    # rollout 2.0-2.2: crc32(id) % 100 < percentage.to_i (12.5 -> 12)
    write_rollout_v2(r, {"chat": "12.5|99||"})
    docs = import_rollout(r, formula="2.0")
    assert docs["chat"]["percentage"] == 12
    same_decisions("chat", docs["chat"], lambda u: crc(u) % 100 < 12 or u == "99")


def test_rollout_v1_legacy_round_trip(r: redis.Redis) -> None:
    r.sadd("feature:__global__", "everywhere")
    r.set("feature:old:percentage", "30")
    r.sadd("feature:old:users", "5", "77")
    r.set("feature:everywhere:percentage", "0")
    docs = import_rollout(r)  # no feature:__features__: the v1 layout is detected
    assert set(docs) == {"old", "everywhere"}
    same_decisions("old", docs["old"], lambda u: int(u) % 100 < 30 or u in {"5", "77"})
    assert same_decisions("everywhere", docs["everywhere"], lambda u: True) == len(USERS)


def test_rollout_2_3_formula_is_refused(r: redis.Redis) -> None:
    write_rollout_v2(r, {"chat": "20|||{}"})
    with pytest.raises(MigrationError, match=r"2\.4\.2"):
        read_rollout(r, formula="2.3")


def test_rollout_notes_groups_and_data(r: redis.Redis) -> None:
    write_rollout_v2(r, {"g": '10||admins,all|{"a":"x|y"}'})  # the JSON may hold "|"
    (entry,) = read_rollout(r)
    assert entry.document["groups"] == ["admins"] and entry.document["loggedin"] is True
    assert any("lambdas" in n for n in entry.notes) and any("data" in n for n in entry.notes)


# --------------------------------------------------------------------------- hanoi


def write_hanoi(r: redis.Redis) -> None:
    """hanoi 0.0.4's two Redis layouts, as its backends wrote them."""
    r.set("rollout:h_redis", "1|30|id|7,9|A,B")  # RedisBackEnd
    r.set("rollout:h_perf", "1|45|id|X,Y,Z")  # RedisHighPerfBackEnd ...
    r.sadd("rollout:users:h_perf", "u1", "u2")  # ... and its user SET
    r.set("rollout:h_off", "0|50|||")
    r.set("rollout:h_all", "1|100|||")


def hanoi_intended(pct: int, users: set[str], enabled: bool = True) -> Callable[[str], bool]:
    return lambda u: enabled and (pct == 100 or u in users or crc(u) % 100 < pct)


def test_hanoi_round_trip_both_layouts(r: redis.Redis) -> None:
    write_hanoi(r)
    docs = import_hanoi(r)
    assert set(docs) == {"h_redis", "h_perf", "h_off", "h_all"}
    assert docs["h_redis"]["tags"] == ["hanoi:field=id"]
    on = same_decisions("h_redis", docs["h_redis"], hanoi_intended(30, {"7", "9"}))
    assert 29_000 < on < 31_000
    same_decisions("h_perf", docs["h_perf"], hanoi_intended(45, {"u1", "u2"}))
    assert same_decisions("h_off", docs["h_off"], hanoi_intended(50, set(), enabled=False)) == 0
    assert same_decisions("h_all", docs["h_all"], hanoi_intended(100, set())) == len(USERS)
    # variants: crc32(id) % n over the stored order, for every enabled user
    flag = parse_flag("h_redis", docs["h_redis"])
    for uid in USERS[:20_000]:
        d = evaluate(flag, Context(user_id=uid))
        assert d.variant == (["A", "B"][crc(uid) % 2] if d.enabled else None)


def test_hanoi_0_0_4_inverted_rule_is_reported_not_kept(r: redis.Redis) -> None:
    """hanoi 0.0.4's code enabled bucket >= p; the import keeps the README's < p
    and says so (docs/migration.md): the users inside the percentage change."""
    write_hanoi(r)
    (entry,) = [e for e in read_hanoi(r) if e.name == "h_redis"]
    assert any(">= 30" in n for n in entry.notes)
    flag = parse_flag(entry.name, entry.document)
    differ = sum(
        evaluate(flag, Context(user_id=u)).enabled != (u in {"7", "9"} or crc(u) % 100 >= 30)
        for u in USERS[:10_000]
    )
    assert differ > 9_000


# --------------------------------------------------------------------------- reddit


def test_reddit_round_trip(tmp_path: Path) -> None:
    config = tmp_path / "live.ini"
    config.write_text(
        'feature_pct = {"percent_loggedin": 25.5}\n'
        'feature_exp = {"experiment": {"loggedin": true, "experiment_id": 9, '
        '"variants": {"a": 5.5, "b": 10}}}\n'
        "feature_gone = off\n"
    )
    docs = import_reddit(config)

    def bucket(name: str, seed: str) -> int:
        return int(hashlib.sha1((name + seed).encode()).hexdigest(), 16) % 1000

    on = same_decisions("pct", docs["pct"], lambda u: bucket("pct", u) // 10 < 25.5)
    assert 24_000 < on < 28_000
    flag = parse_flag("exp", docs["exp"])
    pool = {"control_1": 10.0, "control_2": 10.0, "a": 5.5, "b": 10.0}
    names = sorted(pool)
    for uid in USERS:
        b = bucket("exp", uid)
        cand = names[b % 4]
        want = cand if b < pool[cand] * 4 * 10 else None
        assert evaluate(flag, Context(user_id=uid)).variant == want
    assert docs["gone"] == "off"


# --------------------------------------------------------------------------- writing


def test_dry_run_then_apply_then_unchanged(r: redis.Redis) -> None:
    write_rollout_v2(r, {"chat": "20|||{}", "other": "5|||{}"})
    store = MemoryStore()
    store.put("other", '{"percentage": 50}')
    entries = read_rollout(r)
    dry = apply(entries, store, dry_run=True)
    assert {(a.name, a.kind) for a in dry} == {("chat", "create"), ("other", "keep")}
    assert store.get("chat") is None  # nothing written
    done = apply(entries, store)
    assert [a.kind for a in done] == [a.kind for a in dry]
    chat = store.get("chat")
    assert chat is not None and '"bucketing":"rollout"' in chat.raw
    assert {a.kind for a in apply(entries, store, overwrite=True)} == {"unchanged", "update"}
    assert {a.kind for a in apply(entries, store)} == {"unchanged"}


def test_run_import_for_the_cli(redis_url: str, r: redis.Redis) -> None:
    write_hanoi(r)
    actions = run_import("hanoi", redis_url, "memory://compat-migrate-cli", dry_run=True)
    assert sorted(a.name for a in actions) == ["h_all", "h_off", "h_perf", "h_redis"]
    assert all(a.kind == "create" for a in actions)
    with pytest.raises(MigrationError):
        run_import("etsy", redis_url, "memory://")
