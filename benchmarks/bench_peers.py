"""flagstaff beside the peer SDKs: ns per check on equivalent flags, all in one run.

Five peer SDKs, each fed the same four flags from local data, with no network at all:

* GrowthBook (``growthbook``): a features dict passed to ``GrowthBook(...)``.
* LaunchDarkly (``launchdarkly-server-sdk``): the file data source (full flag JSON, so
  rollouts work; ``TestData`` cannot express them), ``send_events=False``,
  ``diagnostic_opt_out=True``, every URI pointing at loopback port 9.
* Unleash (``UnleashClient``): a ``FileCache`` bootstrapped from a dict, registration and
  metrics off, ``initialize_client(fetch_toggles=False)`` (the offline connector).
* Flagsmith (``flagsmith``): ``offline_mode`` with a ``LocalFileHandler`` reading an
  environment document.
* OpenFeature + flagd (``openfeature-provider-flagd``): ``ResolverType.IN_PROCESS`` with
  ``offline_flag_source_path`` (a flagd flag file, fractional and JSON-logic targeting).

and, to show what the OpenFeature SDK itself adds to a check, OpenFeature + flagstaff's own
provider (``flagstaff.integrations.openfeature``) on the same flags as flagstaff's rows.

The four cases: (a) a boolean flag on for everyone, (b) a 10% rollout by user id, (c) a rule
``plan == "pro"`` (half the users are pro), (d) an experiment of two variants, 50/50. Every
SDK's answers are checked before it is timed (on for all; 7-13% in the rollout; exactly the
pro users; each variant 40-60%); a peer whose answers are wrong says so in its row.

Each check is timed two ways over distinct user ids: with the SDK's context (user) object
built beforehand, and built in the call, the way each SDK's documentation writes it. Where an
SDK has no context object (Flagsmith takes an identifier and traits; each call evaluates
every flag of the environment, here the four) the prebuilt row is absent. GrowthBook's
documented context is the ``GrowthBook`` instance itself, built per request from the
attributes and the features dict: its in-the-call row builds one per check; its prebuilt rows
hold one instance per user. Beside them: flagstaff's ``client.is_enabled`` / ``client.variant``
and the plain-function floor of ``bench_client.py`` (a dict lookup and ``crc32 % 100``).

While it runs, ``socket.socket.connect``/``connect_ex`` and ``socket.getaddrinfo`` refuse any
non-loopback address and count every attempt: the footer prints the counts, and a
non-loopback attempt fails the module.

Run alone: ``python benchmarks/bench_peers.py [--quick] [--plot FILE.png]``; through the
runner: ``python benchmarks/run.py --only bench_peers`` (set ``FLAGSTAFF_BENCH_PEERS_PLOT``
to a path to get the plot from there too). Install the peers with ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import json
import logging
import os
import socket
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flagstaff import Context
from flagstaff.client import Client, Options
from flagstaff.stores.memory import MemoryStore

try:
    from _row import Row
except ImportError:  # until the shared plumbing has landed
    from typing import NamedTuple

    class Row(NamedTuple):  # type: ignore[no-redef]
        group: str
        name: str
        value: float
        unit: str
        floor: float | None
        target: str


GROUP = "peers"
CASES = ("on for everyone", "10% rollout", 'rule plan == "pro"', "experiment 50/50")
PLOT_ENV = "FLAGSTAFF_BENCH_PEERS_PLOT"

Check = Callable[[Any], Any]  # one flag check on a prebuilt context
Build = Callable[[str, str], Any]  # (user id, plan) -> the SDK's context object


@dataclass
class Peer:
    """One SDK, set up on the four flags. ``checks[case]`` takes a prebuilt context;
    ``in_call[case]`` takes (uid, plan) and builds the context inside the call."""

    name: str
    build: Build | None
    checks: dict[str, Check]
    in_call: dict[str, Callable[[str, str], Any]]
    close: Callable[[], None] = lambda: None
    # Normalise an answer: bool for the flags, the variant name for the experiment.
    answer: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


# --- the network guard ---------------------------------------------------------------------


@dataclass
class NetLog:
    loopback: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _is_loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def no_network() -> Iterator[NetLog]:
    """Refuse (and count) every connect or name lookup to a non-loopback address."""
    log = NetLog()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(address, (str, bytes)) and not isinstance(address, tuple):
            return  # a Unix socket path: local by construction
        if _is_loopback(host):
            log.loopback.append(str(address))
            return
        log.refused.append(str(address))
        raise OSError(f"bench_peers: network refused to {address!r}")

    def connect(self: Any, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: Any, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        check((host.decode() if isinstance(host, bytes) else host, 0))
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield log
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo


# --- the SDKs, each on the four flags ------------------------------------------------------


def _flagstaff_client() -> tuple[Client, Callable[[], None]]:
    store = MemoryStore()
    docs = {
        "bool": "on",
        "pct": 10,
        "rule": {"rules": [{"attribute": "plan", "op": "eq", "value": "pro"}]},
        "exp": {"targeting": [{"serve": {"variants": {"a": 50, "b": 50}}}]},
    }
    for name, doc in docs.items():
        store.put(name, json.dumps(doc))
    client = Client(store, Options(timeout=30))

    def close() -> None:
        client.close()
        store.close()

    return client, close


def _flagstaff(tmp: Path) -> Peer:
    client, close = _flagstaff_client()
    is_enabled, variant = client.is_enabled, client.variant
    return Peer(
        "flagstaff",
        lambda uid, plan: Context(user_id=uid, attributes={"plan": plan}),
        {
            CASES[0]: lambda c: is_enabled("bool", c),
            CASES[1]: lambda c: is_enabled("pct", c),
            CASES[2]: lambda c: is_enabled("rule", c),
            CASES[3]: lambda c: variant("exp", c),
        },
        {
            CASES[0]: lambda u, p: is_enabled("bool", {"user_id": u, "plan": p}),
            CASES[1]: lambda u, p: is_enabled("pct", {"user_id": u, "plan": p}),
            CASES[2]: lambda u, p: is_enabled("rule", {"user_id": u, "plan": p}),
            CASES[3]: lambda u, p: variant("exp", {"user_id": u, "plan": p}),
        },
        close,
    )


def _growthbook(tmp: Path) -> Peer:
    from growthbook import GrowthBook

    features = {
        "bool": {"defaultValue": True},
        "pct": {"defaultValue": False, "rules": [{"force": True, "coverage": 0.1, "hashAttribute": "id"}]},
        "rule": {"defaultValue": False, "rules": [{"condition": {"plan": "pro"}, "force": True}]},
        "exp": {
            "defaultValue": "none",
            "rules": [{"key": "exp", "variations": ["a", "b"], "weights": [0.5, 0.5], "hashAttribute": "id"}],
        },
    }

    def build(uid: str, plan: str) -> GrowthBook:
        return GrowthBook(attributes={"id": uid, "plan": plan}, features=features)

    def fresh(key: str, value: bool) -> Callable[[str, str], Any]:
        if value:
            return lambda u, p: GrowthBook(attributes={"id": u, "plan": p}, features=features).is_on(key)
        return lambda u, p: GrowthBook(attributes={"id": u, "plan": p}, features=features).get_feature_value(
            key, "none"
        )

    return Peer(
        "GrowthBook",
        build,
        {
            CASES[0]: lambda gb: gb.is_on("bool"),
            CASES[1]: lambda gb: gb.is_on("pct"),
            CASES[2]: lambda gb: gb.is_on("rule"),
            CASES[3]: lambda gb: gb.get_feature_value("exp", "none"),
        },
        {
            CASES[0]: fresh("bool", True),
            CASES[1]: fresh("pct", True),
            CASES[2]: fresh("rule", True),
            CASES[3]: fresh("exp", False),
        },
    )


def _launchdarkly(tmp: Path) -> Peer:
    from ldclient import Context as LDContext
    from ldclient.client import LDClient
    from ldclient.config import Config
    from ldclient.integrations import Files

    def flag(key: str, variations: list[Any], **extra: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "key": key,
            "version": 1,
            "on": True,
            "variations": variations,
            "offVariation": 0,
            "fallthrough": {"variation": 1},
            "targets": [],
            "contextTargets": [],
            "rules": [],
            "prerequisites": [],
            "salt": key,
        }
        base.update(extra)
        return base

    rollout = {
        "rollout": {"variations": [{"variation": 1, "weight": 10_000}, {"variation": 0, "weight": 90_000}]}
    }
    split = {
        "rollout": {"variations": [{"variation": 0, "weight": 50_000}, {"variation": 1, "weight": 50_000}]}
    }
    rule = {"id": "pro", "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}], "variation": 1}
    data = {
        "flags": {
            "bool": flag("bool", [False, True]),
            "pct": flag("pct", [False, True], fallthrough=rollout),
            "rule": flag("rule", [False, True], fallthrough={"variation": 0}, rules=[rule]),
            "exp": flag("exp", ["a", "b"], fallthrough=split),
        }
    }
    path = tmp / "launchdarkly.json"
    path.write_text(json.dumps(data))
    nowhere = "http://127.0.0.1:9"
    config = Config(
        sdk_key="bench-no-key",
        base_uri=nowhere,
        events_uri=nowhere,
        stream_uri=nowhere,
        send_events=False,
        diagnostic_opt_out=True,
        update_processor_class=Files.new_data_source(paths=[str(path)], auto_update=False),
    )
    client = LDClient(config=config, start_wait=10)
    if not client.is_initialized():
        client.close()  # type: ignore[no-untyped-call]
        raise RuntimeError("the file data source did not initialise")
    variation = client.variation

    def build(uid: str, plan: str) -> Any:
        return LDContext.builder(uid).set("plan", plan).build()

    def fresh(key: str, default: Any) -> Callable[[str, str], Any]:
        return lambda u, p: variation(key, LDContext.builder(u).set("plan", p).build(), default)

    return Peer(
        "LaunchDarkly",
        build,
        {
            CASES[0]: lambda c: variation("bool", c, False),
            CASES[1]: lambda c: variation("pct", c, False),
            CASES[2]: lambda c: variation("rule", c, False),
            CASES[3]: lambda c: variation("exp", c, "none"),
        },
        {
            CASES[0]: fresh("bool", False),
            CASES[1]: fresh("pct", False),
            CASES[2]: fresh("rule", False),
            CASES[3]: fresh("exp", "none"),
        },
        client.close,
    )


def _unleash(tmp: Path) -> Peer:
    from UnleashClient.cache import FileCache
    from UnleashClient.clients.unleash_client import UnleashClient

    def toggle(name: str, strategies: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"name": name, "enabled": True, "strategies": strategies, "impressionData": False, **extra}

    def flexible(rollout: int, group: str) -> dict[str, Any]:
        params = {"rollout": str(rollout), "stickiness": "userId", "groupId": group}
        return {"name": "flexibleRollout", "parameters": params}

    pro = {"name": "default", "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}
    variants = [
        {"name": v, "weight": 500, "weightType": "variable", "stickiness": "userId"} for v in ("a", "b")
    ]
    features = {
        "version": 1,
        "features": [
            toggle("bool", [{"name": "default", "parameters": {}}]),
            toggle("pct", [flexible(10, "pct")]),
            toggle("rule", [pro]),
            toggle("exp", [flexible(100, "exp")], variants=variants),
        ],
    }
    cache = FileCache("flagstaff-bench", directory=str(tmp / "unleash"))
    cache.bootstrap_from_dict(features)
    client = UnleashClient(
        url="http://127.0.0.1:9",
        app_name="flagstaff-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
        cache_directory=str(tmp / "unleash"),
    )
    client.initialize_client(fetch_toggles=False)
    is_enabled, get_variant = client.is_enabled, client.get_variant

    return Peer(
        "Unleash",
        lambda uid, plan: {"userId": uid, "properties": {"plan": plan}},
        {
            CASES[0]: lambda c: is_enabled("bool", c),
            CASES[1]: lambda c: is_enabled("pct", c),
            CASES[2]: lambda c: is_enabled("rule", c),
            CASES[3]: lambda c: get_variant("exp", c),
        },
        {
            CASES[0]: lambda u, p: is_enabled("bool", {"userId": u, "properties": {"plan": p}}),
            CASES[1]: lambda u, p: is_enabled("pct", {"userId": u, "properties": {"plan": p}}),
            CASES[2]: lambda u, p: is_enabled("rule", {"userId": u, "properties": {"plan": p}}),
            CASES[3]: lambda u, p: get_variant("exp", {"userId": u, "properties": {"plan": p}}),
        },
        client.destroy,
        {CASES[3]: lambda v: v["name"] if v.get("enabled") else None},
    )


def _flagsmith(tmp: Path) -> Peer:
    from flagsmith import Flagsmith
    from flagsmith.offline_handlers import LocalFileHandler

    ids = {"bool": 1, "pct": 2, "rule": 3, "exp": 4}

    def state(name: str, enabled: bool, value: Any = None, n: int = 0, **extra: Any) -> dict[str, Any]:
        return {
            "feature": {"id": ids[name], "name": name, "type": "STANDARD"},
            "enabled": enabled,
            "feature_state_value": value,
            "django_id": 100 * ids[name] + n,
            "multivariate_feature_state_values": [],
            **extra,
        }

    def segment(sid: int, name: str, condition: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": sid,
            "name": name,
            "rules": [{"type": "ALL", "rules": [{"type": "ANY", "conditions": [condition], "rules": []}]}],
            "feature_states": [state(name, True, n=1, feature_segment={"priority": 0})],
        }

    mv = [
        {
            "id": 10 + i,
            "percentage_allocation": 50,
            "multivariate_feature_option": {"id": 20 + i, "value": v},
        }
        for i, v in enumerate(("a", "b"))
    ]
    document = {
        "api_key": "bench-environment",
        "name": "bench",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "feature_states": [
            state("bool", True),
            state("pct", False),
            state("rule", False),
            state("exp", True, "control", multivariate_feature_state_values=mv),
        ],
        "project": {
            "id": 1,
            "name": "bench",
            "segments": [
                segment(1, "pct", {"operator": "PERCENTAGE_SPLIT", "value": "10"}),
                segment(2, "rule", {"operator": "EQUAL", "property_": "plan", "value": "pro"}),
            ],
        },
        "identity_overrides": [],
    }
    path = tmp / "flagsmith.json"
    path.write_text(json.dumps(document))
    client = Flagsmith(offline_mode=True, offline_handler=LocalFileHandler(str(path)))
    identity = client.get_identity_flags

    return Peer(
        "Flagsmith",
        None,
        {},
        {
            CASES[0]: lambda u, p: identity(u, traits={"plan": p}).is_feature_enabled("bool"),
            CASES[1]: lambda u, p: identity(u, traits={"plan": p}).is_feature_enabled("pct"),
            CASES[2]: lambda u, p: identity(u, traits={"plan": p}).is_feature_enabled("rule"),
            CASES[3]: lambda u, p: identity(u, traits={"plan": p}).get_feature_value("exp"),
        },
    )


def _flagd(tmp: Path) -> Peer:
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    def boolean(targeting: dict[str, Any] | None, default: str = "off") -> dict[str, Any]:
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": default,
        }
        if targeting is not None:
            flag["targeting"] = targeting
        return flag

    pct = {"fractional": [["on", 10], ["off", 90]]}
    pro = {"if": [{"==": [{"var": "plan"}, "pro"]}, "on", "off"]}
    flags = {
        "flags": {
            "bool": boolean(None, "on"),
            "pct": boolean(pct),
            "rule": boolean(pro),
            "exp": {
                "state": "ENABLED",
                "variants": {"a": "a", "b": "b"},
                "defaultVariant": "a",
                "targeting": {"fractional": [["a", 50], ["b", 50]]},
            },
        }
    }
    path = tmp / "flagd.json"
    path.write_text(json.dumps(flags))
    provider = FlagdProvider(resolver_type=ResolverType.IN_PROCESS, offline_flag_source_path=str(path))
    return _openfeature("OpenFeature+flagd", provider, provider.shutdown)


def _openfeature_flagstaff(tmp: Path) -> Peer:
    """flagstaff's own OpenFeature provider: what the OpenFeature SDK adds to a check."""
    from flagstaff.integrations.openfeature import FlagstaffProvider

    client, close = _flagstaff_client()
    return _openfeature("OpenFeature+flagstaff", FlagstaffProvider(client), close)


def _openfeature(name: str, provider: Any, close: Callable[[], None]) -> Peer:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider import ProviderStatus

    domain = f"flagstaff-bench-{name}"
    # flagd's file is read by a watcher thread: wait until the provider says it holds the flags,
    # or the first checks get the defaults (seen: 208 of 500 "on for everyone" checks off).
    api.set_provider_and_wait(provider, domain=domain)
    client = api.get_client(domain=domain)
    deadline = time.monotonic() + 10
    while client.get_provider_status() != ProviderStatus.READY:
        if time.monotonic() > deadline:
            close()
            raise RuntimeError(f"provider not ready: {client.get_provider_status()}")
        time.sleep(0.01)
    get_bool, get_str = client.get_boolean_value, client.get_string_value

    def ctx(uid: str, plan: str) -> EvaluationContext:
        return EvaluationContext(targeting_key=uid, attributes={"plan": plan})

    return Peer(
        name,
        ctx,
        {
            CASES[0]: lambda c: get_bool("bool", False, c),
            CASES[1]: lambda c: get_bool("pct", False, c),
            CASES[2]: lambda c: get_bool("rule", False, c),
            CASES[3]: lambda c: get_str("exp", "none", c),
        },
        {
            CASES[0]: lambda u, p: get_bool("bool", False, EvaluationContext(u, {"plan": p})),
            CASES[1]: lambda u, p: get_bool("pct", False, EvaluationContext(u, {"plan": p})),
            CASES[2]: lambda u, p: get_bool("rule", False, EvaluationContext(u, {"plan": p})),
            CASES[3]: lambda u, p: get_str("exp", "none", EvaluationContext(u, {"plan": p})),
        },
        close,
    )


# (name, module that tells it is installed, pip name, setup)
PEERS: list[tuple[str, str, str, Callable[[Path], Peer]]] = [
    ("GrowthBook", "growthbook", "growthbook", _growthbook),
    ("LaunchDarkly", "ldclient", "launchdarkly-server-sdk", _launchdarkly),
    ("Unleash", "UnleashClient", "UnleashClient", _unleash),
    ("Flagsmith", "flagsmith", "flagsmith", _flagsmith),
    ("OpenFeature+flagd", "openfeature.contrib.provider.flagd", "openfeature-provider-flagd", _flagd),
    ("OpenFeature+flagstaff", "openfeature", "openfeature-sdk", _openfeature_flagstaff),
]


# --- measuring -----------------------------------------------------------------------------


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _users(n: int) -> list[tuple[str, str]]:
    return [(f"user-{i}", "pro" if i % 2 else "free") for i in range(n)]


def _verify(peer: Peer, users: Sequence[tuple[str, str]]) -> str:
    """'' when the peer's answers are the four flags' answers, else what is wrong."""
    problems = []
    for case in CASES:
        norm = peer.answer.get(case, lambda v: v)
        got = [norm(peer.in_call[case](u, p)) for u, p in users]
        if peer.build is not None:
            again = [norm(peer.checks[case](peer.build(u, p))) for u, p in users]
            if again != got:
                problems.append(f"{case}: prebuilt and in-the-call disagree")
        n = len(users)
        share = got.count(True) / n
        if (case == CASES[0] and share != 1) or (case == CASES[1] and not 0.07 <= share <= 0.13):
            problems.append(f"{case}: {got.count(True)}/{n} on")
        elif case == CASES[2] and got != [p == "pro" for _, p in users]:
            problems.append(f"{case}: not exactly the pro users")
        elif case == CASES[3] and not all(0.4 <= got.count(v) / n <= 0.6 for v in ("a", "b")):
            problems.append(f"{case}: a {got.count('a')}, b {got.count('b')} of {n}")
    return "; ".join(problems)


def _median_ns(body: Callable[[int], None], batches: int, budget_s: float) -> float:
    """``body(k)`` makes k checks; k is sized so one batch takes about ``budget_s``."""
    body(50)  # warm up
    k = 50
    while True:
        t0 = time.perf_counter_ns()
        body(k)
        elapsed = time.perf_counter_ns() - t0
        if elapsed >= budget_s * 1e9 / 4 or k >= 1_000_000:
            break
        k *= 4
    k = max(50, int(k * budget_s * 1e9 / max(elapsed, 1)))
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        body(k)
        samples.append((time.perf_counter_ns() - t0) / k)
    return statistics.median(samples)


def _prebuilt_loop(check: Check, contexts: Sequence[Any]) -> Callable[[int], None]:
    n = len(contexts)

    def body(k: int) -> None:
        for i in range(k):
            check(contexts[i % n])

    return body


def _in_call_loop(
    check: Callable[[str, str], Any], users: Sequence[tuple[str, str]]
) -> Callable[[int], None]:
    n = len(users)

    def body(k: int) -> None:
        for i in range(k):
            uid, plan = users[i % n]
            check(uid, plan)

    return body


def _floor_loop(users: Sequence[tuple[str, str]]) -> Callable[[int], None]:
    table = {"f": 10.0}
    n = len(users)

    def floor(flag: str, uid: str) -> bool:
        return zlib.crc32(uid.encode()) % 100 < table[flag]

    def body(k: int) -> None:
        for i in range(k):
            floor("f", users[i % n][0])

    return body


@dataclass(frozen=True)
class Result:
    sdk: str
    case: str
    mode: str  # "prebuilt" or "in the call"
    ns: float | None  # None: not measured (see note)
    note: str = ""


@dataclass
class Report:
    floor: float
    results: list[Result]
    net: NetLog
    versions: dict[str, str]
    floors: list[float] = field(default_factory=list)  # each floor measurement, in order

    def flagstaff(self, case: str, mode: str) -> float | None:
        for r in self.results:
            if r.sdk == "flagstaff" and r.case == case and r.mode == mode:
                return r.ns
        return None


def _version(pip_name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pip_name)
    except PackageNotFoundError:
        return "-"


def measure(quick: bool) -> Report:
    n_users = 2_000 if quick else 10_000
    batches = 5 if quick else 11
    budget = 0.02 if quick else 0.05
    users = _users(n_users)
    results: list[Result] = []
    versions = {"flagstaff": _version("flagstaff")}
    # The SDKs log their start-up (and LaunchDarkly warns about its fake key): keep the table clean.
    logging.disable(logging.WARNING)
    try:
        with no_network() as net, tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
            # The floor is measured before each SDK, and the median taken: one measurement at
            # the start alone swung 160-310 ns on a shared machine.
            floors: list[float] = []
            setups: list[tuple[str, str, str, Callable[[Path], Peer]]] = [
                ("flagstaff", "flagstaff", "flagstaff", _flagstaff),
                *PEERS,
            ]
            for name, module, pip_name, setup in setups:
                versions[name] = _version(pip_name)
                floors.append(_median_ns(_floor_loop(users), batches, budget))
                if not _installed(module):
                    results += [
                        Result(name, c, "-", None, f"not installed (pip install {pip_name})") for c in CASES
                    ]
                    continue
                home = Path(tmp) / module
                home.mkdir()
                try:
                    peer = setup(home)
                except Exception as exc:
                    why = f"cannot run offline: {type(exc).__name__}: {exc}"[:120]
                    results += [Result(name, c, "-", None, why) for c in CASES]
                    continue
                try:
                    results += _measure_peer(peer, users, batches, budget)
                finally:
                    peer.close()
    finally:
        logging.disable(logging.NOTSET)
    return Report(statistics.median(floors), results, net, versions, floors)


def _measure_peer(peer: Peer, users: Sequence[tuple[str, str]], batches: int, budget: float) -> list[Result]:
    wrong = _verify(peer, users[:2_000])
    note = f"WRONG ANSWERS: {wrong}" if wrong else ""
    out = []
    contexts = [peer.build(u, p) for u, p in users] if peer.build is not None else []
    for case in CASES:
        if contexts:
            ns = _median_ns(_prebuilt_loop(peer.checks[case], contexts), batches, budget)
            out.append(Result(peer.name, case, "prebuilt", ns, note))
        ns = _median_ns(_in_call_loop(peer.in_call[case], users), batches, budget)
        out.append(Result(peer.name, case, "in the call", ns, note))
    return out


# --- output --------------------------------------------------------------------------------


def table(report: Report) -> str:
    header = ("sdk", "case", "context", "ns/check", "x floor", "x flagstaff", "note")
    rows = [header]
    for r in report.results:
        if r.ns is None:
            rows.append((r.sdk, r.case, "-", "-", "-", "-", r.note))
            continue
        ours = report.flagstaff(r.case, r.mode)
        rows.append(
            (
                r.sdk,
                r.case,
                r.mode,
                f"{r.ns:,.0f}",
                f"{r.ns / report.floor:.1f}",
                f"{r.ns / ours:.1f}" if ours else "-",
                r.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if 3 <= i <= 5 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    spread = f" (median of {len(report.floors)}: {min(report.floors):,.0f}-{max(report.floors):,.0f})"
    lines.append(
        f"floor (dict lookup + crc32 % 100): {report.floor:,.0f} ns{spread if report.floors else ''}; "
        f"{versions}"
    )
    lines.append(
        f"network: {len(report.net.refused)} non-loopback attempts (refused), "
        f"{len(report.net.loopback)} loopback connects"
    )
    return "\n".join(lines)


def plot(report: Report, path: str) -> None:
    """Grouped horizontal bars, log scale: ns/check per SDK and case, both context modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in report.results if r.ns is not None]
    sdks = list(dict.fromkeys(r.sdk for r in measured))
    modes = ("prebuilt", "in the call")
    fig, axes = plt.subplots(1, len(CASES), figsize=(4 * len(CASES), 0.5 * len(sdks) + 2), sharey=True)
    for ax, case in zip(axes, CASES, strict=True):
        for j, mode in enumerate(modes):
            ys, xs = [], []
            for i, sdk in enumerate(sdks):
                for r in measured:
                    if r.sdk == sdk and r.case == case and r.mode == mode and r.ns is not None:
                        ys.append(i + (j - 0.5) * 0.38)
                        xs.append(r.ns)
            bars = ax.barh(ys, xs, height=0.36, label=mode)
            ax.bar_label(bars, labels=[f"{x:,.0f}" for x in xs], fontsize=7, padding=2)
        ax.axvline(report.floor, color="grey", linestyle="--", linewidth=1, label="floor")
        ax.set_xscale("log")
        ax.set_title(case, fontsize=10)
        ax.set_xlabel("ns per check (log)")
    axes[0].set_yticks(range(len(sdks)), sdks)
    axes[0].invert_yaxis()
    right = max(r.ns for r in measured if r.ns is not None) * 8  # room for the labels
    for ax in axes:
        ax.set_xlim(left=report.floor / 2, right=right)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(
        "A check in-process, no network: flagstaff beside peer SDKs (ns, lower is faster)", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rows(report: Report) -> list[Row]:
    rows = []
    for r in report.results:
        if r.ns is None:
            rows.append(Row(GROUP, f"{r.sdk}: {r.case}", float("nan"), "ns/call", None, r.note))
            continue
        ours = report.flagstaff(r.case, r.mode)
        target = f"{r.ns / ours:.1f}x flagstaff" if ours else ""
        name = f"{r.sdk}: {r.case}, context {r.mode}"
        rows.append(Row(GROUP, name, r.ns, "ns/call", report.floor, f"{target} {r.note}".strip()))
    return rows


def run(quick: bool) -> list[Row]:
    report = measure(quick)
    print(table(report), file=sys.stderr, flush=True)
    if path := os.environ.get(PLOT_ENV):
        plot(report, path)
    if report.net.refused:
        raise RuntimeError(f"an SDK tried the network: {report.net.refused[:5]}")
    return _rows(report)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer users and batches")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the figures to this PNG")
    args = parser.parse_args(argv)
    report = measure(args.quick)
    print(table(report))
    if args.plot or os.environ.get(PLOT_ENV):
        plot(report, args.plot or os.environ[PLOT_ENV])
    return 1 if report.net.refused else 0


if __name__ == "__main__":
    sys.exit(main())
