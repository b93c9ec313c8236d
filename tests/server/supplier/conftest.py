"""Supplier-loop fixtures: a real server (auth on) over a seeded plant, two real supplier
HTTP endpoints (A preferred, B fallback), a simulated scale and dock scanner read by a real
edge agent over a real Mosquitto.

Every webhook the suppliers receive is checked against the OpenAPI ``webhooks`` the
server publishes (issue 13's contract test): a test whose deliveries break the
contract fails at the end of its ``supplier_loop``."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.agent import Agent
from jitstock.edge.settings import load_settings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.firmware_sim.scanner import SimulatedScanner
from jitstock.server import reorder
from jitstock.server.app import ServerApp
from jitstock.server.db.models import Order
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import transaction
from jitstock.server.seed import BinSeed, SupplierSeed
from jitstock.server.settings import ServerSettings
from tests.server.mqtt_device import HandDevice
from tests.server.server_support import seed, wait_until
from tests.server.webhook_receiver import WebhookContract, WebhookReceiver
from tests.services import free_port, wait_port

UNIT_G = 12.5
TARE_G = 500.0
ADMIN_KEY = "adm_" + "k" * 40
# Short stability window so a pick or refill is published about a second after it happens.
STABILITY_WINDOW_S = 0.4
SITE = "plant1"
BIN = "B1"
SKU = "SKU-1"


@dataclass
class Loop:
    """The running system of one test."""

    app: ServerApp
    url: str
    admin: httpx.Client
    a: WebhookReceiver
    b: WebhookReceiver
    secret_a: str
    secret_b: str
    tmp: Path
    mqtt_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str) -> httpx.Client:
        """An API client with this key."""
        c = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.clients.append(c)
        return c

    def supplier_key(self, supplier: str) -> httpx.Client:
        """A client with a fresh key bound to ``supplier``."""
        r = self.admin.post(
            f"/api/v1/suppliers/{supplier}/keys", json={"name": f"{supplier}-erp"}
        )
        assert r.status_code == 201, r.text
        return self.client(r.json()["key"])

    def orders(self, **where: Any) -> list[Order]:
        """Orders in the state DB (oldest first)."""
        with transaction(self.app.session_factory, readonly=True) as s:
            stmt = select(Order).order_by(Order.created_ms, Order.id)
            for k, v in where.items():
                stmt = stmt.where(getattr(Order, k) == v)
            return list(s.scalars(stmt))

    def place_order(self, bin_id: str = BIN) -> str:
        """Drop a bin to zero in the state DB (as its scale would read: the rule never
        orders on a scale that never reported), let the reorder rule order, and hand
        the order to the dispatcher; its id."""
        with transaction(self.app.session_factory) as s:
            b = reorder.lock_bin(s, bin_id)
            assert b is not None
            b.on_hand = 0
            b.last_seen_ms = self.app.clock.time_ms()
            order = reorder.maybe_reorder(
                s, b, self.app.clock.time_ms(), {"test": True}
            )
            assert order is not None
            oid = order.id
        self.app.dispatcher.wake()
        return oid

    def acknowledged_order(
        self, supplier: str = "A", promise_in_ms: int = 3_600_000
    ) -> tuple[str, httpx.Client, int]:
        """An order placed (:meth:`place_order`), sent, and acknowledged through the API
        by a key of ``supplier``'s with a promise ``promise_in_ms`` after its creation:
        (its id, that supplier's client, the promise)."""
        oid = self.place_order()
        client = self.supplier_key(supplier)
        wait_until(lambda: self.order(oid)["state"] == "sent", what="sent")
        promised = self.order(oid)["created_ms"] + promise_in_ms
        r = client.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": promised})
        assert r.status_code == 200, r.text
        return oid, client, promised

    def order(self, order_id: str) -> dict[str, Any]:
        """An order through the API (admin)."""
        r = self.admin.get(f"/api/v1/orders/{order_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def level(self) -> dict[str, Any]:
        """The bin's live level."""
        return dict(self.admin.get(f"/api/v1/levels/{BIN}").json())

    def wait_order(self, what: str = "an order", n: int = 1) -> list[Order]:
        """Wait until n orders exist."""
        return wait_until(lambda: len(self.orders()) >= n and self.orders(), what=what)


def _deliveries(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [
        r.payload
        for r in list(receiver.received)
        if r.verified and isinstance(r.payload, dict)
    ]


def events_of(
    receiver: WebhookReceiver, kind: str | None = None
) -> list[dict[str, Any]]:
    """Verified lifecycle events a supplier endpoint received (not order.created)."""
    return [
        p
        for p in _deliveries(receiver)
        if p.get("type") != "order.created" and (kind is None or p["type"] == kind)
    ]


def order_webhooks(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """The orders (``data.order``) of the verified order.created webhooks a supplier received."""
    return [
        p["data"]["order"]
        for p in _deliveries(receiver)
        if p.get("type") == "order.created"
    ]


@contextmanager
def supplier_loop(
    tmp: Path,
    mqtt_url: str,
    *,
    order_qty: int = 40,
    reorder_point: int = 20,
    clock: Clock = REAL_CLOCK,
    db_url: str | None = None,
    **settings: Any,
) -> Iterator[Loop]:
    """A seeded server with suppliers A (preferred) and B (fallback) for SKU-1.

    ``db_url``: an empty state DB (the ``db_url`` fixture's, for a test on both
    backends); by default a SQLite file in ``tmp``."""
    secret_a, secret_b = new_webhook_secret(), new_webhook_secret()
    a, b = WebhookReceiver(secret_a), WebhookReceiver(secret_b)
    a.start()
    b.start()
    db_url = db_url or f"sqlite:///{tmp / 'state.db'}"
    seed(
        db_url,
        [BinSeed(BIN, "pi-1", SKU, UNIT_G, TARE_G, reorder_point, order_qty, 400, "A")],
        [
            SupplierSeed("A", "Supplier A", a.url, secret_a),
            SupplierSeed("B", "Supplier B", b.url, secret_b),
        ],
    )
    port = free_port()
    app = ServerApp(
        ServerSettings(
            http_port=port,
            auth="on",
            bootstrap_admin_key=ADMIN_KEY,
            data_dir=tmp,
            db_url=db_url,
            mqtt_url=mqtt_url,
            webhook_backoff_base_s=0.2,
            webhook_backoff_cap_s=0.5,
            supplier_events_poll_s=0.1,
            **{"escalation_interval_s": 3600.0, **settings},
        ),
        clock,
    )
    app.start()
    thread = threading.Thread(target=app.serve, daemon=True)
    thread.start()
    wait_port(port)
    url = f"http://127.0.0.1:{port}"
    contract = WebhookContract.fetch(url)
    a.check_contract(contract)
    b.check_contract(contract)
    admin = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )
    loop = Loop(app, url, admin, a, b, secret_a, secret_b, tmp, mqtt_url)
    for supplier, prio in (("A", 1), ("B", 2)):
        r = admin.put(
            f"/api/v1/suppliers/{supplier}/items",
            json={"sku_id": SKU, "priority": prio, "quoted_lead_time_s": 3600},
        )
        assert r.status_code == 200, r.text
    try:
        yield loop
    finally:
        for c in loop.clients:
            c.close()
        admin.close()
        app.stop()
        thread.join(timeout=10)
        a.stop()
        b.stop()
    # reached only when the test passed: then every delivery must have kept the contract
    a.assert_contract()
    b.assert_contract()


@dataclass
class Floor:
    """The shop floor of a test: the bin's scale and the dock scanner, read by an edge agent."""

    scale: SimulatedScale
    scanner: SimulatedScanner


@contextmanager
def shop_floor(tmp: Path, mqtt_url: str, count: int) -> Iterator[Floor]:
    """A simulated scale for B1 and a dock scanner, read by a real edge agent 'pi-1'."""
    sc = SimulatedScale(
        BIN, unit_weight_g=UNIT_G, count=count, tare_g=TARE_G, workdir=tmp, settle_s=0.3
    )
    scanner = SimulatedScanner(workdir=tmp, name="dock1")
    sc.start()
    scanner.start()
    settings = load_settings(
        None,
        site=SITE,
        agent="pi-1",
        mqtt_url=mqtt_url,
        outbox_path=tmp / "pi-1-outbox.db",
        tick_s=0.05,
        scales=[{"port": sc.port, "bin": BIN}],
        scanners=[{"port": scanner.port, "id": "dock1"}],
        signal={
            "stability_window_s": STABILITY_WINDOW_S,
            "keepalive_s": 30.0,
            "step_g": 2.0,
        },
    )
    agent = Agent(settings)
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        yield Floor(sc, scanner)
    finally:
        agent.stop()
        t.join(timeout=15)
        scanner.stop()
        sc.stop()


@pytest.fixture
def token() -> str:
    """A random suffix for names."""
    return secrets.token_hex(3)


@contextmanager
def plant(
    tmp: Path, mqtt_url: str, *, start: int, **kw: Any
) -> Iterator[tuple[Loop, HandDevice]]:
    """The seeded server and its bin's hand-written MQTT device, showing ``start`` units."""
    with supplier_loop(tmp, mqtt_url, **kw) as loop:
        dev = HandDevice(mqtt_url, SITE, "pi-1", unit_g=UNIT_G, tare_g=TARE_G)
        try:
            dev.count(BIN, start)
            wait_until(lambda: loop.level()["on_hand"] == start, what="level")
            yield loop, dev
        finally:
            dev.close()


def show(loop: Loop, dev: HandDevice, n: int) -> dict[str, Any]:
    """The bin's scale shows ``n`` units; returns the level once the server has it."""
    dev.count(BIN, n)
    return wait_until(
        lambda: (lvl := loop.level())["on_hand"] == n and lvl, what=f"level {n}"
    )
