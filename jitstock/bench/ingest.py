"""`jitstock bench ingest`: how many readings per second the server sustains with zero loss.

Everything real and on this machine: a private Mosquitto, a private InfluxDB
1.x, `jitstock server` as a child process (its CPU and RSS read from /proc),
and a load generator process publishing QoS 1 batches of 50 readings from a
simulated fleet (100 agents x 50 bins) at rising rates.

Per rate it reports whether the server sustained it (every published reading
counted in InfluxDB, and the server caught up within a few seconds of the end
of the phase), ingest lag p50/p99 (the server's own histogram: reading
timestamp to durable commit), and server CPU microseconds per reading.

In the same run it measures the limit of the machine: a do-nothing paho
subscriber counting the same readings (JSON parsed, nothing stored), with the
server stopped.  Finally, at a steady background load, it measures the reorder
trigger latency: publish of the reading that crosses a reorder point -> signed
webhook received by a supplier endpoint, p50/p99.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol
from jitstock.bench import measure
from jitstock.bench.services import InfluxDB, Mosquitto, free_port
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant

AGENTS = 100
BINS_PER_AGENT = 50
UNIT_G = 10.0
# Every bin starts this full and loses one part per reading; enough for the whole run.
START_COUNT = 60_000
TARE_G = 500.0
RATES = (25_000, 50_000, 100_000, 150_000, 200_000, 250_000)
QUICK_RATES = (10_000, 30_000)
PHASE_S = 10.0
QUICK_PHASE_S = 4.0
# After a phase the server may take this long to drain what is queued and still count as keeping up.
CATCH_UP_S = 5.0
# Keeping up means readings are durable within this long (p99) while the rate holds.
SUSTAINED_LAG_P99_S = 1.0
TRIGGER_RATE = 100_000
TRIGGER_BINS = 60
# the trigger agent's seq, continued across trigger runs
_TRIGGER_SEQ = [0]
SECRET = "whsec_YmVuY2gtc2VjcmV0LWZvci10cmlnZ2VyLWxhdGVuY3k="


# ------------------------------------------------------------------ load


def _generator(
    url: str,
    rate: float,
    duration: float,
    first_seq: dict[str, int],
    out: mp.Queue[Any],
) -> None:
    """Publish batches of 50 readings at `rate` readings/s for `duration` s; report what was published."""
    port = int(url.rsplit(":", 1)[1])
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-load-{os.getpid()}"
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    msgs_per_s = rate / BINS_PER_AGENT
    seq = dict(first_seq)
    last_ts = dict.fromkeys(seq, 0)
    topics = {a: protocol.agent_topic("bench", a, "readings") for a in seq}
    bins = {a: [f"{a}-b{b:02d}" for b in range(BINS_PER_AGENT)] for a in seq}
    agents = list(seq)
    sent = 0
    start = time.monotonic()
    k = 0
    infos = []
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        due = int(elapsed * msgs_per_s)
        if k >= due:
            time.sleep(min(0.002, (k + 1) / msgs_per_s - elapsed))
            continue
        a = agents[k % len(agents)]
        now = max(time.time_ns() // 1_000_000, last_ts[a] + 1)
        last_ts[a] = now
        # every reading is a pick (the count goes down by one): the heaviest honest case,
        # one consumption event per bin per batch, and never an unannounced refill
        # (by the agent's seq: counting down goes on where the previous phase left off)
        grams = TARE_G + UNIT_G * (START_COUNT - seq[a])
        readings = [
            {"bin": b, "ts_ms": now, "grams": grams, "stable": True} for b in bins[a]
        ]
        payload = orjson.dumps(
            {"agent": a, "seq": seq[a], "sent_ms": now, "readings": readings}
        )
        seq[a] += 1
        infos.append(client.publish(topics[a], payload, qos=1))
        sent += BINS_PER_AGENT
        k += 1
    publishing_s = time.monotonic() - start
    for info in infos:
        info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    out.put({"sent": sent, "seconds": publishing_s, "next_seq": seq})


# ------------------------------------------------------------------ the run


def _seed(db_url: str, webhook: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    bins = [
        BinSeed(
            f"a{a:03d}-b{b:02d}",
            f"a{a:03d}",
            "SKU-B",
            UNIT_G,
            TARE_G,
            0,
            10,
            1000,
            None,
        )
        for a in range(AGENTS)
        for b in range(BINS_PER_AGENT)
    ]
    bins += [
        BinSeed(
            f"{prefix}-{i:03d}", "trig", "SKU-T", UNIT_G, TARE_G, 50, 100, 200, "S1"
        )
        for prefix in ("trig-a", "trig-b")
        for i in range(TRIGGER_BINS)
    ]
    seed_plant(
        make_session_factory(engine),
        "bench",
        bins,
        [SupplierSeed("S1", "Bench supplier", webhook, SECRET)],
    )
    engine.dispose()


def _fresh_postgres(admin_dsn: str) -> str:
    """A new, empty database on the PostgreSQL server of admin_dsn; returns its SQLAlchemy URL."""
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    name = f"jitstock_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_dsn).set(drivername="postgresql+psycopg", database=name)
    return url.render_as_string(hide_password=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ingest benchmark; returns the numbers (also printed as a table)."""
    if getattr(args, "shape", None) in ("resend", "steady"):
        from jitstock.bench import resend

        return resend.run_args(args)
    quick = bool(getattr(args, "quick", False))
    rates: tuple[int, ...] = QUICK_RATES if quick else RATES
    if getattr(args, "rates", None):
        rates = tuple(int(r) for r in str(args.rates).split(","))
    phase_s = QUICK_PHASE_S if quick else PHASE_S
    workdir = Path(tempfile.mkdtemp(prefix="jitstock-bench-ingest-"))
    broker = measure.broker(workdir / "mosquitto")
    (workdir / "mosquitto").mkdir()
    (workdir / "influx").mkdir()
    influx = InfluxDB(workdir / "influx")
    receiver = measure.Receiver("bin")
    result: dict[str, Any] = {
        "agents": AGENTS,
        "bins": AGENTS * BINS_PER_AGENT,
        "readings_per_message": BINS_PER_AGENT,
    }
    seq = {f"a{a:03d}": 1 for a in range(AGENTS)}
    ctx = mp.get_context("spawn")
    try:
        broker.start()
        influx.start()

        def load(rate: float, seconds: float) -> dict[str, Any]:
            q: mp.Queue[Any] = ctx.Queue()
            p = ctx.Process(target=_generator, args=(broker.url, rate, seconds, seq, q))
            p.start()
            report: dict[str, Any] = q.get(timeout=seconds + 120)
            p.join()
            seq.update(report["next_seq"])
            return report

        # 1. the machine's limit: a do-nothing subscriber, no server running
        topic = protocol.subscription("readings")
        result["baseline_do_nothing_subscriber"] = [
            measure.beside_counter(
                ctx, broker.url, topic, rate, functools.partial(load, rate, phase_s)
            )
            for rate in rates
        ]

        # 2. the server at the same rates
        state_db = getattr(args, "state_db", None)
        db_url = (
            _fresh_postgres(state_db)
            if state_db
            else f"sqlite:///{workdir / 'state.db'}"
        )
        result["state_db"] = "postgresql" if state_db else "sqlite"
        _seed(db_url, receiver.url)
        http_port = free_port()
        base = f"http://127.0.0.1:{http_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")}
        env.update(
            {
                "JITSTOCK_DB_URL": db_url,
                "JITSTOCK_DATA_DIR": str(workdir),
                "JITSTOCK_MQTT_URL": broker.url,
                "JITSTOCK_INFLUX_URL": influx.url,
                "JITSTOCK_INFLUX_DB": "bench",
                "JITSTOCK_HTTP_PORT": str(http_port),
                "JITSTOCK_AUTH": "off",
            }
        )
        phases = []
        with measure.server(workdir, env) as server:
            time.sleep(1.0)
            sweep_start = measure.stored(influx, "bench", "bin =~ /^a/")
            for rate in rates:
                lag_before = measure.histogram(base, "jitstock_ingest_lag_seconds")
                stored_before = measure.stored(influx, "bench", "bin =~ /^a/")
                assert influx.proc is not None
                assert broker.proc is not None
                pids = {
                    "server": server.pid,
                    "influxd": influx.proc.pid,
                    "mosquitto": broker.proc.pid,
                }
                cpu_before = {k: measure.cpu_s(p) for k, p in pids.items()}
                started = time.monotonic()
                sent = load(rate, phase_s)
                load_end = time.monotonic()
                deadline = load_end + CATCH_UP_S + 60
                caught_up_at = None
                while time.monotonic() < deadline:
                    if (
                        measure.stored(influx, "bench", "bin =~ /^a/") - stored_before
                        >= sent["sent"]
                    ):
                        caught_up_at = time.monotonic()
                        break
                    time.sleep(0.2)
                wall = (caught_up_at or time.monotonic()) - started
                cpu = {k: measure.cpu_s(p) - cpu_before[k] for k, p in pids.items()}
                stored = measure.stored(influx, "bench", "bin =~ /^a/") - stored_before
                lag_after = measure.histogram(base, "jitstock_ingest_lag_seconds")
                lag_p99 = measure.histogram_quantile(lag_before, lag_after, 0.99)
                phases.append(
                    {
                        "target_readings_s": rate,
                        "published_readings_s": round(sent["sent"] / sent["seconds"]),
                        "stored": stored,
                        # not in InfluxDB within CATCH_UP_S + 60 s of the phase's end (still queued or lost)
                        "not_stored": sent["sent"] - stored,
                        # kept up: everything stored, and the backlog at the end drained within CATCH_UP_S
                        "sustained": stored == sent["sent"]
                        and caught_up_at is not None
                        and caught_up_at - load_end <= CATCH_UP_S,
                        "lag_p50_s": measure.histogram_quantile(
                            lag_before, lag_after, 0.5
                        ),
                        "lag_p99_s": lag_p99,
                        "catch_up_s": None
                        if caught_up_at is None
                        else round(caught_up_at - load_end, 2),
                        "server_cpu_us_per_reading": round(
                            cpu["server"] / max(1, stored) * 1e6, 2
                        ),
                        "influxd_cpu_us_per_reading": round(
                            cpu["influxd"] / max(1, stored) * 1e6, 2
                        ),
                        "mosquitto_cpu_us_per_reading": round(
                            cpu["mosquitto"] / max(1, stored) * 1e6, 2
                        ),
                        # cores busy with server + influxd + mosquitto (the load generator comes on top)
                        "cores_busy": round(sum(cpu.values()) / wall, 2),
                        "server_rss_mb": round(measure.rss_mb(server.pid)),
                    }
                )
                if stored < sent["sent"]:
                    break  # past the limit; higher rates only take longer to fail
            result["server"] = phases
            ok = [
                p["published_readings_s"]
                for p in phases
                if p["sustained"] and (p["lag_p99_s"] or 99) <= SUSTAINED_LAG_P99_S
            ]
            result["max_sustained_readings_s"] = max(ok) if ok else 0

            # 3. trigger latency under load: crossing reading published -> signed webhook received.
            # First let the server drain what the last (possibly too fast) phase left queued.
            expected = sum(p["stored"] + p["not_stored"] for p in phases)
            deadline = time.monotonic() + 180
            while (
                measure.stored(influx, "bench", "bin =~ /^a/") - sweep_start < expected
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            result["trigger"] = _trigger_latency(
                broker,
                base,
                receiver,
                load,
                TRIGGER_RATE if not quick else rates[0],
                "trig-a",
            )
            # and at the highest rate the server sustained, where no backlog queues the trigger
            if result["max_sustained_readings_s"] and not quick:
                receiver.arrivals.clear()
                result["trigger_at_sustained_rate"] = _trigger_latency(
                    broker,
                    base,
                    receiver,
                    load,
                    result["max_sustained_readings_s"],
                    "trig-b",
                )
    finally:
        receiver.close()
        influx.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _trigger_latency(
    broker: Mosquitto,
    base: str,
    receiver: measure.Receiver,
    load: Any,
    rate: float,
    prefix: str,
) -> dict[str, Any]:
    """Each of TRIGGER_BINS fresh bins gets one reading below its reorder point; time to its webhook."""
    port = broker.port
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-trigger")
    client.connect("127.0.0.1", port)
    client.loop_start()
    topic = protocol.agent_topic("bench", "trig", "readings")
    published: dict[str, float] = {}
    seq = _TRIGGER_SEQ[0]
    background = threading.Thread(
        target=load, args=(rate, TRIGGER_BINS * 0.1 + 4.0), daemon=True
    )
    background.start()
    time.sleep(1.5)
    for i in range(TRIGGER_BINS):
        seq += 1
        now = time.time_ns() // 1_000_000
        bin_id = f"{prefix}-{i:03d}"
        reading = protocol.Reading(
            bin_id, now, TARE_G + UNIT_G * 40, True
        )  # 40 <= reorder point 50
        payload = protocol.encode_readings(
            protocol.ReadingsBatch("trig", seq, now, (reading,))
        )
        published[bin_id] = time.time()
        client.publish(topic, payload, qos=1)
        time.sleep(0.1)
    background.join()
    _TRIGGER_SEQ[0] = seq
    deadline = time.monotonic() + 30
    while len(receiver.arrivals) < TRIGGER_BINS and time.monotonic() < deadline:
        time.sleep(0.1)
    client.loop_stop()
    client.disconnect()
    lat = sorted(
        (receiver.arrivals[b] - t) * 1000
        for b, t in published.items()
        if b in receiver.arrivals
    )
    if not lat:
        return {"background_readings_s": rate, "samples": 0}
    return {
        "background_readings_s": rate,
        "samples": len(lat),
        "missing": TRIGGER_BINS - len(lat),
        "p50_ms": round(lat[len(lat) // 2], 1),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
        "max_ms": round(lat[-1], 1),
    }


def print_result(result: dict[str, Any]) -> None:
    """The tables of a run."""
    if "servers" in result:
        from jitstock.bench import resend_report

        resend_report.print_result(result)
        return
    print("baseline: do-nothing paho subscriber (QoS 1, parses JSON)")
    print(
        f"  {'target/s':>10} {'published/s':>12} {'received':>10} {'lost':>8} {'cpu us/rdg':>10}"
    )
    for r in result.get("baseline_do_nothing_subscriber", []):
        print(
            f"  {r['target_readings_s']:>10,} {r['published_readings_s']:>12,} {r['received']:>10,} "
            f"{r['lost']:>8,} {r['subscriber_cpu_us_per_reading']:>10}"
        )
    print("jitstock server -> InfluxDB")
    print(
        f"  {'target/s':>10} {'published/s':>12} {'stored':>10} {'missing':>8} {'ok':>4} "
        f"{'lag p50':>8} {'lag p99':>8} {'srv us':>7} {'influx us':>9} {'mosq us':>7} {'cores':>5} {'rss MB':>7}"
    )
    for r in result.get("server", []):
        print(
            f"  {r['target_readings_s']:>10,} {r['published_readings_s']:>12,} {r['stored']:>10,} {r['not_stored']:>8,} "
            f"{'yes' if r['sustained'] else 'no':>4} {r['lag_p50_s']!s:>8} {r['lag_p99_s']!s:>8} "
            f"{r['server_cpu_us_per_reading']:>7} {r['influxd_cpu_us_per_reading']:>9} "
            f"{r['mosquitto_cpu_us_per_reading']:>7} {r['cores_busy']:>5} {r['server_rss_mb']:>7}"
        )
    print(
        f"max sustained with zero loss: {result.get('max_sustained_readings_s', 0):,} readings/s"
    )
    for key in ("trigger", "trigger_at_sustained_rate"):
        t = result.get(key)
        if t:
            print(
                f"trigger latency at {t['background_readings_s']:,} readings/s background: "
                f"p50 {t.get('p50_ms')} ms, p99 {t.get('p99_ms')} ms, max {t.get('max_ms')} ms "
                f"({t.get('samples')} orders, {t.get('missing', 0)} missing)"
            )
