"""The fleet table (issue 17): 10,000 flags followed by 50 processes on each fleet store.

For each of ZooKeeper, etcd, Redis and PostgreSQL, one at a time, a real server is started on
loopback from the test fixtures (``tests/_support/fleet_backends.py``) and stopped afterwards:

1. 10,000 flags of mixed shapes (on/off, percentages, user lists, attribute rules, targeting with
   variants, experiments, values, schedules, prerequisites, with descriptions, owners and tags)
   are written through the store's own ``put_many`` in batches (500 a transaction; 126 for etcd,
   its default ``--max-txn-ops`` of 128 less the two flagstaff adds). Each document is parsed
   first: all 10,000 are valid.
2. 50 processes each run the product client, ``flagstaff.connect(url)``, and print when they
   hold every flag, then every value of the bench flag their ``on_change`` listener sees.
3. The rows, one group per store:

   - *connect + hold*: seconds from starting the first process until the last holds every flag;
     per process, the median from its own start (interpreter, imports, connect, load) and from
     ``connect()`` (imports done) until it holds them, in wall time and in the process's CPU
     seconds (which a loaded machine does not inflate);
   - *busy after holding*: seconds from the last process holding the flags until the processes
     are idle (together under 5% of a core plus 0.5% per process, for a second): the background
     work of a load; and what each uses once idle;
   - *RSS per process*: ``VmRSS`` after ``gc.collect()`` once the flags are held (median, max),
     and the peak (``VmHWM``) after the propagation runs;
   - *propagation*: after 3 unmeasured writes, 20 writes of the bench flag (``store.put``), each
     timed from the start of the write until the *last* of the 50 processes saw it (median,
     p99, max; with 20 samples the p99 is the max).

Every row stands beside a floor measured in the same run by 50 processes of the same program
with no flagstaff client: they import flagstaff and the store's module (its driver too), report
their RSS (the memory floor: the table shows what a client holding 10,000 flags costs), fetch the
10,000 raw documents with the bare driver (the connect floor: no parsing, no snapshot), then
follow a bare notification of the bench flag (the propagation floor): a kazoo ``DataWatch``
after ``KazooClient.set``; a ``/v3/watch`` stream on the key after a bare ``kv/put`` over the
JSON gateway the store speaks; redis-py pub/sub after ``PUBLISH``; psycopg ``LISTEN`` after
``NOTIFY``.

The children run with bytecode cached, as an installed package does; their stderr is
summarised after each fleet (each distinct line with its count), which is where a reload storm
shows. A store whose run fails gets one ``FAILED`` row and the others still run.

Every loop and wait is bounded. ``--quick``: 10 processes and 1,000 flags. Run:
``.venv/bin/python benchmarks/run.py --only bench_fleet`` or this file directly,
``python benchmarks/bench_fleet.py [--quick] [--stores zookeeper,etcd] [--writes N]
[--query STORE:QUERY]`` (``--query`` adds options to a store's URL, e.g.
``zookeeper:timeout=60``).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

HERE = Path(__file__).resolve().parent
for extra in (HERE, HERE.parent):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from _fleet import Fleet, percentile  # noqa: E402
from _row import Row  # noqa: E402

KINDS = ("zookeeper", "etcd", "redis", "postgres")
FLAG = "bench"  # the flag whose writes are timed
WARMUP = 3  # writes made before the measured ones, in both modes
WRITES = 20
BATCH = {"zookeeper": 500, "etcd": 126, "redis": 500, "postgres": 500}  # flags per put_many
MODULES = {  # what a child imports before it connects (the floor imports it too)
    "zookeeper": "flagstaff.stores.zookeeper",
    "etcd": "flagstaff.stores.etcd",
    "redis": "flagstaff.stores.redis",
    "postgres": "flagstaff.stores.postgres",
}
_DRIVERS = {"zookeeper": "kazoo.client", "etcd": "json", "redis": "redis", "postgres": "psycopg"}
READY_TIMEOUT = 600.0  # seconds for every process to hold the flags
WAIT = 30.0  # seconds a write may take to reach every process before the run fails
QUIET_TIMEOUT = 120.0  # longest wait for the processes to go idle after holding the flags
# Idle: the processes together use under this share of a core, plus 0.5% per process (a
# PostgreSQL client polls for notices 4 times a second and its watchdog wakes 10 times: 0.2%).
QUIET_CPU = 0.05
FLOOR_CHANNEL = "bench_floor"  # PostgreSQL NOTIFY channel of the bare floor


# -- the documents ------------------------------------------------------------------------


def documents(n: int) -> dict[str, str]:
    """``n`` flags of mixed shapes, as a real deployment holds them (``bench`` among them)."""
    from flagstaff.model import encode_document

    owners = ("payments", "growth", "search", "platform", "mobile")
    docs: dict[str, str] = {}
    for i in range(n - 1):
        meta = {"description": f"flag {i} of the fleet benchmark", "owner": owners[i % 5]}
        shapes: list[Any] = [
            "on",
            "off",
            {**meta, "percentage": i % 101},
            {**meta, "users": [f"user-{i}-{u}" for u in range(20)], "groups": ["staff"]},
            {**meta, "rules": [{"attribute": "plan", "op": "in", "value": ["pro", "team"]}]},
            {
                **meta,
                "tags": ["checkout", "q4"],
                "targeting": [
                    {"name": "staff", "groups": ["staff"], "serve": "on"},
                    {
                        "when": [{"attribute": "country", "op": "eq", "value": "NL"}],
                        "serve": {"percentage": 25},
                    },
                    {"serve": {"variants": {"a": 50, "b": 50}}},
                ],
                "default": "off",
            },
            {**meta, "experiment": {"loggedin": True, "experiment_id": i, "variants": {"t1": 20, "t2": 20}}},
            {
                **meta,
                "targeting": [{"groups": ["gold"], "serve": {"variant": "large"}}],
                "default": "on",
                "values": {"large": {"page_size": 100}, "on": {"page_size": 50}, "off": {"page_size": 20}},
            },
            {**meta, "enabled": "on", "schedule": {"start": "2027-01-01T00:00:00Z"}},
            {**meta, "prerequisites": ["flag-00000"], "percentage": 50},
        ]
        docs[f"flag-{i:05d}"] = encode_document(shapes[i % len(shapes)])
    docs[FLAG] = _bench_doc(0)
    return docs


def _bench_doc(seq: int) -> str:
    return json.dumps({"enabled": True, "percentage": 50, "description": f"seq {seq}"})


def _seq(raw: str | bytes) -> int | None:
    try:
        return int(json.loads(raw)["description"].split()[1])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


# -- the child processes ------------------------------------------------------------------


def _rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _child(kind: str, url: str, mode: str, expected: int) -> None:
    """One process: connect (``client``) or fetch bare (``floor``), say ready, report the bench flag."""
    import importlib

    import flagstaff

    importlib.import_module(MODULES[kind])
    gc.collect()
    idle_rss = _rss_kb()
    imported, imported_cpu = time.time(), time.process_time()
    out = sys.stdout
    lock = threading.Lock()

    def report(raw: str | bytes) -> None:
        now = time.time()
        seq = _seq(raw)
        if seq is not None:
            with lock:
                out.write(f"{seq} {now}\n")
                out.flush()

    client: Any = None
    if mode == "client":
        client = flagstaff.connect(url, timeout=READY_TIMEOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while client.status().flags < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        count = client.status().flags

        def on_change(update: Any) -> None:
            for change in update.changes:
                if change.name == FLAG and change.record is not None:
                    report(change.record.raw)

        client.on_change(on_change)
    else:
        count = _bare_follow(kind, url, report)
    ready, cpu = time.time(), time.process_time()
    gc.collect()
    rss = _rss_kb()
    fields = f"imported={imported} imported_cpu={imported_cpu} cpu={cpu} idle_rss={idle_rss} rss={rss}"
    out.write(f"ready {count} {ready} {fields}\n")
    out.flush()
    sys.stdin.read()  # until the parent closes our stdin
    if client is not None:
        client.close()


def _where(url: str) -> tuple[str, int, str]:
    """Host, port and namespace of a fleet store URL (as ``fleet_backends.Backend.url`` makes them)."""
    parts = urlsplit(url)
    host, _, port = parts.netloc.rpartition("@")[2].rpartition(":")
    query = parse_qs(parts.query)
    namespace = (query.get("prefix") or query.get("namespace") or [parts.path.strip("/")])[0]
    return host, int(port), namespace


def _bare_follow(kind: str, url: str, report: Callable[[str | bytes], None]) -> int:
    """Fetch every raw document with the bare driver; follow the bench flag's bare notification.
    Returns how many flags were fetched."""
    host, port, namespace = _where(url)
    follow: Callable[[], None]
    if kind == "zookeeper":
        from kazoo.client import KazooClient
        from kazoo.recipe.watchers import DataWatch

        zk = KazooClient(f"{host}:{port}")
        zk.start(30)
        root = f"/{namespace}"
        names = [c for c in zk.get_children(root) if not c.startswith(".")]
        pending = [zk.get_async(f"{root}/{name}") for name in names]
        count = sum(1 for p in pending if p.get(60)[0] is not None)

        def on_data(data: bytes | None, stat: object) -> None:
            if data:
                report(data)

        DataWatch(zk, f"{root}/{FLAG}", on_data)
        return count
    if kind == "etcd":
        from flagstaff.runtime import ThreadRuntime
        from flagstaff.stores._etcdv3 import Gateway, KeyValue, b64, prefix_end

        gw = Gateway([(host, port)], ThreadRuntime(), timeout=60)
        root = f"/{namespace}/"
        reply = gw.call("kv/range", {"key": b64(root), "range_end": prefix_end(root)})
        kvs = [KeyValue.parse(kv) for kv in reply.get("kvs", [])]
        count = sum(
            1 for kv in kvs if "/" not in kv.key[len(root) :] and not kv.key[len(root) :].startswith(".")
        )
        messages = iter(gw.open_watch({"key": b64(root + FLAG)}))
        next(messages)  # {"created": true}: the watch is in place before we say ready

        def follow() -> None:
            for message in messages:
                for event in message.get("result", {}).get("events", []):
                    report(KeyValue.parse(event["kv"]).value)

    elif kind == "redis":
        import redis

        client = redis.Redis(host=host, port=port, decode_responses=True)
        count = len(client.hgetall(f"{namespace}:flags"))
        pubsub = client.pubsub()
        pubsub.subscribe(f"{namespace}:floor")
        pubsub.get_message(timeout=30)  # the subscription is confirmed before we say ready

        def follow() -> None:
            assert client is not None  # held: collecting it would close the subscription
            for message in pubsub.listen():
                if message["type"] == "message":
                    report(message["data"])

    else:
        import psycopg

        user = urlsplit(url).netloc.rpartition("@")[0]
        conn = psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True)
        rows = conn.execute(
            "SELECT name, raw FROM flagstaff_flags WHERE namespace = %s", (namespace,)
        ).fetchall()
        texts = [bytes(raw).decode() for _, raw in rows]
        count = len(texts)
        conn.execute(f"LISTEN {FLOOR_CHANNEL}")

        def follow() -> None:
            for notice in conn.notifies():
                report(notice.payload)

    threading.Thread(target=follow, daemon=True).start()
    return count


# -- the parent ---------------------------------------------------------------------------


def _cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def _settle(pids: Sequence[int]) -> tuple[float, float]:
    """Seconds until ``pids`` are idle for a second (see QUIET_CPU; bounded; sampled every
    quarter second, so that is the resolution), and their CPU use per process over that
    second (% of a core)."""
    quiet = QUIET_CPU + 0.005 * len(pids)
    started = time.monotonic()
    samples = [(started, _cpu_seconds(pids))]
    rate = 0.0
    while samples[-1][0] - started < QUIET_TIMEOUT:
        time.sleep(0.25)
        now, cpu = time.monotonic(), _cpu_seconds(pids)
        samples.append((now, cpu))
        # The newest sample at least a second old (a loaded machine oversleeps: not always 4 back).
        older = [s for s in samples if s[0] <= now - 1.0]
        if older:
            since, used = older[-1][0], cpu - older[-1][1]
            rate = used / (now - since) / len(pids) * 100
            if used / (now - since) < quiet:
                return since - started, rate
    return QUIET_TIMEOUT, rate


class _Measured:
    """What one fleet (the clients, or the floor) did."""

    def __init__(self) -> None:
        self.connect_all = 0.0  # first spawn -> last holding, seconds
        self.per_process: list[float] = []  # spawn -> holding, seconds
        self.connect_only: list[float] = []  # imports done -> holding, seconds
        self.cpu: list[float] = []  # CPU seconds of the process, start -> holding
        self.connect_cpu: list[float] = []  # CPU seconds, imports done -> holding
        self.settle = 0.0
        self.idle_cpu = 0.0  # % of a core per process, once settled
        self.rss: list[float] = []  # MB once holding (client) / after imports (floor)
        self.peak: list[float] = []  # MB, VmHWM after the propagation runs
        self.latencies: list[float] = []  # ms, write start -> last process


class _Target(NamedTuple):
    """One store's run: which, what to add to its URL's query, how many processes, flags and
    measured writes, the children's environment, how long they may take to hold the flags."""

    kind: str
    query: str
    n: int
    flags: int
    writes: int
    env: dict[str, str]
    ready_timeout: float


def _run_fleet(
    target: _Target, url: str, mode: str, write: Callable[[int], None], first_seq: int
) -> _Measured:
    kind, _, n, expected, writes, env, ready_timeout = target
    m = _Measured()
    logs = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{kind}-{mode}-"))
    fleet = Fleet(n, [__file__, "--child", kind, url, mode, str(expected)], logs=logs, env=env)
    try:
        if not fleet.wait(lambda: len(fleet.ready) == n, ready_timeout):
            raise TimeoutError(
                f"{kind}: {len(fleet.ready)} of {n} {mode} processes held the flags in {ready_timeout:.0f} s"
            )
        counts = [count for count, _ in fleet.ready]
        if any(count != expected for count in counts):
            raise RuntimeError(f"{kind}: {mode} processes hold {sorted(set(counts))} flags, not {expected}")
        with fleet.cond:
            details, ready_at = dict(fleet.details), dict(fleet.ready_at)
        m.connect_all = max(ready_at.values()) - fleet.spawned[0]
        m.per_process = [ready_at[i] - fleet.spawned[i] for i in ready_at]
        m.connect_only = [ready_at[i] - details[i]["imported"] for i in ready_at]
        m.cpu = [d["cpu"] for d in details.values()]
        m.connect_cpu = [d["cpu"] - d["imported_cpu"] for d in details.values()]
        key = "rss" if mode == "client" else "idle_rss"
        m.rss = [d[key] / 1024 for d in details.values()]
        pids = [p.pid for p in fleet.procs]
        m.settle, m.idle_cpu = _settle(pids)
        for i in range(WARMUP + writes):
            seq = first_seq + i
            t0 = time.time()
            write(seq)

            def everyone(seq: int = seq) -> bool:
                return len(fleet.seen_by.get(seq, {})) >= n

            if not fleet.wait(everyone, WAIT):
                got = len(fleet.seen_by.get(seq, {}))
                raise TimeoutError(
                    f"{kind}: {mode} write {seq} reached {got} of {n} processes; logs in {logs}"
                )
            if i >= WARMUP:  # the first writes run cold code paths, in both modes alike
                m.latencies.append((max(fleet.seen_by[seq].values()) - t0) * 1000)
            time.sleep(0.05)
        m.peak = [_rss_kb(pid, "VmHWM") / 1024 for pid in pids]
    finally:
        fleet.close()
        _summarize_logs(f"{kind} {mode}", logs)
    return m


def _summarize_logs(what: str, logs: Path) -> None:
    """Print what the children wrote on stderr, each distinct line once with a count; remove the logs."""
    lines: collections.Counter[str] = collections.Counter()
    writers = 0
    for log in sorted(logs.iterdir()):
        text = log.read_text(errors="replace").strip()
        if text:
            writers += 1
            lines.update(re.sub(r"\d+(\.\d+)?", "N", line)[:300] for line in text.splitlines())
        log.unlink()
    logs.rmdir()
    if writers:
        print(f"# {what}: {writers} processes wrote on stderr; the lines, numbers as N:", file=sys.stderr)
        for line, count in lines.most_common(8):
            print(f"#   {count:6d}  {line}", file=sys.stderr)


def _bare_writer(kind: str, url: str) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A function writing the bench flag's document ``seq`` with the bare driver, and a closer."""
    host, port, namespace = _where(url)
    if kind == "zookeeper":
        from kazoo.client import KazooClient

        zk = KazooClient(f"{host}:{port}")
        zk.start(30)
        path = f"/{namespace}/{FLAG}"

        def zk_set(seq: int) -> None:
            zk.set(path, _bench_doc(seq).encode())

        def zk_close() -> None:
            zk.stop()
            zk.close()

        return zk_set, zk_close
    if kind == "etcd":
        from flagstaff.runtime import ThreadRuntime
        from flagstaff.stores._etcdv3 import Gateway, b64

        gw = Gateway([(host, port)], ThreadRuntime(), timeout=30)
        key = b64(f"/{namespace}/{FLAG}")

        def etcd_put(seq: int) -> None:
            gw.call("kv/put", {"key": key, "value": b64(_bench_doc(seq))})

        return etcd_put, gw.close
    if kind == "redis":
        import redis

        client = redis.Redis(host=host, port=port)

        def publish(seq: int) -> None:
            client.publish(f"{namespace}:floor", _bench_doc(seq))

        return publish, client.close
    import psycopg

    user = urlsplit(url).netloc.rpartition("@")[0]
    conn = psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True)

    def notify(seq: int) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (FLOOR_CHANNEL, _bench_doc(seq)))

    return notify, conn.close


def _child_env(cache: str) -> dict[str, str]:
    """The children's environment: bytecode cached (in ``cache``), as for an installed package.

    Without it (``PYTHONDONTWRITEBYTECODE`` set, or a read-only source tree) every child
    compiles flagstaff and its driver from source: about 0.4 s more per process, which is
    not what a deployed process pays. The cache is filled once before the first fleet."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    return env


def _warm(env: dict[str, str], kind: str) -> None:
    import subprocess

    code = f"import flagstaff, {MODULES[kind]}, {_DRIVERS[kind]}"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


def _store_rows(target: _Target) -> list[Row]:
    from flagstaff.model import parse_text
    from flagstaff.stores import Write, open_store
    from tests._support.fleet_backends import Backend

    kind, flags = target.kind, target.flags
    load_before = os.getloadavg()[0]
    docs = documents(flags)
    for name, raw in docs.items():
        parse_text(name, raw)  # raises on a bad document: the clients must hold every one
    backend = Backend(kind, persist=False)
    try:
        url = backend.url(f"fleet-{uuid.uuid4().hex[:8]}")
        if target.query:
            url += ("&" if "?" in url else "?") + target.query
        store = open_store(url)
        try:
            names = sorted(docs)
            size = BATCH[kind]
            t0 = time.perf_counter()
            for start in range(0, len(names), size):
                store.put_many([Write(name, docs[name]) for name in names[start : start + size]])
            written = time.perf_counter() - t0
            loaded = len(store.load().records)
            if loaded != flags:
                raise RuntimeError(f"{kind}: wrote {flags} flags, load() returns {loaded}")

            def put(seq: int) -> None:
                store.put(FLAG, _bench_doc(seq))

            _warm(target.env, kind)
            ours = _run_fleet(target, url, "client", put, 1)
        finally:
            store.close()
        bare_write, bare_close = _bare_writer(kind, url)
        try:
            floor = _run_fleet(target, url, "floor", bare_write, 1001)
        finally:
            bare_close()
    finally:
        backend.close()
    rows = _rows(target, f"write {flags:,} flags (put_many, {size} a batch)", written, ours, floor)
    # Context for every figure above: on a shared machine, other work takes cores from the fleet
    # (taken before: during the run the fleet's own processes make most of the load average).
    return [
        *rows,
        Row(f"fleet {kind}", "machine load average (1 min) before the run", load_before, "", None, ""),
    ]


def _rows(target: _Target, writing: str, written: float, ours: _Measured, floor: _Measured) -> list[Row]:
    med = statistics.median
    g, n, f = f"fleet {target.kind}", target.n, f"{target.flags:,}"

    def p99(values: list[float]) -> float:
        return percentile(values, 0.99)

    both: list[tuple[str, Callable[[_Measured], float], str]] = [
        (f"{n} proc connect + hold {f} flags, last", lambda m: m.connect_all, "s"),
        ("  per process, own start -> holding, median", lambda m: med(m.per_process), "s"),
        ("  per process, connect() -> holding, median", lambda m: med(m.connect_only), "s"),
        ("  CPU per process, own start -> holding, median", lambda m: med(m.cpu), "s"),
        ("  CPU per process, connect() -> holding, median", lambda m: med(m.connect_cpu), "s"),
        ("busy after holding (until idle)", lambda m: m.settle, "s"),
        ("  CPU per process once idle", lambda m: m.idle_cpu, "% core"),
        (f"RSS per process holding {f} flags, median", lambda m: med(m.rss), "MB"),
        (f"RSS per process holding {f} flags, max", lambda m: max(m.rss), "MB"),
        ("peak RSS per process (VmHWM), median", lambda m: med(m.peak), "MB"),
        (f"propagation median, {n} proc", lambda m: med(m.latencies), "ms"),
        (f"propagation p99, {n} proc", lambda m: p99(m.latencies), "ms"),
        (f"propagation max, {n} proc", lambda m: max(m.latencies), "ms"),
    ]
    rows = [Row(g, writing, written, "s", None, "")]
    rows += [Row(g, name, get(ours), unit, get(floor), "") for name, get, unit in both]
    return rows


def run(
    quick: bool,
    stores: Sequence[str] = KINDS,
    writes: int = WRITES,
    options: Mapping[str, str] | None = None,
) -> list[Row]:
    """The rows of each store in ``stores``; ``options``: a URL query to add to a store's URL
    (e.g. ``{"zookeeper": "timeout=60"}``). A store whose run fails gets one ``FAILED`` row
    (value NaN) and the others still run."""
    n, flags = (10, 1_000) if quick else (50, 10_000)
    ready_timeout = READY_TIMEOUT / 5 if quick else READY_TIMEOUT
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-fleet-pyc-") as cache:
        env = _child_env(cache)
        for kind in stores:  # one server at a time, stopped before the next starts
            t0 = time.monotonic()
            target = _Target(kind, (options or {}).get(kind, ""), n, flags, writes, env, ready_timeout)
            try:
                rows += _store_rows(target)
            except Exception as exc:
                traceback.print_exc()
                why = f"FAILED: {type(exc).__name__}: {exc}"
                rows.append(Row(f"fleet {kind}", why[:160], float("nan"), "", None, ""))
            print(f"# bench_fleet {kind}: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 processes x 1,000 flags (else 50 x 10,000)")
    parser.add_argument("--stores", default=",".join(KINDS), help="comma-separated, from " + ",".join(KINDS))
    parser.add_argument("--writes", type=int, default=WRITES, help="measured writes of the bench flag")
    parser.add_argument(
        "--query",
        action="append",
        default=[],
        metavar="STORE:QUERY",
        help="add QUERY to STORE's URL, e.g. zookeeper:timeout=60 (repeatable)",
    )
    args = parser.parse_args(argv)
    options = dict(q.partition(":")[::2] for q in args.query)
    if any(k not in KINDS or not v for k, v in options.items()):
        parser.error(f"--query takes STORE:QUERY with STORE one of {', '.join(KINDS)}")
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = [s for s in stores if s not in KINDS]
    if unknown or not stores:
        parser.error(f"unknown store(s) {unknown}: choose from {', '.join(KINDS)}")
    if args.writes < 1:
        parser.error("--writes must be at least 1")
    from run import render

    # A plain kill runs the finally blocks: the servers and the processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    rows = run(args.quick, stores, args.writes, options)
    print(f"# {os.cpu_count()} cores, quick={args.quick}, {time.monotonic() - started:.0f} s")
    print(render(rows))
    return 1 if any(r.name.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(main())
