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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from jitstock.demo_history import (
    HISTORY_DAYS,
    SupplierHabits,
    has_history,
    write_history,
)
from jitstock.demo_plant import (
    SITE,
    SLOW_SUPPLIER_FACTOR,
    DemoBin,
    demo_plant,
    write_edge_config,
)
from jitstock.firmware_sim.fleet import SimulatedFleet
from jitstock.firmware_sim.supplier import DemoSupplier
from jitstock.server.api.order_actions import ack_order, change_promise
from jitstock.server.db.models import OPEN_ORDER_STATES, Bin, Order, Supplier
from jitstock.server.db.session import transaction
from jitstock.server.seed import SupplierSeed, seed_plant
from jitstock.server.settings import ServerSettings
from jitstock.server.supplier.lifecycle import load_order

log = logging.getLogger("jitstock.demo")

# Demo secrets: fine for a demo on loopback, refused by ServerSettings in production.
DEMO_SECRETS = {
    "acme": "whsec_ZGVtby1zZWNyZXQtYWNtZS1mYXN0ZW5lcnMtMDE=",
    "borg": "whsec_ZGVtby1zZWNyZXQtYm9yZy1lbGVjdHJvbmljcy0x",
}
# The demo trucks arrive this early: put-away, the scale settling and the edge's stability
# window take 1-2 s before the receipt is on record, more on a loaded machine.
DEMO_EARLY_S = 3.0
# Share of the reliable demo supplier's orders delivered late (20-60 % of the lead time
# after the promise).
DEMO_LATE_FRACTION = 0.05
# ... and of the unreliable one's: late often enough that its lead-time spread, and so the
# safety stock of its bins, visibly grows.
DEMO_UNRELIABLE_LATE_FRACTION = 0.25
# Python log records go here, in the data dir: the console shows the demo's own lines.
DEMO_LOG = "demo.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How often the console looks for orders no reading fired (a manager's recount, a policy
# change, an escalation's bridging order).
ORDER_WATCH_S = 1.0
# The demo ranks ABC over the KPI page's default week, so tile classes match its Pareto.
DEMO_ABC_WINDOW_DAYS = 7


def _free_port(preferred: int) -> int:
    """``preferred`` unless a process listens on it, else a free port.

    With SO_REUSEADDR, as the server's own socket: a port whose last connections
    are still in TIME_WAIT (a demo restarted within a minute) is free to listen
    on, so the dashboard stays on 8000 and an open tab reconnects.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


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
        "--unreliable-late-fraction",
        type=float,
        default=DEMO_UNRELIABLE_LATE_FRACTION,
        help="share of orders the second (unreliable) demo supplier delivers late",
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
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"also print the log records (always written to DATA_DIR/{DEMO_LOG})",
    )
    args = parser.parse_args(argv)
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="jitstock-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log_file = setup_logging(workdir / DEMO_LOG, verbose=args.verbose)
    stack = _DemoStack(workdir, args, log_file)
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
        # a second Ctrl-C must not cut the stop short: the agents are in sessions of
        # their own and only stack.stop() ends them (each wait in it is bounded)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        if args.data_dir is None:
            _keep_log_and_clean(workdir)
    print(
        f"demo stopped: {_n(stack.orders_fired, 'order')} fired, "
        f"{_n(stack.deliveries, 'delivery', 'deliveries')}",
        flush=True,
    )
    return 0


def _n(n: int, one: str, many: str | None = None) -> str:
    """``1 order``, ``3 orders``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _keep_log_and_clean(workdir: Path) -> None:
    """Remove a temp data dir but keep its log beside it (``<dir>.log``): a demo that
    went wrong must leave the records that say why, with or without ``--data-dir``."""
    log_path = workdir / DEMO_LOG
    kept: Path | None = workdir.with_name(workdir.name + ".log")
    for h in list(logging.getLogger().handlers):
        if isinstance(h, logging.FileHandler):
            h.close()
            logging.getLogger().removeHandler(h)
    try:
        shutil.move(log_path, workdir.with_name(workdir.name + ".log"))
    except OSError:
        kept = None
    shutil.rmtree(workdir, ignore_errors=True)
    if kept is not None:
        print(f"log kept: {kept}", flush=True)


def setup_logging(path: Path, *, verbose: bool = False) -> Path:
    """Send every log record (ours, the server's, uvicorn's) to ``path``; with verbose also to stderr."""
    handlers: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    # uvicorn installs its own stderr/stdout handlers from its default logging config
    # when the server starts: point that config at ours (it is the default argument
    # ServerApp.serve's uvicorn.Config uses)
    import uvicorn.config

    for name in ("uvicorn", "uvicorn.access"):
        cfg = uvicorn.config.LOGGING_CONFIG["loggers"].get(name)
        if cfg is not None:
            cfg["handlers"] = []
            cfg["propagate"] = True
    return path


def order_cause(trigger: dict[str, Any]) -> str:
    """Why an order was placed, when it was not a scale reading crossing the reorder point."""
    if "reading_ts_ms" in trigger:
        return ""
    if "history" in trigger:
        return "placed in the history, on its way"
    if "by" in trigger:
        return f"{trigger.get('reason', 'placed')} by {trigger['by']}"
    if "policy" in trigger:
        return "new reorder point"
    if "bridge_for" in trigger or "escalation" in trigger:
        return "escalation"
    return str(trigger.get("reason", "")) or ", ".join(sorted(trigger))


class _DemoStack:
    """Starts and stops the demo's parts in order."""

    def __init__(
        self, workdir: Path, args: argparse.Namespace, log_file: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.args = args
        self.log_file = log_file
        self._printed: set[str] = set()
        self._print_lock = threading.Lock()
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._since_ms = 0
        self.orders_fired = 0
        self.resumed = False
        self.adopted = 0
        # open orders the suppliers take over once the console is up: (supplier, order
        # as in a webhook, promise)
        self._handover: list[tuple[DemoSupplier, dict[str, Any], int]] = []
        self.history_s: float | None = None
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
        plant = demo_plant(args.agents, args.bins, args.seed, leads)
        bin_seeds = [b.seed for b in plant]
        late = {"acme": args.late_fraction, "borg": args.unreliable_late_fraction}
        ack_delay = {"acme": 1.0, "borg": 3.0}

        self.supplier = DemoSupplier(
            DEMO_SECRETS["acme"],
            api_url,
            lead_time_s=leads["acme"],
            ack_delay_s=ack_delay["acme"],
            early_s=min(DEMO_EARLY_S, leads["acme"] / 4),
            late_fraction=late["acme"],
            seed=args.seed,
            on_delivery=self._delivered,
        )
        self.supplier2 = DemoSupplier(
            DEMO_SECRETS["borg"],
            api_url,
            lead_time_s=leads["borg"],
            ack_delay_s=ack_delay["borg"],
            early_s=min(DEMO_EARLY_S, leads["borg"] / 4),
            late_fraction=late["borg"],
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
            abc_window_days=DEMO_ABC_WINDOW_DAYS,
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
        habits = {
            sup: SupplierHabits(
                leads[sup], ack_delay[sup], min(DEMO_EARLY_S, leads[sup] / 4), late[sup]
            )
            for sup in leads
        }
        suppliers = {"acme": self.supplier, "borg": self.supplier2}
        self._point_webhooks(suppliers)
        counts = self._history_or_resume(plant, habits)
        # the suppliers take over the orders still open: a restart's, or those the
        # history placed that are still on their way
        self.adopted = self._hand_back_open_orders(
            suppliers, leads, repromise=self.resumed
        )
        specs = [
            replace(b.spec, count=counts.get(b.spec.bin, b.spec.count)) for b in plant
        ]
        app.registry.reload()
        app.order_listeners.append(self._orders_fired)
        self._since_ms = int(time.time() * 1000)
        self._watcher = threading.Thread(
            target=self._watch_orders, name="demo-orders", daemon=True
        )

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
                    # out of the terminal's process group: its Ctrl-C would stop the
                    # agents before the server, which then records them offline; the
                    # demo stops them itself, after its server (stop())
                    start_new_session=True,
                )
            )
        self.runner = self.fleet.run_demand()
        self._watcher.start()
        print(
            f"jitstock demo: {len(specs)} simulated scales on {len(by_agent)} edge agents, broker {mqtt_url}"
        )
        print(f"  dashboard  {api_url}/")
        print(f"  API docs   {api_url}/docs")
        print(f"  data dir   {self.workdir}")
        if self.log_file is not None:
            print(f"  log        {self.log_file} (--verbose prints it here)")
        if self.resumed:
            print(
                "  history    resumed: the scales continue at their last recorded "
                f"counts; {self.adopted} open orders re-promised by their suppliers"
            )
        elif self.history_s is not None:
            print(
                f"  history    {HISTORY_DAYS} days of synthetic picks and deliveries "
                f"({self.history_s:.1f} s); {self.adopted} of its orders "
                f"{'is' if self.adopted == 1 else 'are'} still on the way"
            )
        print("Ctrl-C to stop. Orders and deliveries:", flush=True)
        if not self.resumed and self._handover:
            # the history's orders still on their way: their ORDER line before any DELIVERY
            with transaction(app.session_factory, readonly=True) as s:
                ids = [public["id"] for _, public, _ in self._handover]
                history_orders = list(s.scalars(select(Order).where(Order.id.in_(ids))))
            self._print_orders(history_orders, fired=False)
        for sup, public, promised in self._handover:
            sup.adopt(public, promised, acked=True)

    def _history_or_resume(
        self, plant: list[DemoBin], habits: dict[str, SupplierHabits]
    ) -> dict[str, int]:
        """Each bin's starting count: a fresh data dir gets synthetic history first.

        Over an existing data dir the simulated scales start at the last counts the
        server recorded, so the first readings after the restart match and raise no
        refill or consumption the line never made (see ``jitstock demo --help``).
        """
        factory = self.app.session_factory
        if has_history(factory):
            with transaction(factory, readonly=True) as s:
                rows = s.execute(
                    select(Bin.id, Bin.on_hand).where(Bin.last_seen_ms.is_not(None))
                ).all()
            self.resumed = True
            return {b: max(0, int(n)) for b, n in rows}
        started = time.monotonic()
        counts = write_history(
            factory,
            SITE,
            [b.past() for b in plant],
            habits,
            int(time.time() * 1000),
            seed=self.args.seed,
        )
        self.history_s = time.monotonic() - started
        return counts

    def _point_webhooks(self, suppliers: dict[str, DemoSupplier]) -> None:
        """The demo suppliers listen on new ports each run: point their records at them."""
        with transaction(self.app.session_factory) as s:
            for sup_id, sup in suppliers.items():
                row = s.get(Supplier, sup_id)
                if row is not None:
                    row.webhook_url = sup.url

    def _hand_back_open_orders(
        self,
        suppliers: dict[str, DemoSupplier],
        leads: dict[str, float],
        *,
        repromise: bool,
    ) -> int:
        """Each demo supplier takes over its orders still open.

        After a restart (``repromise``) the supplier processes of the last run
        are gone; a real supplier would answer an outage with a new date.
        Before the server (and its alert monitor) starts, each open order whose
        promise falls within one lead time gets a new one (now + the lead time:
        an acknowledgement or a promise change, the same functions the API
        calls) and is delivered by it; nothing is overdue for the time the demo
        was down.  After a fresh history the open orders are the ones it placed
        that are still on their way: they keep their promise (a sent one is
        acknowledged with it) and are delivered by it, so the bin's first
        readings at or below its reorder point order nothing a second time.
        """
        now = int(time.time() * 1000)
        adopted = 0
        with transaction(self.app.session_factory) as s:
            open_orders = list(
                s.scalars(
                    select(Order).where(
                        Order.state.in_(OPEN_ORDER_STATES),
                        Order.supplier_id.in_(list(suppliers)),
                    )
                )
            )
            for o in open_orders:
                sup = suppliers[o.supplier_id]
                public = {
                    "id": o.id,
                    "bin": o.bin_id,
                    "qty": o.qty,
                    "supplier": o.supplier_id,
                }
                fresh = now + int(leads[o.supplier_id] * 1000)
                promised = o.promised_ms or 0
                if not repromise:
                    fresh = promised  # the history's own (it may be late already)
                try:
                    if o.state in ("created", "sent"):
                        ack_order(s, o.id, fresh, o.supplier_id, now)
                        promised = fresh
                    elif promised < fresh:
                        locked = load_order(s, o.id, lock=True)
                        change_promise(s, locked, fresh, o.supplier_id, now)
                        promised = fresh
                except Exception:
                    log.exception("demo: order %s could not be re-promised", o.id)
                    continue
                self._handover.append((sup, public, promised))
                adopted += 1
        return adopted

    def _orders_fired(self, order_ids: list[str]) -> None:
        with transaction(self.app.session_factory, readonly=True) as s:
            orders = list(s.scalars(select(Order).where(Order.id.in_(order_ids))))
        self._print_orders(orders)

    def _print_orders(self, orders: list[Order], *, fired: bool = True) -> None:
        """One ORDER line per order not printed yet, with its cause when no reading fired it.

        ``fired``: placed in this run (the history's open orders are not)."""
        with self._print_lock:
            for order in sorted(orders, key=lambda o: o.created_ms):
                if order.id in self._printed:
                    continue
                self._printed.add(order.id)
                self.orders_fired += fired
                cause = order_cause(order.trigger or {})
                print(
                    f"{time.strftime('%H:%M:%S')} ORDER    {order.id[:8]}  bin {order.bin_id:<7} "
                    f"qty {order.qty:>4}  supplier {order.supplier_id}"
                    + (f"  ({cause})" if cause else ""),
                    flush=True,
                )

    def _watch_orders(self) -> None:
        """Print orders that came without a reading: a recount, a policy change, a bridge."""
        while not self._watch_stop.wait(ORDER_WATCH_S):
            try:
                with transaction(self.app.session_factory, readonly=True) as s:
                    orders = list(
                        s.scalars(
                            select(Order).where(Order.created_ms >= self._since_ms)
                        )
                    )
                self._print_orders(orders)
            except Exception:
                log.exception("demo: reading new orders failed")

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
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(5.0)
        if self.runner is not None:
            self.runner.stop()
        # no more deliveries, then the server, then its agents: a demo stopping is not an
        # agent going offline (a restart would open with its alerts)
        for part in (self.supplier, self.supplier2):
            if part is not None:
                part.stop()
        if self.app is not None:
            self.app.stop()
        for p in self.edges:
            p.send_signal(signal.SIGTERM)
        for p in self.edges:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.fleet is not None:
            self.fleet.stop()
        if self.broker is not None:
            self.broker.stop()
