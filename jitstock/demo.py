"""`jitstock demo`: the whole system on embedded defaults, on one machine.

An embedded MQTT broker (or the one JITSTOCK_MQTT_URL names), SQLite for state
and history, simulated scales on pseudo-terminals read by real `jitstock-edge`
processes, a demo supplier that receives the signed webhooks, acknowledges and
delivers after its lead time (the simulated bins refill), and the API and
dashboard on http://127.0.0.1:8000.  One line per order fired and per delivery.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from jitstock.firmware_sim.demand import BinDemand
from jitstock.firmware_sim.fleet import BinSpec, SimulatedFleet
from jitstock.firmware_sim.supplier import DemoSupplier
from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
from jitstock.server.settings import ServerSettings

log = logging.getLogger("jitstock.demo")

SITE = "plant1"
# Demo secrets: fine for a demo on loopback, refused by ServerSettings in production.
DEMO_SECRETS = {
    "acme": "whsec_ZGVtby1zZWNyZXQtYWNtZS1mYXN0ZW5lcnMtMDE=",
    "borg": "whsec_ZGVtby1zZWNyZXQtYm9yZy1lbGVjdHJvbmljcy0x",
}
# Parts per hour per bin: high, so that a minute of demo shows orders and deliveries.
DEMO_RATE_RANGE = (900.0, 2400.0)
# The slower demo supplier's lead time, relative to --lead-time.
SLOW_SUPPLIER_FACTOR = 1.5
# The demo trucks arrive this early: put-away, the scale settling and the edge's stability
# window take 1-2 s before the receipt is on record, more on a loaded machine.
DEMO_EARLY_S = 3.0
# Share of demo orders delivered late (20-60 % of the lead time after the promise).
DEMO_LATE_FRACTION = 0.05
# z of the demo's safety stock: 99 % of lead times end before the bin runs dry.
DEMO_SAFETY_Z = 2.33
# Sensing the crossing pick and sending the order, before the supplier's lead time starts.
ORDER_LATENCY_S = 2.0
# Order quantities cover at least this much demand (and round up to tens): a bin cycles
# every minute or two, not every few seconds.
MIN_ORDER_COVER_S = 60.0


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def reorder_numbers(
    parts_per_hour: float,
    lead_time_s: float,
    *,
    intermittent: bool = False,
    burst_gap_s: float = BinDemand.burst_gap_s,
) -> tuple[int, int, int]:
    """(reorder point, order quantity, capacity) that cover a demo bin's demand over its lead time.

    Reorder point = demand over the lead time (plus the order's own latency) +
    z·σ, with Poisson picks (σ² = mean); an intermittent bin's bursts (picks
    ``burst_gap_s`` apart) land several picks in one lead time, so its variance
    is about ``1 + lead / burst_gap_s`` times the mean.  The order quantity
    covers at least the reorder point (the position must stay above it until the
    one open order arrives) and a minute of demand; capacity is the order-up-to
    level.  The live policy learns its own numbers once there is history; these
    are what a planner would set for a new line.
    """
    per_s = parts_per_hour / 3600.0
    horizon = lead_time_s + ORDER_LATENCY_S
    mean = per_s * horizon
    dispersion = 1.0 + horizon / burst_gap_s if intermittent else 1.0
    rop = math.ceil(mean + DEMO_SAFETY_Z * math.sqrt(mean * dispersion))
    qty = 10 * math.ceil(max(rop, per_s * MIN_ORDER_COVER_S) / 10)
    return rop, qty, 10 * math.ceil((rop + qty) / 10)


def demo_bins(
    agents: int,
    bins_per_agent: int,
    seed: int,
    lead_times: dict[str, float] | None = None,
) -> tuple[list[BinSeed], list[BinSpec]]:
    """The demo plant: server-side bin records and the matching simulated scales.

    ``lead_times`` (supplier id -> seconds) sizes each bin's reorder point and
    order quantity for the supplier that serves it (see ``reorder_numbers``).
    """
    leads = lead_times or {"acme": 25.0, "borg": 25.0 * SLOW_SUPPLIER_FACTOR}
    rnd = random.Random(seed)
    seeds: list[BinSeed] = []
    specs: list[BinSpec] = []
    for a in range(1, agents + 1):
        agent = f"line{a}-pi"
        for i in range(1, bins_per_agent + 1):
            bin_id = f"L{a}-B{i:02d}"
            unit = rnd.choice([2.5, 4.0, 12.5, 18.0, 35.0])
            tare = rnd.choice([350.0, 500.0, 800.0])
            rate = rnd.uniform(*DEMO_RATE_RANGE)
            intermittent = i % 5 == 0
            supplier = "acme" if i % 3 else "borg"
            rop, qty, capacity = reorder_numbers(
                rate, leads[supplier], intermittent=intermittent
            )
            start = rnd.randint(rop + 4, capacity)
            seeds.append(
                BinSeed(
                    bin_id,
                    agent,
                    f"SKU-{a}{i:02d}",
                    unit,
                    tare,
                    rop,
                    qty,
                    capacity,
                    supplier,
                    area=f"Area {a}",
                    line=f"Line {a}",
                    lead_time_s=math.ceil(leads[supplier]),
                )
            )
            specs.append(
                BinSpec(
                    bin_id,
                    protocol="sics" if i % 4 == 0 else "stream",
                    unit_weight_g=unit,
                    count=start,
                    tare_g=tare,
                    parts_per_hour=rate,
                    intermittent=intermittent,
                    capacity=capacity,
                )
            )
    return seeds, specs


def write_edge_config(
    path: Path,
    agent: str,
    mqtt_url: str,
    scales: list[tuple[str, str, str]],
    workdir: Path,
) -> None:
    """A jitstock-edge TOML file for one agent reading the given simulated ports."""
    lines = [
        f'site = "{SITE}"',
        f'agent = "{agent}"',
        f'mqtt_url = "{mqtt_url}"',
        f'outbox_path = "{workdir / (agent + "-outbox.db")}"',
        "tick_s = 0.2",
        "",
    ]
    for bin_id, port, protocol in scales:
        lines += [
            "[[scales]]",
            f'port = "{port}"',
            f'bin = "{bin_id}"',
            f'protocol = "{protocol}"',
            "",
        ]
    lines += [
        "[signal]",
        "step_g = 2.0",
        "keepalive_s = 30.0",
        "stability_window_s = 0.6",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> int:
    """Entry point of `jitstock demo`."""
    parser = argparse.ArgumentParser(prog="jitstock demo", description=__doc__)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--bins", type=int, default=12, help="scales per agent")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("JITSTOCK_HTTP_PORT", "8000"))
    )
    parser.add_argument(
        "--lead-time",
        type=float,
        default=25.0,
        help="lead time the first demo supplier promises, seconds (the second: 1.5x)",
    )
    parser.add_argument(
        "--late-fraction",
        type=float,
        default=DEMO_LATE_FRACTION,
        help="share of orders the demo suppliers deliver late",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (0: until Ctrl-C)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep state here (default: a temp dir)",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="jitstock-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = _DemoStack(workdir, args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack.start()
        deadline = time.monotonic() + args.duration if args.duration > 0 else None
        while not stop.wait(0.5):
            if deadline is not None and time.monotonic() > deadline:
                break
    except KeyboardInterrupt:
        pass
    except Exception:
        # say why now: stopping half-started parts can take a while
        log.exception("jitstock demo failed")
        raise
    finally:
        print("stopping ...", flush=True)
        stack.stop()
        if args.data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"demo stopped: {stack.orders_fired} orders fired, {stack.deliveries} deliveries",
        flush=True,
    )
    return 0


class _DemoStack:
    """Starts and stops the demo's parts in order."""

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.orders_fired = 0
        self.deliveries = 0
        self.broker: Any = None
        self.app: Any = None
        self.fleet: SimulatedFleet | None = None
        self.supplier: DemoSupplier | None = None
        self.supplier2: DemoSupplier | None = None
        self.edges: list[subprocess.Popen[bytes]] = []
        self.runner: Any = None
        self._server_thread: threading.Thread | None = None

    def start(self) -> None:
        args = self.args
        mqtt_url = os.environ.get("JITSTOCK_MQTT_URL")
        protocol = os.environ.get("JITSTOCK_MQTT_PROTOCOL", "5")
        if not mqtt_url:
            from jitstock.server.broker import EmbeddedBroker

            self.broker = EmbeddedBroker(port=_free_port(1883))
            self.broker.start()
            mqtt_url, protocol = self.broker.url, "3.1.1"
        http_port = _free_port(args.port)
        api_url = f"http://127.0.0.1:{http_port}"
        leads = {"acme": args.lead_time, "borg": args.lead_time * SLOW_SUPPLIER_FACTOR}
        bin_seeds, specs = demo_bins(args.agents, args.bins, args.seed, leads)

        self.supplier = DemoSupplier(
            DEMO_SECRETS["acme"],
            api_url,
            lead_time_s=leads["acme"],
            ack_delay_s=1.0,
            early_s=min(DEMO_EARLY_S, leads["acme"] / 4),
            late_fraction=args.late_fraction,
            seed=args.seed,
            on_delivery=self._delivered,
        )
        self.supplier2 = DemoSupplier(
            DEMO_SECRETS["borg"],
            api_url,
            lead_time_s=leads["borg"],
            ack_delay_s=3.0,
            early_s=min(DEMO_EARLY_S, leads["borg"] / 4),
            late_fraction=args.late_fraction,
            seed=args.seed + 1,
            on_delivery=self._delivered,
        )
        settings = ServerSettings(
            data_dir=self.workdir,
            db_url=f"sqlite:///{self.workdir / 'jitstock.db'}",
            mqtt_url=mqtt_url,
            mqtt_protocol=protocol,  # type: ignore[arg-type]
            mqtt_client_id="jitstock-demo-server",
            http_port=http_port,
            auth="off",
            influx_url=os.environ.get("JITSTOCK_INFLUX_URL") or None,
            webhook_backoff_base_s=0.5,
            webhook_backoff_cap_s=5.0,
        )
        from jitstock.server.app import ServerApp

        self.app = app = ServerApp(settings)
        seed_plant(
            app.session_factory,
            SITE,
            bin_seeds,
            [
                SupplierSeed(
                    "acme", "ACME Fasteners", self.supplier.url, DEMO_SECRETS["acme"]
                ),
                SupplierSeed(
                    "borg", "Borg Electronics", self.supplier2.url, DEMO_SECRETS["borg"]
                ),
            ],
            site_name="Demo plant",
        )
        app.registry.reload()
        app.order_listeners.append(self._orders_fired)

        self.fleet = SimulatedFleet(
            specs, seed=args.seed, workdir=self.workdir / "ptys"
        )
        self.fleet.start()
        self.supplier.start()
        self.supplier2.start()
        app.start()
        self._server_thread = threading.Thread(
            target=app.serve, name="http", daemon=True
        )
        self._server_thread.start()

        by_agent: dict[str, list[tuple[str, str, str]]] = {}
        agent_of = {b.id: b.agent for b in bin_seeds}
        for bin_id, port, proto in self.fleet.ports():
            by_agent.setdefault(agent_of[bin_id], []).append((bin_id, port, proto))
        for agent, scales in by_agent.items():
            cfg = self.workdir / f"{agent}.toml"
            write_edge_config(cfg, agent, mqtt_url, scales, self.workdir)
            log_file = open(self.workdir / f"{agent}.log", "ab")  # noqa: SIM115 (lives as long as the child)
            self.edges.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jitstock.edge.cli", "--config", str(cfg)],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            )
        self.runner = self.fleet.run_demand()
        print(
            f"jitstock demo: {len(specs)} simulated scales on {len(by_agent)} edge agents, broker {mqtt_url}"
        )
        print(f"  dashboard  {api_url}/")
        print(f"  API docs   {api_url}/docs")
        print(f"  data dir   {self.workdir}")
        print("Ctrl-C to stop. Orders and deliveries:", flush=True)

    def _orders_fired(self, order_ids: list[str]) -> None:
        with transaction(self.app.session_factory, readonly=True) as s:
            for order in s.scalars(select(Order).where(Order.id.in_(order_ids))):
                self.orders_fired += 1
                print(
                    f"{time.strftime('%H:%M:%S')} ORDER    {order.id[:8]}  bin {order.bin_id:<7} "
                    f"qty {order.qty:>4}  supplier {order.supplier_id}",
                    flush=True,
                )

    def _delivered(self, order: dict[str, Any]) -> None:
        assert self.fleet is not None
        self.fleet.refill(order["bin"], int(order["qty"]))
        self.deliveries += 1
        late = any(order["id"] in s.late for s in (self.supplier, self.supplier2) if s)
        print(
            f"{time.strftime('%H:%M:%S')} DELIVERY {order['id'][:8]}  bin {order['bin']:<7} "
            f"qty {order['qty']:>4}  supplier {order['supplier']}"
            + ("  (late)" if late else ""),
            flush=True,
        )

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        for p in self.edges:
            p.send_signal(signal.SIGTERM)
        for p in self.edges:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for part in (self.supplier, self.supplier2):
            if part is not None:
                part.stop()
        if self.app is not None:
            self.app.stop()
        if self.fleet is not None:
            self.fleet.stop()
        if self.broker is not None:
            self.broker.stop()
