"""A live plant for the browser tests: real Mosquitto, simulated scales read by real edge
agents, a jitstock server with API keys on, a supplier webhook receiver, and headless Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from jitstock.edge.agent import Agent
from jitstock.edge.settings import load_settings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.server.app import ServerApp
from jitstock.server.db.models import Bin
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import transaction
from jitstock.server.seed import BinSeed, SupplierSeed
from jitstock.server.settings import ServerSettings
from tests.server.server_support import seed, wait_until
from tests.server.webhook_receiver import WebhookReceiver
from tests.services import Mosquitto, find_binary, free_port, wait_port
from tests.waits import BROWSER_WAIT_MS

UNIT_G = 12.5
TARE_G = 500.0
# A short stability window so a pick is published ~0.5 s after it happens.
STABILITY_WINDOW_S = 0.4
ADMIN_KEY = "test-admin-key-0123456789abcdef0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
# bin -> (agent, start count, reorder point, order qty, capacity)
BINS = {
    "B1": ("pi-1", 100, 90, 60, 160),
    "B2": ("pi-1", 40, 10, 30, 60),
    "B3": ("pi-2", 50, 10, 30, 60),
}


@dataclass
class Plant:
    """The running plant: server URL and app, scales by bin, agents by id, keys."""

    tmp: Path
    app: ServerApp
    url: str
    mqtt_url: str
    scales: dict[str, SimulatedScale]
    viewer_key: str = ""
    agents: dict[str, tuple[Agent, threading.Thread]] = field(default_factory=dict)

    def api(
        self, method: str, path: str, key: str = ADMIN_KEY, **kw: Any
    ) -> httpx.Response:
        """A request to the server's API with a key."""
        return httpx.request(
            method, self.url + path, headers={"X-API-Key": key}, timeout=10, **kw
        )

    def level(self, bin_id: str) -> dict[str, Any]:
        """The bin's live level from the API."""
        return self.api("GET", f"/api/v1/levels/{bin_id}").json()

    def start_agent(self, agent: str) -> None:
        """Start a real edge agent reading this agent's simulated scales."""
        scales = [
            {"port": s.port, "bin": b}
            for b, s in self.scales.items()
            if BINS[b][0] == agent
        ]
        settings = load_settings(
            None,
            site="plant1",
            agent=agent,
            mqtt_url=self.mqtt_url,
            outbox_path=self.tmp / f"{agent}-outbox.db",
            tick_s=0.05,
            scales=scales,
            signal={
                "stability_window_s": STABILITY_WINDOW_S,
                "keepalive_s": 30.0,
                "step_g": 2.0,
            },
        )
        a = Agent(settings)
        t = threading.Thread(target=a.run, daemon=True)
        t.start()
        self.agents[agent] = (a, t)

    def stop_agent(self, agent: str) -> None:
        """Stop an edge agent (it publishes its offline status on the way out)."""
        a, t = self.agents.pop(agent)
        a.stop()
        t.join(timeout=15)


@contextmanager
def _server(tmp: Path, db_url: str, mqtt_url: str) -> Iterator[tuple[ServerApp, str]]:
    port = free_port()
    app = ServerApp(
        ServerSettings(
            data_dir=tmp,
            db_url=db_url,
            mqtt_url=mqtt_url,
            http_port=port,
            auth="on",
            bootstrap_admin_key=ADMIN_KEY,
            alert_check_s=1.0,
            webhook_backoff_base_s=0.2,
            webhook_backoff_cap_s=0.5,
        )
    )
    app.start()
    thread = threading.Thread(target=app.serve, daemon=True)
    thread.start()
    wait_port(port)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        app.stop()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """Two edge agents, three scales, one supplier, a server with keys on; every bin reported."""
    tmp = tmp_path_factory.mktemp("web-plant")
    (tmp / "mosquitto").mkdir()
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret)
    receiver.start()
    db_url = f"sqlite:///{tmp / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed(
                b,
                agent,
                f"SKU-{b}",
                UNIT_G,
                TARE_G,
                rop,
                qty,
                cap,
                "S1",
                area="Assembly",
                line=f"Line {agent[-1]}",
            )
            for b, (agent, _n, rop, qty, cap) in BINS.items()
        ],
        [SupplierSeed("S1", "Supplier One", receiver.url, secret)],
    )
    scales: dict[str, SimulatedScale] = {}
    try:
        for b, (_agent, n, *_rest) in BINS.items():
            s = SimulatedScale(
                b,
                unit_weight_g=UNIT_G,
                count=n,
                tare_g=TARE_G,
                workdir=tmp,
                settle_s=0.3,
            )
            s.start()
            scales[b] = s
        with _server(tmp, db_url, broker.url) as (app, url):
            # a manual min/max pins the reorder points the tests reason about (no learned policy yet)
            with transaction(app.session_factory) as s:
                for b, (_a, _n, rop, qty, _cap) in BINS.items():
                    s.execute(
                        update(Bin)
                        .where(Bin.id == b)
                        .values(manual_min=rop, manual_max=rop + qty)
                    )
            app.registry.reload()
            p = Plant(tmp, app, url, broker.url, scales)
            created = p.api(
                "POST", "/api/v1/keys", json={"name": "line-manager", "role": "viewer"}
            )
            p.viewer_key = created.json()["key"]
            p.start_agent("pi-1")
            p.start_agent("pi-2")
            for b, (_a, n, *_r) in BINS.items():
                wait_until(
                    lambda b=b, n=n: (
                        p.level(b).get("on_hand") == n and p.level(b)["last_seen_ms"]
                    ),
                    what=f"{b} at {n}",
                )
            yield p
            for agent in list(p.agents):
                p.stop_agent(agent)
    finally:
        for s in scales.values():
            s.stop()
        receiver.stop()
        broker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    exe = find_binary("chromium", CHROMIUM)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser: Any, plant: Any, key: str = ADMIN_KEY, path: str = "/") -> Any:
    """A tablet-sized page signed in with ``key`` through the sign-in form (session cookie)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(plant.url + path)
    sign_in(page, key=key)
    return page


def sign_in(
    page: Any, *, key: str | None = None, user: str = "", password: str = ""
) -> None:
    """Fill the page's sign-in form (an API key, or user and password) and wait until it is gone."""
    form = page.locator("#signin")
    form.wait_for(state="visible", timeout=BROWSER_WAIT_MS)
    if key is not None:
        page.fill("#signin-key", key)
    else:
        page.fill("#signin-user", user)
        page.fill("#signin-pass", password)
    page.click("#signin-form button[type=submit]")
    form.wait_for(state="hidden", timeout=BROWSER_WAIT_MS)
