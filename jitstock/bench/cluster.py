"""`jitstock bench cluster --nodes 1,2 --state-db DSN`: ingest throughput and CPU per
reading with one and with several server nodes on one PostgreSQL, in one run.

Everything real and on this machine: a private Mosquitto (MQTT 5 shared
subscription), a private InfluxDB 1.x, the state in a fresh database per setup on
the PostgreSQL of ``--state-db`` (default the local one), `jitstock server`
processes (``JITSTOCK_CLUSTER=true``, one node id each), and the ingest bench's load
generator (100 agents x 50 bins, 50 readings a batch, every reading a pick).

Setups, measured one after the other in the same run: the single-node server
(``JITSTOCK_CLUSTER`` off) on PostgreSQL as the baseline, then a cluster of each
size in ``--nodes``.  Per setup and offered rate: readings stored in InfluxDB,
whether the setup kept up (everything stored, backlog drained within
``CATCH_UP_S``), CPU microseconds per reading of the server nodes (with their
child processes) and of the PostgreSQL backends serving them (found through
``pg_stat_activity``), and the cores they kept busy.  On one 2-core machine
more nodes cannot add cores: the numbers show the cost per reading of the
cluster's database-side dedup and what each node takes, which is what scaling
out to more machines divides.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg

from jitstock.bench import measure
from jitstock.bench.ingest import AGENTS, _fresh_postgres, _generator, _seed
from jitstock.bench.services import InfluxDB, free_port
from jitstock.server.cluster.leader import libpq_url

RATES = (10_000, 20_000, 40_000, 80_000)
QUICK_RATES = (5_000,)
PHASE_S = 10.0
QUICK_PHASE_S = 4.0
CATCH_UP_S = 5.0
DEFAULT_STATE_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


def _pg_backends_cpu_s(db_url: str) -> float:
    """CPU seconds of the PostgreSQL backends connected to this database (same machine)."""
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
    total = 0.0
    for pid in pids:
        try:
            total += measure.cpu_s(pid)
        except OSError:
            continue  # another user's process table, or it just ended
    return total


def _setup(
    name: str,
    nodes: int,
    cluster: bool,
    args: argparse.Namespace,
    workdir: Path,
    influx: InfluxDB,
    rates: tuple[int, ...],
    phase_s: float,
    seq: dict[str, int],
) -> dict[str, Any]:
    """One setup: a fresh database, its nodes, the rates in turn."""
    admin = getattr(args, "state_db", None) or DEFAULT_STATE_DB
    with fresh_database(admin) as db_url:
        return _run_setup(
            db_url, name, nodes, cluster, workdir, influx, rates, phase_s, seq
        )


@contextmanager
def fresh_database(admin_dsn: str) -> Iterator[str]:
    """A new database on the PostgreSQL of admin_dsn (its URL), dropped at the end."""
    db_url = _fresh_postgres(admin_dsn)
    try:
        yield db_url
    finally:
        name = db_url.rsplit("/", 1)[1]
        with psycopg.connect(libpq_url(admin_dsn), autocommit=True) as conn:
            # FORCE: a node killed mid-run may leave a backend behind
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_setup(
    db_url: str,
    name: str,
    nodes: int,
    cluster: bool,
    workdir: Path,
    influx: InfluxDB,
    rates: tuple[int, ...],
    phase_s: float,
    seq: dict[str, int],
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    _seed(db_url, "http://127.0.0.1:9/unused")
    influx_db = f"bench_{name}"
    phases: list[dict[str, Any]] = []
    with ExitStack() as stack:
        # a broker per setup: no session of an earlier setup (queueing, or a member of
        # the shared group) takes messages
        (workdir / f"{name}-mosquitto").mkdir()
        broker = measure.broker(workdir / f"{name}-mosquitto")
        broker.start()
        stack.callback(broker.stop)
        broker_url = broker.url
        procs = []
        for i in range(nodes):
            node_dir = workdir / f"{name}-n{i}"
            node_dir.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")}
            env.update(
                {
                    "JITSTOCK_DB_URL": db_url,
                    "JITSTOCK_DATA_DIR": str(node_dir),
                    "JITSTOCK_MQTT_URL": broker_url,
                    "JITSTOCK_INFLUX_URL": influx.url,
                    "JITSTOCK_INFLUX_DB": influx_db,
                    "JITSTOCK_HTTP_PORT": str(free_port()),
                    "JITSTOCK_AUTH": "off",
                }
            )
            if cluster:
                env["JITSTOCK_CLUSTER"] = "true"
                env["JITSTOCK_CLUSTER_NODE"] = f"n{i}"
            procs.append(stack.enter_context(measure.server(node_dir, env)))
        time.sleep(2.0)
        for rate in rates:
            before = measure.stored(influx, influx_db, "bin =~ /^a/")
            cpu0 = sum(measure.cpu_tree_s(p.pid) for p in procs)
            pg0 = _pg_backends_cpu_s(db_url)
            q: mp.Queue[Any] = ctx.Queue()
            gen = ctx.Process(
                target=_generator, args=(broker_url, rate, phase_s, seq, q)
            )
            started = time.monotonic()
            gen.start()
            sent: dict[str, Any] = q.get(timeout=phase_s + 120)
            gen.join()
            seq.update(sent["next_seq"])
            load_end = time.monotonic()
            caught_up_at = None
            while time.monotonic() < load_end + CATCH_UP_S + 60:
                if (
                    measure.stored(influx, influx_db, "bin =~ /^a/") - before
                    >= sent["sent"]
                ):
                    caught_up_at = time.monotonic()
                    break
                time.sleep(0.2)
            # from the first publish (the generator process takes a while to start)
            wall = (caught_up_at or time.monotonic()) - max(
                started, load_end - sent["seconds"]
            )
            stored = measure.stored(influx, influx_db, "bin =~ /^a/") - before
            cpu = sum(measure.cpu_tree_s(p.pid) for p in procs) - cpu0
            pg = _pg_backends_cpu_s(db_url) - pg0
            phases.append(
                {
                    "setup": name,
                    "nodes": nodes,
                    "target_readings_s": rate,
                    "published_readings_s": round(sent["sent"] / sent["seconds"]),
                    "stored": stored,
                    "not_stored": sent["sent"] - stored,
                    "sustained": stored == sent["sent"]
                    and caught_up_at is not None
                    and caught_up_at - load_end <= CATCH_UP_S,
                    "throughput_readings_s": round(stored / wall),
                    "nodes_cpu_us_per_reading": round(cpu / max(1, stored) * 1e6, 2),
                    "postgres_cpu_us_per_reading": round(pg / max(1, stored) * 1e6, 2),
                    "cores_busy_nodes_and_postgres": round((cpu + pg) / wall, 2),
                }
            )
            if stored < sent["sent"]:
                break
    return {"db_url_database": db_url.rsplit("/", 1)[1], "phases": phases}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the cluster benchmark; returns the numbers."""
    quick = bool(getattr(args, "quick", False))
    rates: tuple[int, ...] = QUICK_RATES if quick else RATES
    if getattr(args, "rates", None):
        rates = tuple(int(r) for r in str(args.rates).split(","))
    sizes = [int(n) for n in str(getattr(args, "nodes", None) or "1,2").split(",")]
    phase_s = QUICK_PHASE_S if quick else PHASE_S
    workdir = Path(tempfile.mkdtemp(prefix="jitstock-bench-cluster-"))
    (workdir / "influx").mkdir()
    influx = InfluxDB(workdir / "influx")
    seq = {f"a{a:03d}": 1 for a in range(AGENTS)}
    result: dict[str, Any] = {"cores": os.cpu_count(), "setups": []}
    try:
        influx.start()
        plan = [("single", 1, False)] + [(f"cluster{n}", n, True) for n in sizes]
        for name, n, cluster in plan:
            out = _setup(name, n, cluster, args, workdir, influx, rates, phase_s, seq)
            result["setups"].append({"setup": name, "nodes": n, **out})
    finally:
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def print_result(result: dict[str, Any]) -> None:
    """One line per setup and rate."""
    cols = (
        "setup",
        "target_readings_s",
        "throughput_readings_s",
        "sustained",
        "nodes_cpu_us_per_reading",
        "postgres_cpu_us_per_reading",
        "cores_busy_nodes_and_postgres",
    )
    print("  " + "  ".join(f"{c:>14.14}" for c in cols))
    for setup in result["setups"]:
        for p in setup["phases"]:
            print("  " + "  ".join(f"{p[c]!s:>14.14}" for c in cols))
