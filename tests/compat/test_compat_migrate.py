"""Migration round trips: data written in each seed's own format into a real
redis-server, imported, and 100,000 users decided before (the seed's formula,
written out here independently) and after (flagstaff's evaluator)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from flagstaff import Context, cli, evaluate, parse_flag
from flagstaff.compat import hanoi
from flagstaff.compat.migrate import (
    MigrationError,
    apply,
    import_reddit,
    import_rollout,
    read_hanoi,
    read_rollout,
    run_import,
)
from flagstaff.model import decode_document
from flagstaff.stores import open_store
from flagstaff.stores.memory import MemoryStore
from tests._support import hanoi_sdist
from tests._support.redis_server import RedisServer, forbid_machine_redis

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USERS = [str(i) for i in range(100_000)]
RAND_BASE = (2**32 - 1) / 100.0


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _no_machine_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_machine_redis(monkeypatch)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def run_cli(args: list[str]) -> tuple[int, str]:
    """``flagstaff ARGS``: exit code and everything printed."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(args, stdout=out, stderr=err)
    return code, out.getvalue() + err.getvalue()


def read_store(url: str) -> dict[str, Any]:
    store = open_store(url)
    try:
        return {name: decode_document(rec.raw) for name, rec in store.load().records.items()}
    finally:
        store.close()


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


# The rollout gem itself (Debian's ruby-rollout, 2.5.0) writes the data and
# decides for every user: `Feature#active?` is the gem's own decision code.
ROLLOUT_GEM_SCRIPT = r"""
require "redis"
require "rollout"
url, randomize, count = ARGV[0], ARGV[1] == "1", Integer(ARGV[2])
rollout = Rollout.new(Redis.new(url: url), randomize_percentage: randomize)
rollout.activate_percentage(:chat, 20)
rollout.activate_users(:chat, ["7", "42", "1001"])
rollout.activate_percentage(:beta_ui, 33.333)
rollout.set_feature_data(:beta_ui, owner: "web|mobile")
rollout.activate(:all_in)
rollout.activate_user(:nobody, "5")
rollout.activate_group(:signed_in, :all)
rollout.activate_percentage(:tiny, 0.01)
rollout.features.each do |name|
  feature = rollout.get(name)
  bits = (0...count).map { |i| feature.active?(rollout, i.to_s) ? "1" : "0" }.join
  puts "#{name} #{bits} #{feature.active?(rollout, nil) ? "1" : "0"}"
end
"""
ROLLOUT_GEM_FLAGS = {"chat", "beta_ui", "all_in", "nobody", "signed_in", "tiny"}


def rollout_gem(redis_url: str, *, randomize: bool) -> dict[str, tuple[str, str]]:
    """Runs the gem: ``{flag: ("0110…", nil)}``, one character per user of USERS,
    then the decision for no user (``nil``)."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.skip("ruby is not installed (apt-get install ruby-rollout)")
    check = subprocess.run([ruby, "-e", 'require "rollout"'], capture_output=True, check=False)
    if check.returncode != 0:
        pytest.skip("the rollout gem is not installed (apt-get install ruby-rollout)")
    proc = subprocess.run(
        [ruby, "-e", ROLLOUT_GEM_SCRIPT, redis_url, "1" if randomize else "0", str(len(USERS))],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = {}
    for line in proc.stdout.splitlines():
        name, bits, nil = line.split(" ")
        out[name] = (bits, nil)
    return out


@pytest.mark.parametrize("randomize", [False, True], ids=["rollout", "randomize_percentage"])
def test_rollout_gem_round_trip_through_the_cli(
    randomize: bool, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    """Data written by the rollout gem, imported with `flagstaff import`, and every one
    of 100,000 users gets the gem's own decision from the imported flags."""
    before = rollout_gem(redis_url, randomize=randomize)
    assert set(before) == ROLLOUT_GEM_FLAGS and all(len(bits) == len(USERS) for bits, _ in before.values())
    target = f"sqlite:///{tmp_path / 'flags.db'}"
    args = ["import", "--format", "rollout", "--from", redis_url, "--to", target]
    args += ["--randomize-percentage"] if randomize else []
    code, text = run_cli([*args, "--dry-run"])
    assert code == 0 and "would write 6 of 6 flags (6 create)" in text, text
    assert read_store(target) == {}
    code, text = run_cli(args)
    assert code == 0 and "wrote 6 of 6 flags (6 create)" in text, text
    docs = read_store(target)
    mode = "rollout_randomized" if randomize else "rollout"
    assert {d["bucketing"] for d in docs.values()} == {mode}
    for name, (bits, nil) in before.items():
        flag = parse_flag(name, docs[name])
        assert ("1" if evaluate(flag, Context()).enabled else "0") == nil, (name, "no user")
        after = "".join("1" if evaluate(flag, Context(user_id=u)).enabled else "0" for u in USERS)
        assert after == bits, (
            name,
            next(i for i, (a, b) in enumerate(zip(after, bits, strict=True)) if a != b),
        )
    share = {name: bits.count("1") for name, (bits, _) in before.items()}
    assert 19_000 < share["chat"] < 21_000 and 32_000 < share["beta_ui"] < 34_700
    assert share["all_in"] == share["signed_in"] == len(USERS) and share["nobody"] == 1
    assert share["tiny"] < 50


def write_rollout_v2(r: redis.Redis, states: dict[str, str]) -> None:
    """What the rollout gem (2.x) stores: one string per feature plus the list."""
    for name, state in states.items():
        r.set(f"feature:{name}", state)
    r.set("feature:__features__", ",".join(states))


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


@pytest.fixture(scope="module")
def hanoi_0_0_4() -> Any:
    """hanoi 0.0.4's own code, from its sdist (see hanoi_sdist.py)."""
    try:
        return hanoi_sdist.load_original(hanoi_sdist.fetch())
    except hanoi_sdist.FetchError as exc:
        if IN_CI:
            raise
        pytest.skip(f"cannot fetch hanoi's sdist: {exc}")


HANOI_FLAGS = ("h_redis", "h_perf", "h_off", "h_all", "h_zero")


def write_with_hanoi(h: Any, r: redis.Redis) -> tuple[Any, Any]:
    """hanoi 0.0.4 itself writes its two Redis layouts; returns its two backends."""
    where = (r.connection_pool.connection_kwargs["host"], r.connection_pool.connection_kwargs["port"], 0)
    plain, perf = h.RedisBackEnd(where), h.RedisHighPerfBackEnd(where)
    feature = h.backend.Feature
    plain.add_functionality(feature("h_redis", "id", 30, ["A", "B"]), ["7", "9"])
    perf.add_functionality(feature("h_perf", "id", 45, ["X", "Y", "Z"]), ["u1", "u2"])
    off = feature("h_off", None, 50)
    off.enabled = False
    plain.add_functionality(off, ["7"])
    plain.add_functionality(feature("h_all", None, 100))
    plain.add_functionality(feature("h_zero", None, 0), ["z", "12"])
    return plain, perf


def hanoi_in_memory(h: Any, plain: Any, perf: Any) -> Any:
    """hanoi 0.0.4's MemoryBackEnd holding what its Redis backends read back: the
    same decision code, without a Redis round trip per user (300 us each)."""
    memory = h.MemoryBackEnd()
    for name in HANOI_FLAGS:
        if name == "h_perf":
            feature, users = (
                perf.get_functionality(name),
                sorted(perf._redis.smembers(f"rollout:users:{name}")),
            )
            users = [u.decode() for u in users]
        else:
            feature, users = plain._get_functionality(name)
        memory.add_functionality(feature)
        for user in users:
            memory.add(name, user)
    return memory


def test_hanoi_round_trip_through_the_cli(
    hanoi_0_0_4: Any, r: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """Data written by hanoi 0.0.4 itself, imported with `flagstaff import`, and every
    one of 100,000 users gets hanoi 0.0.4's decision and variant: from flagstaff's
    evaluator and from flagstaff.compat.hanoi over the imported store."""
    plain, perf = write_with_hanoi(hanoi_0_0_4, r)
    before = hanoi_in_memory(hanoi_0_0_4, plain, perf)
    for name, backend in [(n, plain) for n in HANOI_FLAGS if n != "h_perf"] + [("h_perf", perf)]:
        for uid in USERS[:1_000]:  # the mirror answers as hanoi's Redis backends do
            assert bool(backend.is_enabled(name, uid)) is before.is_enabled(name, uid), (name, uid)
    target = f"sqlite:///{tmp_path / 'flags.db'}"
    args = ["import", "--format", "hanoi", "--from", redis_url, "--to", target]
    code, text = run_cli([*args, "--dry-run"])
    assert code == 0 and "would write 5 of 5 flags (5 create)" in text and "hanoi_inverted" in text
    assert read_store(target) == {}
    code, text = run_cli(args)
    assert code == 0 and "wrote 5 of 5 flags (5 create)" in text
    docs = read_store(target)
    assert docs["h_redis"]["bucketing"] == "hanoi_inverted" and docs["h_redis"]["percentage"] == 70
    assert docs["h_perf"]["percentage"] == 55 and docs["h_zero"]["percentage"] == 0

    layer = hanoi.Rollout(hanoi.MemoryBackEnd(target))
    try:
        for name in HANOI_FLAGS:
            flag = parse_flag(name, docs[name])
            on = 0
            for uid in USERS:
                want = before.is_enabled(name, uid)
                decision = evaluate(flag, Context(user_id=uid))
                assert decision.enabled is want, (name, uid)
                assert layer.is_enabled(name, uid) is want, (name, uid)
                if want and flag.variants:
                    assert decision.variant == before.variant(name, uid) == layer.variant(name, uid)
                on += want
            hanoi_share = {"h_redis": 70, "h_perf": 55, "h_off": 0, "h_all": 100, "h_zero": 0}[name]
            assert abs(on - hanoi_share * len(USERS) / 100) <= 1_500, (name, on)
    finally:
        layer.backend.close()


def test_hanoi_readme_rule_keeps_the_percentage_and_says_who_moves(hanoi_0_0_4: Any, r: redis.Redis) -> None:
    """`--hanoi-rule readme`: the README's `< p` (documented as changing users)."""
    write_with_hanoi(hanoi_0_0_4, r)
    (entry,) = [e for e in read_hanoi(r, rule="readme") if e.name == "h_redis"]
    assert entry.document["bucketing"] == "hanoi" and entry.document["percentage"] == 30
    assert any(">= 30" in n and "README" in n for n in entry.notes)
    on = same_decisions("h_redis", entry.document, lambda u: u in {"7", "9"} or crc(u) % 100 < 30)
    assert 29_000 < on < 31_000


def test_hanoi_master_layout_prefix(r: redis.Redis) -> None:
    r.set("h:new", "1|40||a|")
    (entry,) = read_hanoi(r, prefix="h")
    assert entry.document["users"] == ["a"] and entry.document["percentage"] == 60
    with pytest.raises(MigrationError, match="hanoi rule"):
        read_hanoi(r, rule="python2")


# --------------------------------------------------------------------------- reddit


def test_reddit_round_trip_through_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "live.ini"
    config.write_text(
        "# reddit's live config, as its README writes it\n"
        'feature_pct = {"percent_loggedin": 25.5}\n'
        'feature_exp = {"experiment": {"loggedin": true, "experiment_id": 9, '
        '"variants": {"a": 5.5, "b": 10}}}\n'
        "feature_gone = off\n"
    )
    target = f"sqlite:///{tmp_path / 'flags.db'}"
    code, text = run_cli(["import", "--format", "reddit", str(config), "--to", target, "--dry-run"])
    assert code == 0 and "would write 3 of 3 flags (3 create)" in text and read_store(target) == {}
    code, text = run_cli(["import", "--format", "reddit", str(config), "--to", target])
    assert code == 0 and "wrote 3 of 3 flags (3 create)" in text
    docs = read_store(target)
    assert docs == import_reddit(config)

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


def test_run_import(hanoi_0_0_4: Any, redis_url: str, r: redis.Redis) -> None:
    write_with_hanoi(hanoi_0_0_4, r)
    actions = run_import("hanoi", redis_url, "memory://compat-migrate-run", dry_run=True)
    assert sorted(a.name for a in actions) == sorted(HANOI_FLAGS)
    assert all(a.kind == "create" for a in actions)
    with pytest.raises(MigrationError):
        run_import("etsy", redis_url, "memory://")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dry-run", "flags.json"], "only with --format"),
        (["--format", "hanoi"], "needs the source"),
        (["--format", "reddit", "--randomize-percentage", "live.ini"], "for --format rollout"),
        (
            ["--format", "rollout", "--hanoi-rule", "code", "--from", "redis://127.0.0.1:1/0"],
            "for --format hanoi",
        ),
        (["--format", "rollout", "--prune", "--from", "redis://127.0.0.1:1/0"], "never deletes"),
        (["--format", "rollout", "--rollout-formula", "2.3", "--from", "$URL"], "2.4.2"),
        (["--format", "reddit", "missing.ini"], "cannot read missing.ini"),
        (["--format", "rollout", "flags.json"], "read from Redis: give --from redis://"),
        (["--format", "hanoi", "--from", "127.0.0.1:6379"], "read from Redis: give --from redis://"),
    ],
)
def test_cli_usage_errors(args: list[str], message: str, redis_url: str, r: redis.Redis) -> None:
    write_rollout_v2(r, {"chat": "20|||{}"})
    args = [redis_url if a == "$URL" else a for a in args]
    code, text = run_cli(["import", *args, "--to", "memory://compat-cli-usage"])
    assert code == 2 and message in text, text
