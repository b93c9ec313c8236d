"""`jitstock bench ingest --shape resend`: issue 12's load, where most readings change nothing.

20 agents x 50 bins; every tick each agent re-sends all its bins in one QoS 1 message
of 50 readings, unchanged except for the 200 bins that cross their reorder point during
a 30 s run (one every 0.13 s).  Per server (this tree, and optionally another tree given
with ``--baseline-tree``, each started as its own ``jitstock server`` child process on its
own state DB, one after the other on the same broker and InfluxDB) it reports:

- trigger latency, publish of the crossing reading -> webhook received, split into
  *decide* (publish -> the order's ``created_ms``) and *send* (``created_ms`` -> received);
- CPU microseconds per reading of all server processes added up (the server and any
  child processes it runs), and of influxd and mosquitto;
- idle CPU: % of one core the server uses with no traffic, after start-up;
- the highest rate it sustains (every reading stored, ingest lag p99 <= 1 s).

A do-nothing paho subscriber (parses each message, stores nothing) at the same rate is
the machine's baseline in the same run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol
from jitstock.bench.services import InfluxDB, Mosquitto, free_port, wait_port

AGENTS = 20
BINS_PER_AGENT = 50
CROSSINGS = 200
RUN_S = 30.0
TRIGGER_RATE = 20_000
UNIT_G = 10.0
TARE_G = 500.0
START_COUNT = 100
REORDER_POINT = 50
# Each sweep phase of the sustained-rate search runs this long.
SWEEP_S = 10.0
SUSTAINED_LAG_P99_S = 1.0
# Bins crossing their reorder point in each sweep phase (trigger latency at each rate).
SWEEP_CROSSINGS = 60
# Idle CPU is measured over this long, once start-up work is over (a IDLE_WINDOW_S window
# below IDLE_QUIET of a core, waiting at most IDLE_SETTLE_MAX_S).
IDLE_S = 30.0
IDLE_SETTLE_MAX_S = 300.0
IDLE_WINDOW_S = 5.0
IDLE_QUIET = 0.10  # of one core: start-up work is over
# ...in this many windows in a row (one quiet window can fall between two busy ones)
IDLE_QUIET_WINDOWS = 4
SECRET = "whsec_YmVuY2gtc2VjcmV0LWZvci10cmlnZ2VyLWxhdGVuY3k="

# Seeds a state DB with the tree the server runs (each tree migrates its own schema).
_SEED = """
import sys
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
db_url, webhook, secret, prefixes, agents, bins, unit, tare, rop = sys.argv[1:10]
upgrade(db_url)
engine = make_engine(db_url)
seed_plant(
    make_session_factory(engine),
    "bench",
    [
        BinSeed(f"{p}-a{a:02d}-b{b:02d}", f"{p}-a{a:02d}", "SKU-R", float(unit),
                float(tare), int(rop), 100, 1000, "S1")
        for p in prefixes.split(",")
        for a in range(int(agents))
        for b in range(int(bins))
    ],
    [SupplierSeed("S1", "Bench supplier", webhook, secret)],
)
engine.dispose()
"""


def crossing_bins() -> list[tuple[int, int]]:
    """Every (agent, bin) in the order they cross: each phase takes the next ones."""
    return [(i % AGENTS, i // AGENTS) for i in range(AGENTS * BINS_PER_AGENT)]


def _generator(
    url: str,
    prefix: str,
    rate: float,
    duration: float,
    crossings: int,
    crossed_before: int,
    first_seq: list[int],
    out: mp.Queue[Any],
) -> None:
    """Every tick each agent re-sends all its bins; the next `crossings` bins drop below
    their reorder point at evenly spaced times (the `crossed_before` bins of earlier
    phases stay low).  Reports what was sent, the next seqs, and when each crossing
    reading was published."""
    port = int(url.rsplit(":", 1)[1])
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-resend-{os.getpid()}"
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    msgs_per_s = rate / BINS_PER_AGENT
    agents = [f"{prefix}-a{a:02d}" for a in range(AGENTS)]
    topics = [protocol.agent_topic("bench", a, "readings") for a in agents]
    counts = [[START_COUNT] * BINS_PER_AGENT for _ in agents]
    order = crossing_bins()
    for a, b in order[:crossed_before]:
        counts[a][b] = REORDER_POINT - 5
    plan = order[crossed_before : crossed_before + crossings]
    # crossing k happens at this time into the run (the first after a second, the last before the end)
    cross_at = [
        1.0 + (duration - 2.0) * k / max(1, len(plan)) for k in range(len(plan))
    ]
    published: dict[str, float] = {}
    crossing: set[tuple[int, int]] = set()  # crossed in this phase, not yet published
    seq = list(first_seq)
    last_ts = [0] * AGENTS
    sent = 0
    k = 0
    next_cross = 0
    infos = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        while next_cross < len(plan) and elapsed >= cross_at[next_cross]:
            a, b = plan[next_cross]
            # one pick takes it below its reorder point
            counts[a][b] = REORDER_POINT - 5
            crossing.add((a, b))
            next_cross += 1
        due = int(elapsed * msgs_per_s)
        if k >= due:
            time.sleep(min(0.002, (k + 1) / msgs_per_s - elapsed))
            continue
        a = k % AGENTS
        now = max(time.time_ns() // 1_000_000, last_ts[a] + 1)
        last_ts[a] = now
        seq[a] += 1
        row = counts[a]
        readings = [
            {
                "bin": f"{agents[a]}-b{b:02d}",
                "ts_ms": now,
                "grams": TARE_G + UNIT_G * row[b],
                "stable": True,
            }
            for b in range(BINS_PER_AGENT)
        ]
        payload = orjson.dumps(
            {"agent": agents[a], "seq": seq[a], "sent_ms": now, "readings": readings}
        )
        at = time.time()
        infos.append(client.publish(topics[a], payload, qos=1))
        for b in range(BINS_PER_AGENT):
            if (a, b) in crossing:
                crossing.discard((a, b))
                published[f"{agents[a]}-b{b:02d}"] = at
        sent += BINS_PER_AGENT
        k += 1
    seconds = time.monotonic() - start
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    out.put({"sent": sent, "seconds": seconds, "published": published, "seq": seq})


def _counter(url: str, ready: Any, stop: Any, out: mp.Queue[Any]) -> None:
    """The baseline: a paho QoS 1 subscriber that parses each message and stores nothing."""
    port = int(url.rsplit(":", 1)[1])
    count = 0

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += len(orjson.loads(msg.payload)["readings"])

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-nothing", protocol=mqtt.MQTTv5
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe("jit/v1/bench/+/readings", qos=1)
    client.loop_start()
    ready.set()
    stop.wait()
    client.loop_stop()
    client.disconnect()
    out.put({"count": count, "cpu_s": time.process_time()})


class _Receiver:
    """Supplier endpoint: when each order's webhook first arrived (by webhook-id)."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.arrivals.setdefault(
                    self.headers.get("webhook-id", ""), time.time()
                )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_tree_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a server's worker processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
            except (OSError, IndexError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            f = _stat(p)
        except OSError:
            continue
        total += (int(f[11]) + int(f[12])) / tick
        todo += parents.get(p, [])
    return total


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * q))], 1)


def _lag_buckets(base: str) -> list[tuple[float, float]]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out = []
    for line in text.splitlines():
        if line.startswith("jitstock_ingest_lag_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append(
                (float("inf") if le == "+Inf" else float(le), float(line.split()[-1]))
            )
    return out


def _lag_q(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    return next((le for le, cum in deltas if cum >= q * total), None)


def _stored(influx: InfluxDB, db: str, prefix: str) -> int:
    influx.query(f'CREATE DATABASE "{db}"')
    res = influx.query(
        f"SELECT count(grams) FROM bin_level WHERE bin =~ /^{prefix}-/", db=db
    )
    return int(res["series"][0]["values"][0][1]) if "series" in res else 0


def _orders(db_path: Path) -> dict[str, tuple[str, int]]:
    """order id -> (bin, created_ms) from the server's SQLite state DB."""
    import sqlite3

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return {
            oid: (b, c)
            for oid, b, c in conn.execute("SELECT id, bin_id, created_ms FROM orders")
        }


@contextmanager
def _server(workdir: Path, tree: Path | None, env: dict[str, str]) -> Iterator[int]:
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    with open(workdir / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jitstock.cli", "server", "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(tree) if tree is not None else None,
        )
    try:
        wait_port(int(env["JITSTOCK_HTTP_PORT"]), timeout=60)
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _STOP_S.append(round(time.monotonic() - t0, 2))


_STOP_S: list[float] = []


def run_server(
    label: str,
    tree: Path | None,
    extra_env: dict[str, str],
    workdir: Path,
    influx: InfluxDB,
    receiver: _Receiver,
    ctx: Any,
    rate: int,
    run_s: float,
    sweep: list[int],
    idle: bool,
) -> dict[str, Any]:
    """Start one server (this tree or `tree`) and measure it: trigger run, idle, sweep.

    Each server gets its own broker: a stopped server's persistent session would
    otherwise queue every later message."""
    sdir = workdir / label
    (sdir / "mosquitto").mkdir(parents=True)
    broker = _broker(sdir / "mosquitto")
    broker.start()
    try:
        return _measure(
            label,
            tree,
            extra_env,
            sdir,
            broker,
            influx,
            receiver,
            ctx,
            rate,
            run_s,
            sweep,
            idle,
        )
    finally:
        broker.stop()


def _broker(workdir: Path) -> Mosquitto:
    # the server's MQTT 5 Receive Maximum bounds what is in flight; the rest queues here
    return Mosquitto(
        workdir,
        extra_conf="max_queued_messages 2000000\nmax_queued_bytes 0\npersistence false\n",
    )


def _measure(
    label: str,
    tree: Path | None,
    extra_env: dict[str, str],
    sdir: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    receiver: _Receiver,
    ctx: Any,
    rate: int,
    run_s: float,
    sweep: list[int],
    idle: bool,
) -> dict[str, Any]:
    db_path = sdir / "state.db"
    db_url = f"sqlite:///{db_path}"
    fleet = label
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")}
    env_seed = {**env, "PYTHONPATH": str(tree)} if tree else env
    subprocess.run(
        [
            sys.executable,
            "-c",
            _SEED,
            db_url,
            receiver.url,
            SECRET,
            fleet,
            str(AGENTS),
            str(BINS_PER_AGENT),
            str(UNIT_G),
            str(TARE_G),
            str(REORDER_POINT),
        ],
        env=env_seed,
        check=True,
        cwd=str(tree) if tree else None,
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    influx_db = f"bench_{label}"
    env.update(
        {
            "JITSTOCK_DB_URL": db_url,
            "JITSTOCK_DATA_DIR": str(sdir),
            "JITSTOCK_MQTT_URL": broker.url,
            "JITSTOCK_MQTT_CLIENT_ID": f"jitstock-{label}",
            "JITSTOCK_INFLUX_URL": influx.url,
            "JITSTOCK_INFLUX_DB": influx_db,
            "JITSTOCK_HTTP_PORT": str(port),
            "JITSTOCK_AUTH": "off",
            **extra_env,
        }
    )
    out: dict[str, Any] = {
        "server": label,
        "tree": str(tree) if tree else "this",
        "env": extra_env,
    }
    assert influx.proc is not None
    assert broker.proc is not None
    others = {"influxd": influx.proc.pid, "mosquitto": broker.proc.pid}

    progress: dict[str, Any] = {"crossed": 0, "seq": [0] * AGENTS}

    def load(r: float, seconds: float, crossings: int) -> dict[str, Any]:
        q: mp.Queue[Any] = ctx.Queue()
        p = ctx.Process(
            target=_generator,
            args=(
                broker.url,
                fleet,
                r,
                seconds,
                crossings,
                progress["crossed"],
                progress["seq"],
                q,
            ),
        )
        p.start()
        report: dict[str, Any] = q.get(timeout=seconds + 180)
        p.join()
        progress["crossed"] += crossings
        progress["seq"] = report["seq"]
        return report

    def phase(r: int, seconds: float, crossings: int) -> dict[str, Any]:
        lag0 = _lag_buckets(base)
        cpu0 = _cpu_tree_s(server)
        oth0 = {k: _cpu_tree_s(p) for k, p in others.items()}
        t0 = time.monotonic()
        stored0 = _stored(influx, influx_db, fleet)
        sent = load(r, seconds, crossings)
        end = time.monotonic()
        caught = None
        while time.monotonic() < end + 60:
            if _stored(influx, influx_db, fleet) - stored0 >= sent["sent"]:
                caught = time.monotonic()
                break
            time.sleep(0.2)
        wall = (caught or time.monotonic()) - t0
        stored = _stored(influx, influx_db, fleet) - stored0
        cpu = _cpu_tree_s(server) - cpu0
        oth = {k: _cpu_tree_s(p) - oth0[k] for k, p in others.items()}
        lag1 = _lag_buckets(base)
        res: dict[str, Any] = {
            "target_readings_s": r,
            "published_readings_s": round(sent["sent"] / sent["seconds"]),
            "sent": sent["sent"],
            "stored": stored,
            "catch_up_s": None if caught is None else round(caught - end, 2),
            "lag_p50_s": _lag_q(lag0, lag1, 0.5),
            "lag_p99_s": _lag_q(lag0, lag1, 0.99),
            "server_cpu_us_per_reading": round(cpu / max(1, stored) * 1e6, 2),
            "server_cores": round(cpu / wall, 2),
            **{
                f"{k}_cpu_us_per_reading": round(v / max(1, stored) * 1e6, 2)
                for k, v in oth.items()
            },
        }
        res["sustained"] = (
            stored == sent["sent"]
            and caught is not None
            and (res["lag_p99_s"] or 99) <= SUSTAINED_LAG_P99_S
        )
        res["_published"] = sent["published"]
        return res

    with _server(sdir, tree, env) as server:
        if idle:
            # start-up work (the policy recalculation of every bin) is not idle load:
            # wait until a window is quiet, then measure
            started = time.monotonic()
            quiet = 0
            while time.monotonic() - started < IDLE_SETTLE_MAX_S:
                w0 = _cpu_tree_s(server)
                time.sleep(IDLE_WINDOW_S)
                busy = (_cpu_tree_s(server) - w0) / IDLE_WINDOW_S
                quiet = quiet + 1 if busy < IDLE_QUIET else 0
                if quiet >= IDLE_QUIET_WINDOWS:
                    break
            out["startup_busy_s"] = round(time.monotonic() - started, 1)
            c0 = _cpu_tree_s(server)
            time.sleep(IDLE_S)
            out["idle_cpu_pct_of_core"] = round(
                (_cpu_tree_s(server) - c0) / IDLE_S * 100, 2
            )

        def triggers(published: dict[str, float]) -> dict[str, Any]:
            """Orders of this phase's crossings: decide, send and total latency."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                mine = [b for b, _ in _orders(db_path).values() if b in published]
                if len(mine) >= len(published):
                    break
                time.sleep(0.2)
            time.sleep(2.0)  # let the last webhooks arrive
            orders = {
                oid: v for oid, v in _orders(db_path).items() if v[0] in published
            }
            decide, send, total = [], [], []
            per_bin = {b: (oid, c) for oid, (b, c) in orders.items()}
            for b, at in published.items():
                if b not in per_bin:
                    continue
                oid, created_ms = per_bin[b]
                decide.append(created_ms - at * 1000)
                got = receiver.arrivals.get(oid)
                if got is not None:
                    send.append((got - created_ms / 1000) * 1000)
                    total.append((got - at) * 1000)
            return {
                "crossings": len(published),
                # one trigger, one order: every crossing bin has exactly one
                "orders": len(orders),
                "received": len(total),
                "decide_p50_ms": _quantile(decide, 0.5),
                "decide_p99_ms": _quantile(decide, 0.99),
                "send_p50_ms": _quantile(send, 0.5),
                "send_p99_ms": _quantile(send, 0.99),
                "p50_ms": _quantile(total, 0.5),
                "p99_ms": _quantile(total, 0.99),
                "max_ms": _quantile(total, 1.0),
            }

        # the trigger run: the load shape
        trig = phase(rate, run_s, CROSSINGS)
        trig["trigger"] = triggers(trig.pop("_published"))
        out["trigger_run"] = trig
        sw = []
        for r in sweep:
            res = phase(r, SWEEP_S, SWEEP_CROSSINGS)
            res["trigger"] = triggers(res.pop("_published"))
            sw.append(res)
            if not res["sustained"]:
                break
        out["sweep"] = sw
        ok = [p["published_readings_s"] for p in sw if p["sustained"]]
        out["max_sustained_readings_s"] = max(ok) if ok else 0
    out["sigterm_exit_s"] = _STOP_S[-1] if _STOP_S else None
    return out


def baseline(broker: Mosquitto, ctx: Any, rate: int, seconds: float) -> dict[str, Any]:
    """The do-nothing subscriber at the trigger run's rate and shape."""
    ready, stop = ctx.Event(), ctx.Event()
    q: mp.Queue[Any] = ctx.Queue()
    c = ctx.Process(target=_counter, args=(broker.url, ready, stop, q))
    c.start()
    ready.wait(30)
    time.sleep(0.3)
    rq: mp.Queue[Any] = ctx.Queue()
    g = ctx.Process(
        target=_generator,
        args=(broker.url, "nothing", rate, seconds, 0, 0, [0] * AGENTS, rq),
    )
    g.start()
    sent = rq.get(timeout=seconds + 180)
    g.join()
    time.sleep(1.0)
    stop.set()
    got = q.get(timeout=30)
    c.join()
    return {
        "target_readings_s": rate,
        "published_readings_s": round(sent["sent"] / sent["seconds"]),
        "received": got["count"],
        "lost": sent["sent"] - got["count"],
        "subscriber_cpu_us_per_reading": round(
            got["cpu_s"] / max(1, got["count"]) * 1e6, 2
        ),
    }


def print_result(result: dict[str, Any]) -> None:
    """The tables of a run."""
    b = result.get("baseline_do_nothing_subscriber")
    if b:
        print(
            f"do-nothing subscriber at {b['target_readings_s']:,}/s: received {b['received']:,}, "
            f"lost {b['lost']}, {b['subscriber_cpu_us_per_reading']} us/reading"
        )
    for s in result.get("servers", []):
        t = s["trigger_run"]
        tr = t["trigger"]
        print(f"[{s['server']}] {s['tree']} {s.get('env') or ''}")
        print(
            f"  idle CPU: {s.get('idle_cpu_pct_of_core')} % of a core "
            f"(after {s.get('startup_busy_s')} s of start-up work)"
        )
        print(
            f"  {t['target_readings_s']:,}/s resend load: stored {t['stored']:,}/{t['sent']:,}, "
            f"lag p50/p99 {t['lag_p50_s']}/{t['lag_p99_s']} s, server {t['server_cpu_us_per_reading']} us/reading "
            f"({t['server_cores']} cores), influxd {t['influxd_cpu_us_per_reading']}, "
            f"mosquitto {t['mosquitto_cpu_us_per_reading']}"
        )
        print(
            f"  trigger ({tr['received']}/{tr['crossings']} received, {tr['orders']} orders): "
            f"p50 {tr['p50_ms']} ms p99 {tr['p99_ms']} ms max {tr['max_ms']} ms; "
            f"decide p50/p99 {tr['decide_p50_ms']}/{tr['decide_p99_ms']} ms, "
            f"send p50/p99 {tr['send_p50_ms']}/{tr['send_p99_ms']} ms"
        )
        for p in s.get("sweep", []):
            print(
                f"  sweep {p['target_readings_s']:>7,}/s: {'ok ' if p['sustained'] else 'NO '} "
                f"lag p99 {p['lag_p99_s']} s, {p['server_cpu_us_per_reading']} us/reading, "
                f"{p['server_cores']} cores, trigger p50/p99 {p['trigger']['p50_ms']}/"
                f"{p['trigger']['p99_ms']} ms ({p['trigger']['received']}/{p['trigger']['crossings']})"
            )
        print(
            f"  max sustained: {s.get('max_sustained_readings_s', 0):,}/s; "
            f"SIGTERM exit {s.get('sigterm_exit_s')} s"
        )


def run(
    workdir: Path,
    *,
    baseline_tree: Path | None,
    rate: int = TRIGGER_RATE,
    run_s: float = RUN_S,
    sweep: list[int] | None = None,
    idle: bool = True,
    compare_sender: bool = False,
) -> dict[str, Any]:
    """The whole comparison in one run; returns the numbers (print_result prints them)."""
    (workdir / "mosquitto").mkdir(parents=True)
    (workdir / "influx").mkdir()
    broker = _broker(workdir / "mosquitto")
    influx = InfluxDB(workdir / "influx")
    receiver = _Receiver()
    ctx = mp.get_context("spawn")
    result: dict[str, Any] = {
        "shape": {
            "agents": AGENTS,
            "bins_per_agent": BINS_PER_AGENT,
            "readings_per_message": BINS_PER_AGENT,
            "crossings": CROSSINGS,
            "run_s": run_s,
            "every_tick_resends_all_bins": True,
        },
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        broker.start()
        influx.start()
        result["baseline_do_nothing_subscriber"] = baseline(broker, ctx, rate, run_s)
        broker.stop()
        servers = []
        variants: list[tuple[str, Path | None, dict[str, str]]] = [("new", None, {})]
        if compare_sender:
            # the choice measured: webhook POSTs from sender threads in the server process
            variants.append(("thread", None, {"JITSTOCK_WEBHOOK_SENDER": "thread"}))
        if baseline_tree is not None:
            variants.append(("base", baseline_tree, {}))
        for label, tree, extra_env in variants:
            servers.append(
                run_server(
                    label,
                    tree,
                    extra_env,
                    workdir,
                    influx,
                    receiver,
                    ctx,
                    rate,
                    run_s,
                    sweep or [],
                    idle,
                )
            )
        result["servers"] = servers
        result["load_average_at_end"] = list(os.getloadavg())
    finally:
        receiver.close()
        influx.stop()
        broker.stop()  # no-op when already stopped
    return result


def dump(result: dict[str, Any], path: Path) -> None:
    """Write the raw numbers as JSON."""
    path.write_text(json.dumps(result, indent=2) + "\n")


def run_args(args: Any) -> dict[str, Any]:
    """`jitstock bench ingest --shape resend` (from jitstock.bench.ingest.run)."""
    import shutil
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="jitstock-bench-resend-"))
    quick = bool(getattr(args, "quick", False))
    rates = getattr(args, "rates", None)
    sweep = [int(r) for r in str(rates).split(",")] if rates else []
    tree = getattr(args, "baseline_tree", None)
    try:
        return run(
            workdir,
            baseline_tree=Path(tree).resolve() if tree else None,
            rate=2_000 if quick else TRIGGER_RATE,
            run_s=6.0 if quick else RUN_S,
            sweep=sweep,
            idle=not quick,
            compare_sender=not quick,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
