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
- the highest rate it sustains (every reading applied, ingest lag p99 <= 1 s; the
  sweep is :mod:`jitstock.bench.resend_sweep`).

A do-nothing paho subscriber (parses each message, stores nothing) at the same rate is
the machine's baseline in the same run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jitstock.bench import measure, resend_sweep
from jitstock.bench.resend_load import (
    AGENTS,
    BINS_PER_AGENT,
    CROSSINGS,
    REORDER_POINT,
    SECRET,
    SEED,
    TARE_G,
    UNIT_G,
    generator,
)
from jitstock.bench.services import InfluxDB, Mosquitto, free_port

RUN_S = 30.0
TRIGGER_RATE = 20_000
# Idle CPU is measured over this long, once start-up work is over (a IDLE_WINDOW_S window
# below IDLE_QUIET of a core, waiting at most IDLE_SETTLE_MAX_S).
IDLE_S = 30.0
IDLE_SETTLE_MAX_S = 300.0
IDLE_WINDOW_S = 5.0
IDLE_QUIET = 0.10  # of one core: start-up work is over
# ...in this many windows in a row (one quiet window can fall between two busy ones)
IDLE_QUIET_WINDOWS = 4
# The steady shape (`--shape steady`): the re-send load at a low rate for a long time
# (ten minutes by default), then the server's CPU over one more window of this long.
STEADY_RATE = 1_000
STEADY_S = 600.0
STEADY_WINDOW_S = 60.0


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(len(s) * q))], 1)


def _orders(db_path: Path) -> dict[str, tuple[str, int]]:
    """order id -> (bin, created_ms) from the server's SQLite state DB."""
    import sqlite3

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return {
            oid: (b, c)
            for oid, b, c in conn.execute("SELECT id, bin_id, created_ms FROM orders")
        }


def _claims(db_path: Path) -> dict[str, int]:
    """order id -> when its first attempt was claimed (the flush decided and claimed it;
    its commit and the POST come after)."""
    import sqlite3

    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return dict(
            conn.execute(
                "SELECT order_id, at_ms FROM order_attempts WHERE n = 1"
            ).fetchall()
        )


def _policies(db_path: Path) -> int:
    """Bins whose replenishment policy the server has computed (its start-up pass stores
    one row per bin); 0 where the table is not there."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM bin_policies").fetchone()[0])
    except sqlite3.Error:
        return 0


def run_server(
    label: str,
    tree: Path | None,
    extra_env: dict[str, str],
    workdir: Path,
    influx: InfluxDB,
    receiver: measure.Receiver,
    ctx: Any,
    rate: int,
    run_s: float,
    sweep: list[int],
    idle: bool,
    steady: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """Start one server (this tree or `tree`) and measure it: idle, trigger run, sweep
    (or only the steady load, see STEADY_WINDOW_S).

    Each server gets its own broker: a stopped server's persistent session would
    otherwise queue every later message."""
    sdir = workdir / label
    (sdir / "mosquitto").mkdir(parents=True)
    broker = measure.broker(sdir / "mosquitto")
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
            steady,
        )
    finally:
        broker.stop()


def _measure(
    label: str,
    tree: Path | None,
    extra_env: dict[str, str],
    sdir: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    receiver: measure.Receiver,
    ctx: Any,
    rate: int,
    run_s: float,
    sweep: list[int],
    idle: bool,
    steady: tuple[int, float] | None,
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
            SEED,
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
            target=generator,
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
        lag0 = measure.histogram(base, "jitstock_ingest_lag_seconds")
        cpu0 = measure.cpu_tree_s(server)
        oth0 = {k: measure.cpu_tree_s(p) for k, p in others.items()}
        t0 = time.monotonic()
        points0 = measure.stored(influx, influx_db, f"bin =~ /^{fleet}-/")
        applied0 = measure.metric(base, "jitstock_readings_total")
        sent = load(r, seconds, crossings)
        end = time.monotonic()
        caught = None
        while time.monotonic() < end + 60:
            if (
                measure.metric(base, "jitstock_readings_total") - applied0
                >= sent["sent"]
            ):
                caught = time.monotonic()
                break
            time.sleep(0.2)
        wall = (caught or time.monotonic()) - t0
        # applied: durable in the state DB and history (the server's own counter; a
        # server that keeps only changes in history stores fewer points than readings)
        stored = int(measure.metric(base, "jitstock_readings_total") - applied0)
        points = measure.stored(influx, influx_db, f"bin =~ /^{fleet}-/") - points0
        cpu = measure.cpu_tree_s(server) - cpu0
        oth = {k: measure.cpu_tree_s(p) - oth0[k] for k, p in others.items()}
        lag1 = measure.histogram(base, "jitstock_ingest_lag_seconds")
        res: dict[str, Any] = {
            "target_readings_s": r,
            "published_readings_s": round(sent["sent"] / sent["seconds"]),
            "sent": sent["sent"],
            "applied": stored,
            "history_points": points,
            "catch_up_s": None if caught is None else round(caught - end, 2),
            "lag_p50_s": measure.histogram_quantile(lag0, lag1, 0.5),
            "lag_p99_s": measure.histogram_quantile(lag0, lag1, 0.99),
            "server_cpu_us_per_reading": round(cpu / max(1, stored) * 1e6, 2),
            "server_cores": round(cpu / wall, 2),
            **{
                f"{k}_cpu_us_per_reading": round(v / max(1, stored) * 1e6, 2)
                for k, v in oth.items()
            },
        }
        res["sustained"] = resend_sweep.sustained(
            stored, sent["sent"], caught is not None, res["lag_p99_s"]
        )
        res["_published"] = sent["published"]
        return res

    def steady_load(r: int, seconds: float) -> dict[str, Any]:
        """The re-send load at a low rate for `seconds`, then CPU over one more window."""
        q: mp.Queue[Any] = ctx.Queue()
        p = ctx.Process(
            target=generator,
            args=(
                broker.url,
                fleet,
                r,
                seconds + STEADY_WINDOW_S,
                0,
                progress["crossed"],
                progress["seq"],
                q,
            ),
        )
        p.start()
        time.sleep(seconds)
        c0, w0 = measure.cpu_tree_s(server), time.monotonic()
        time.sleep(STEADY_WINDOW_S)
        busy = (measure.cpu_tree_s(server) - c0) / (time.monotonic() - w0)
        report = q.get(timeout=STEADY_WINDOW_S + 180)
        p.join()
        return {
            "target_readings_s": r,
            "after_s": seconds,
            "window_s": STEADY_WINDOW_S,
            "published_readings_s": round(report["sent"] / report["seconds"]),
            "cpu_pct_of_core": round(busy * 100, 2),
        }

    with measure.server(sdir, env, tree) as proc:
        server = proc.pid
        if idle:
            # start-up work (the policy recalculation of every bin) is not idle load:
            # wait until every bin has its policy and a window is quiet, then measure.
            # (The pass runs at a fifth of a core with pauses: quiet windows alone were
            # seen to end the wait before it was over, and the trigger run then paid
            # for 2 s of it, 3 µs per reading.)
            started = time.monotonic()
            while (
                time.monotonic() - started < IDLE_SETTLE_MAX_S
                and _policies(db_path) < AGENTS * BINS_PER_AGENT
            ):
                time.sleep(1.0)
            quiet = 0
            while time.monotonic() - started < IDLE_SETTLE_MAX_S:
                w0 = measure.cpu_tree_s(server)
                time.sleep(IDLE_WINDOW_S)
                busy = (measure.cpu_tree_s(server) - w0) / IDLE_WINDOW_S
                quiet = quiet + 1 if busy < IDLE_QUIET else 0
                if quiet >= IDLE_QUIET_WINDOWS:
                    break
            out["startup_busy_s"] = round(time.monotonic() - started, 1)
            c0 = measure.cpu_tree_s(server)
            time.sleep(IDLE_S)
            out["idle_cpu_pct_of_core"] = round(
                (measure.cpu_tree_s(server) - c0) / IDLE_S * 100, 2
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
            # send = flush start -> claimed, then claimed -> received
            claim: list[float] = []
            onward: list[float] = []
            claims = _claims(db_path)
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
                    if oid in claims:
                        claim.append(claims[oid] - created_ms)
                        onward.append(got * 1000 - claims[oid])
            return {
                "crossings": len(published),
                # one trigger, one order: every crossing bin has exactly one
                "orders": len(orders),
                "received": len(total),
                "decide_p50_ms": _quantile(decide, 0.5),
                "decide_p99_ms": _quantile(decide, 0.99),
                "send_p50_ms": _quantile(send, 0.5),
                "send_p99_ms": _quantile(send, 0.99),
                "claim_p50_ms": _quantile(claim, 0.5),
                "claim_p99_ms": _quantile(claim, 0.99),
                "out_p50_ms": _quantile(onward, 0.5),
                "out_p99_ms": _quantile(onward, 0.99),
                "p50_ms": _quantile(total, 0.5),
                "p99_ms": _quantile(total, 0.99),
                "max_ms": _quantile(total, 1.0),
            }

        def with_triggers(r: int, seconds: float, crossings: int) -> dict[str, Any]:
            """One phase and the trigger latency of its crossings."""
            res = phase(r, seconds, crossings)
            res["trigger"] = triggers(res.pop("_published"))
            return res

        if steady is not None:
            out["steady"] = steady_load(*steady)
        else:
            # the trigger run: the load shape
            out["trigger_run"] = with_triggers(rate, run_s, CROSSINGS)
            out.update(resend_sweep.sweep(sweep, with_triggers))
    out["sigterm_exit_s"] = measure.STOP_S[-1] if measure.STOP_S else None
    return out


def baseline(broker: Mosquitto, ctx: Any, rate: int, seconds: float) -> dict[str, Any]:
    """The do-nothing subscriber at the trigger run's rate and shape."""

    def load() -> dict[str, Any]:
        rq: mp.Queue[Any] = ctx.Queue()
        g = ctx.Process(
            target=generator,
            args=(broker.url, "nothing", rate, seconds, 0, 0, [0] * AGENTS, rq),
        )
        g.start()
        sent: dict[str, Any] = rq.get(timeout=seconds + 180)
        g.join()
        return sent

    return measure.beside_counter(
        ctx, broker.url, "jit/v1/bench/+/readings", rate, load
    )


def run(
    workdir: Path,
    *,
    baseline_tree: Path | None,
    more_trees: list[Path] | None = None,
    rate: int = TRIGGER_RATE,
    run_s: float = RUN_S,
    sweep: list[int] | None = None,
    idle: bool = True,
    compare_sender: bool = False,
    steady: tuple[int, float] | None = None,
) -> dict[str, Any]:
    """The whole comparison in one run; returns the numbers (print_result prints them)."""
    (workdir / "mosquitto").mkdir(parents=True)
    (workdir / "influx").mkdir()
    broker = measure.broker(workdir / "mosquitto")
    influx = InfluxDB(workdir / "influx")
    receiver = measure.Receiver("webhook-id")
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
        if steady is None:
            result["baseline_do_nothing_subscriber"] = baseline(
                broker, ctx, rate, run_s
            )
        broker.stop()
        servers = []
        variants: list[tuple[str, Path | None, dict[str, str]]] = [("new", None, {})]
        if compare_sender:
            # the choice measured: webhook POSTs from sender threads in the server process
            variants.append(("thread", None, {"JITSTOCK_WEBHOOK_SENDER": "thread"}))
        if baseline_tree is not None:
            variants.append(("base", baseline_tree, {}))
        # further checkouts (--baseline-tree A,B,...): base2, base3, ...
        for i, other in enumerate(more_trees or [], start=2):
            variants.append((f"base{i}", other, {}))
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
                    steady,
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
    trees = [
        Path(t).resolve()
        for t in str(getattr(args, "baseline_tree", None) or "").split(",")
        if t
    ]
    tree = trees[0] if trees else None
    if getattr(args, "shape", None) == "steady":
        duration = getattr(args, "duration", None)
        steady = (
            sweep[0] if sweep else STEADY_RATE,
            float(duration) if duration else (20.0 if quick else STEADY_S),
        )
        try:
            return run(
                workdir,
                baseline_tree=tree,
                more_trees=trees[1:],
                idle=False,
                steady=steady,
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        return run(
            workdir,
            baseline_tree=tree,
            more_trees=trees[1:],
            rate=2_000 if quick else TRIGGER_RATE,
            run_s=6.0 if quick else RUN_S,
            sweep=sweep,
            idle=not quick,
            compare_sender=not quick and not getattr(args, "no_thread_variant", False),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
