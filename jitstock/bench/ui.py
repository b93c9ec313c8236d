"""`jitstock bench ui`: the dashboard with 5,000 bins in headless Chromium.

A real server (SQLite state, SQLite history) on a private Mosquitto, 5,000 bins
on 100 agents, every bin with a first reading; then Playwright drives Debian's
Chromium: the floor view's first render (navigation start to every tile
painted) and live updates (an MQTT reading published to the tile showing the new
count, measured on the same wall clock), several times each.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol
from jitstock.bench.services import Mosquitto, free_port, wait_port

AGENTS = 100
BINS_PER_AGENT = 50
QUICK_BINS_PER_AGENT = 10
RENDERS = 5
UPDATES = 20
UNIT_G = 10.0
SITE = "plant1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the UI benchmark; returns the numbers."""
    from playwright.sync_api import sync_playwright

    from jitstock.server.app import ServerApp
    from jitstock.server.seed import BinSeed, seed_plant
    from jitstock.server.settings import ServerSettings

    per_agent = (
        QUICK_BINS_PER_AGENT if getattr(args, "quick", False) else BINS_PER_AGENT
    )
    n_bins = AGENTS * per_agent
    workdir = Path(tempfile.mkdtemp(prefix="jitstock-bench-ui-"))
    (workdir / "mosquitto").mkdir()
    broker = Mosquitto(workdir / "mosquitto")
    broker.start()
    port = free_port()
    app = ServerApp(
        ServerSettings(
            data_dir=workdir,
            db_url=f"sqlite:///{workdir / 'state.db'}",
            mqtt_url=broker.url,
            http_port=port,
            auth="off",
        )
    )
    seeds = [
        BinSeed(
            f"A{a:03d}-B{i:02d}",
            f"agent{a:03d}",
            f"SKU-{(a * per_agent + i) % 800:04d}",
            UNIT_G,
            0.0,
            20,
            40,
            100,
            None,
            area=f"Area {a % 8}",
            line=f"Line {a % 25}",
        )
        for a in range(AGENTS)
        for i in range(per_agent)
    ]
    seed_plant(app.session_factory, SITE, seeds)
    app.registry.reload()
    app.start()
    server = threading.Thread(target=app.serve, daemon=True)
    server.start()
    wait_port(port)
    url = f"http://127.0.0.1:{port}/"
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ui")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    seq: dict[str, int] = {}

    def publish(agent: str, bins: list[str], count: int) -> None:
        seq[agent] = seq.get(agent, 0) + 1
        now = time.time_ns() // 1_000_000
        readings = tuple(protocol.Reading(b, now, count * UNIT_G, True) for b in bins)
        payload = protocol.encode_readings(
            protocol.ReadingsBatch(agent, seq[agent], now, readings)
        )
        pub.publish(
            protocol.agent_topic(SITE, agent, "readings"), payload, qos=1
        ).wait_for_publish(5)

    result: dict[str, Any] = {"bins": n_bins}
    try:
        by_agent: dict[str, list[str]] = {}
        for s in seeds:
            by_agent.setdefault(s.agent, []).append(s.id)
        for agent, bins in by_agent.items():
            status = protocol.Status("online", "bench", time.time_ns() // 1_000_000, ())
            pub.publish(
                protocol.agent_topic(SITE, agent, "status"),
                protocol.encode_status(status),
                qos=1,
                retain=True,
            )
            publish(agent, bins, 60)
        last = seeds[-1].id
        deadline = time.monotonic() + 60
        while app.registry.on_hand(last) != 60 and time.monotonic() < deadline:
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            renders = []
            for _ in range(RENDERS):
                page.goto(url)
                page.wait_for_function("() => window.__floorRendered", timeout=120_000)
                renders.append(page.evaluate("() => window.__floorRendered"))
                assert page.locator(".tile").count() == n_bins
            page.wait_for_function(
                "() => document.querySelector('#live.on')", timeout=30_000
            )
            updates = []
            target_agent, target_bins = "agent050", by_agent["agent050"]
            for k in range(UPDATES):
                bin_id = target_bins[k % len(target_bins)]
                count = 30 + k
                page.evaluate(
                    """([id, want]) => { window.__seenAt = 0;
                      const el = document.querySelector(`.tile[data-bin="${id}"] .t-count`);
                      const obs = new MutationObserver(() => { if (el.textContent.startsWith(String(want)) && !window.__seenAt) { window.__seenAt = Date.now(); obs.disconnect(); } });
                      obs.observe(el, {childList: true, characterData: true, subtree: true}); }""",
                    [bin_id, count],
                )
                sent = time.time_ns() / 1e6
                publish(target_agent, [bin_id], count)
                page.wait_for_function("() => window.__seenAt", timeout=10_000)
                updates.append(page.evaluate("() => window.__seenAt") - sent)
                time.sleep(0.2)
            browser.close()
        result.update(
            {
                "first_render_ms_median": round(statistics.median(renders), 1),
                "first_render_ms_max": round(max(renders), 1),
                "live_update_ms_median": round(statistics.median(updates), 1),
                "live_update_ms_p95": round(_percentile(updates, 0.95), 1),
                "live_update_ms_max": round(max(updates), 1),
                "renders": RENDERS,
                "updates": UPDATES,
                "live_update_ms_all": " ".join(f"{u:.0f}" for u in updates),
            }
        )
    finally:
        pub.loop_stop()
        pub.disconnect()
        app.stop()
        server.join(timeout=10)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return result
