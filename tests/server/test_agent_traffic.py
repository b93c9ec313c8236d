"""Issue 9, cases 9 and 10, from the outside: a real server on a real Mosquitto, devices
impersonated with raw MQTT (paho, payloads written by hand from docs/protocol.md).

- A dock scanner station registered with POST /api/v1/agents (no bins, receive_bins
  ["*"]) publishes a label scan: accepted, and the order is received.
- A PLC that publishes readings but never a status is online (or unknown before its
  first reading), never offline, and raises no agent_offline alert; an agent whose
  last will fires, or one that falls silent, does.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.server.seed import BinSeed, SupplierSeed
from tests.server.server_support import running_app, seed, wait_until
from tests.waits import WAIT_S

SITE = "plant1"
UNIT_G = 10.0
# A silent agent is offline after this long; readings of the "PLC" come much faster.
SILENT_S = 5.0
PLC_PERIOD_S = 0.3
# Generous: a loaded 2-core CI box.
DEADLINE_S = WAIT_S


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Device:
    """A device speaking protocol v1 with hand-written JSON (like mosquitto_pub)."""

    def __init__(
        self, mqtt_url: str, agent: str, *, will: bool = False, keepalive: int = 60
    ) -> None:
        self.agent = agent
        self.seq = 0
        port = int(mqtt_url.rsplit(":", 1)[1])
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{agent}-{secrets.token_hex(3)}",
        )
        if will:
            self.client.will_set(
                self.topic("status"),
                '{"state":"offline","version":"sh","ts_ms":0,"sensors":[]}',
                qos=1,
                retain=True,
            )
        self.client.connect("127.0.0.1", port, keepalive=keepalive)
        self.client.loop_start()

    def topic(self, kind: str) -> str:
        return f"jit/v1/{SITE}/{self.agent}/{kind}"

    def publish(self, kind: str, payload: str, *, retain: bool = False) -> None:
        info = self.client.publish(self.topic(kind), payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def reading(self, bin_id: str, grams: float) -> None:
        self.seq += 1
        t = now_ms()
        self.publish(
            "readings",
            f'{{"agent":"{self.agent}","seq":{self.seq},"sent_ms":{t},'
            f'"readings":[{{"bin":"{bin_id}","ts_ms":{t},"grams":{grams},"stable":true}}]}}',
        )

    def scan(self, code: str) -> None:
        self.seq += 1
        t = now_ms()
        self.publish(
            "scans",
            f'{{"agent":"{self.agent}","seq":{self.seq},"sent_ms":{t},'
            f'"scans":[{{"scanner":"gun-1","ts_ms":{t},"code":"{code}"}}]}}',
        )

    def online(self) -> None:
        self.publish(
            "status",
            f'{{"state":"online","version":"sh","ts_ms":{now_ms()},"sensors":[]}}',
            retain=True,
        )

    def crash(self) -> None:
        """Vanish without a DISCONNECT: the broker publishes the last will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def server(tmp_path: Path, mosquitto: Any) -> Iterator[tuple[httpx.Client, Any]]:
    """A plant: B1 fed by pi-1, supplier S1 taking orders over MQTT; a real server."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [BinSeed("B1", "pi-1", "SKU-1", UNIT_G, 0.0, 20, 40, 200, "S1")],
        [SupplierSeed("S1", "Supplier 1", None, None, mqtt_orders=True)],
        site=SITE,
    )
    with (
        running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            alert_check_s=0.3,
            alert_agent_silent_s=SILENT_S,
        ) as (app, url),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client, mosquitto


def metric(client: httpx.Client, name: str) -> float:
    """One sample of /metrics (0 if absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


UNKNOWN_AGENT = 'jitstock_rejected_batches_total{reason="unknown_agent"}'


def agent_alerts(client: httpx.Client, agent: str) -> list[dict[str, Any]]:
    alerts = client.get("/api/v1/alerts", params={"kind": "agent_offline"}).json()
    return [a for a in alerts if a["entity"] == f"agent:{agent}"]


def test_a_dock_scanner_without_bins_receives_an_order(
    server: tuple[httpx.Client, Any],
) -> None:
    client, broker = server
    pi = Device(broker.url, "pi-1")
    dock = Device(broker.url, "dock1")
    try:
        pi.reading("B1", 10 * UNIT_G)  # 10 left, reorder point 20: an order
        orders = wait_until(
            lambda: client.get("/api/v1/orders").json(), DEADLINE_S, what="an order"
        )
        order_id = orders[0]["id"]

        # not registered yet: refused as before
        dock.scan(f"JSORD:{order_id}")
        wait_until(
            lambda: metric(client, UNKNOWN_AGENT) == 1.0,
            DEADLINE_S,
            what="the scan refused as unknown_agent",
        )

        r = client.post(
            "/api/v1/agents",
            json={"id": "dock1", "site_id": SITE, "receive_bins": ["*"]},
        )
        assert r.status_code == 201, r.text
        dock.seq = 0  # the refused batch never advanced the server's cursor
        dock.scan(f"JSORD:{order_id}")
        receipts = wait_until(
            lambda: client.get(f"/api/v1/orders/{order_id}/receipts").json(),
            DEADLINE_S,
            what="the order received by the dock scan",
        )
        assert [(x["method"], x["qty"], x["actor"]) for x in receipts] == [
            ("scan", 40, "scanner:dock1/gun-1")
        ]
        assert metric(client, UNKNOWN_AGENT) == 1.0
        dock_agent = client.get("/api/v1/agents/dock1").json()
        assert (dock_agent["state"], dock_agent["reported_state"]) == ("online", None)
        assert dock_agent["bins"] == 0
    finally:
        pi.close()
        dock.close()


def test_a_plc_without_status_is_never_offline_a_last_will_and_silence_are(
    server: tuple[httpx.Client, Any],
) -> None:
    client, broker = server
    r = client.post("/api/v1/agents", json={"id": "plc-1", "site_id": SITE})
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/bins",
        json={
            "id": "P1",
            "site_id": SITE,
            "agent_id": "plc-1",
            "sku_id": "SKU-1",
            "reorder_point": 0,
        },
    )
    assert r.status_code == 201, r.text
    assert client.get("/api/v1/agents/plc-1").json()["state"] == "unknown"
    r = client.post("/api/v1/agents", json={"id": "edge-9", "site_id": SITE})
    assert r.status_code == 201, r.text

    plc = Device(broker.url, "plc-1")
    pi = Device(broker.url, "pi-1")
    edge = Device(broker.url, "edge-9", will=True, keepalive=5)
    try:
        # pi-1 speaks once and then falls silent: the periodic check must alert it
        pi.reading("B1", 100 * UNIT_G)
        edge.online()
        edge.reading("B1", 100 * UNIT_G)  # not its bin: counted, but it is traffic

        alive = [edge]  # edge-9 keeps saying online until it crashes

        def plc_reads_until(condition: Any, what: str) -> Any:
            deadline = time.monotonic() + DEADLINE_S
            while True:
                plc.reading("P1", 50 * UNIT_G)
                for device in alive:
                    device.online()
                value = condition()
                if value:
                    return value
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(PLC_PERIOD_S)

        plc_reads_until(
            lambda: client.get("/api/v1/agents/plc-1").json()["state"] == "online",
            "the PLC online",
        )
        assert client.get("/api/v1/agents/edge-9").json()["state"] == "online"

        silent = plc_reads_until(
            lambda: agent_alerts(client, "pi-1"), "the silent agent's alert"
        )
        assert "silent for" in silent[0]["message"], silent

        alive.clear()
        edge.crash()
        will = plc_reads_until(
            lambda: agent_alerts(client, "edge-9"), "the last will's alert"
        )
        assert "reports offline (last will" in will[0]["message"], will
        edge_agent = client.get("/api/v1/agents/edge-9").json()
        assert (edge_agent["state"], edge_agent["reported_state"]) == (
            "offline",
            "offline",
        )

        # the PLC's readings flowed throughout: no alert, never offline
        plc_agent = client.get("/api/v1/agents/plc-1").json()
        assert plc_agent["state"] == "online"
        assert plc_agent["reported_state"] is None
        assert plc_agent["online"] is True
        assert agent_alerts(client, "plc-1") == []
        tiles = {t["id"]: t for t in client.get("/api/v1/floor").json()["tiles"]}
        assert tiles["P1"]["status"] != "offline"
    finally:
        plc.close()
        pi.close()
        edge.close()


def test_a_deleted_agent_is_refused_again(server: tuple[httpx.Client, Any]) -> None:
    client, broker = server
    assert (
        client.post("/api/v1/agents", json={"id": "dock2", "site_id": SITE}).status_code
        == 201
    )
    assert client.delete("/api/v1/agents/dock2").status_code == 204
    dock = Device(broker.url, "dock2")
    try:
        dock.scan("4006381333931")
        wait_until(
            lambda: metric(client, UNKNOWN_AGENT) == 1.0,
            DEADLINE_S,
            what="the deleted agent's scan refused",
        )
        assert "dock2" not in [a["id"] for a in client.get("/api/v1/agents").json()]
    finally:
        dock.close()


def test_a_status_of_an_unknown_agent_is_counted_and_stored_once_it_is_known(
    server: tuple[httpx.Client, Any],
) -> None:
    """An outside try published a status as an agent nobody configured: it vanished
    without a count.  It is counted as unknown_agent; once the agent exists (even before
    the registry's next reload) its status is stored."""
    client, broker = server
    stranger = Device(broker.url, "stranger-1")
    try:
        stranger.online()
        wait_until(
            lambda: metric(client, UNKNOWN_AGENT) == 1.0,
            DEADLINE_S,
            what="the stranger's status counted as unknown_agent",
        )
        assert "stranger-1" not in [
            a["id"] for a in client.get("/api/v1/agents").json()
        ]
        r = client.post("/api/v1/agents", json={"id": "stranger-1", "site_id": SITE})
        assert r.status_code == 201, r.text
        stranger.online()
        wait_until(
            lambda: (
                client.get("/api/v1/agents/stranger-1").json().get("online") is True
            ),
            DEADLINE_S,
            what="the configured agent's status stored",
        )
        assert metric(client, UNKNOWN_AGENT) == 1.0
    finally:
        stranger.close()


class TileStream:
    """The dashboard's event stream, read in a thread: the `tiles` events' tiles by bin."""

    def __init__(self, url: str) -> None:
        self.tiles: list[dict[str, Any]] = []
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=300))
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        event = ""
        try:
            with self._client.stream("GET", "/api/v1/stream") as r:
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "tiles":
                        self.tiles.extend(
                            json.loads(line.removeprefix("data: "))["tiles"]
                        )
        except httpx.HTTPError:
            pass  # the server stopped at the end of the test

    def last_status(self, bin_id: str) -> str | None:
        """The status of the newest tile pushed for ``bin_id``."""
        statuses = [t["status"] for t in self.tiles if t["id"] == bin_id]
        return statuses[-1] if statuses else None

    def close(self) -> None:
        self._client.close()


def test_a_plc_that_falls_silent_shows_offline_on_its_tile_and_level_live(
    server: tuple[httpx.Client, Any],
) -> None:
    """No last will, no status: silence alone turns its bins' tiles offline, pushed to
    open dashboards without a reload, and its next reading turns them back."""
    client, broker = server
    r = client.post("/api/v1/agents", json={"id": "plc-2", "site_id": SITE})
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/bins",
        json={
            "id": "P2",
            "site_id": SITE,
            "agent_id": "plc-2",
            "sku_id": "SKU-1",
            "reorder_point": 0,
        },
    )
    assert r.status_code == 201, r.text

    def tile() -> dict[str, Any]:
        tiles = client.get("/api/v1/floor").json()["tiles"]
        return next(t for t in tiles if t["id"] == "P2")

    stream = TileStream(str(client.base_url))
    plc = Device(broker.url, "plc-2")
    try:
        plc.reading("P2", 50 * UNIT_G)
        wait_until(
            lambda: client.get("/api/v1/levels/P2").json()["on_hand"] == 50,
            what="the PLC's first reading applied",
            timeout=DEADLINE_S,
        )
        assert tile()["status"] != "offline"
        assert client.get("/api/v1/levels/P2").json()["agent_online"] is True

        # it stops: after SILENT_S the alert monitor's pass finds it, and every view agrees
        wait_until(
            lambda: stream.last_status("P2") == "offline",
            what="an offline tile pushed on the event stream",
            timeout=DEADLINE_S,
        )
        assert tile()["status"] == "offline"
        assert client.get("/api/v1/levels/P2").json()["agent_online"] is False
        assert client.get("/api/v1/agents/plc-2").json()["state"] == "offline"
        assert agent_alerts(client, "plc-2"), "the silence is alerted too"

        # it speaks again: the tile comes back with the reading, pushed as well
        plc.reading("P2", 49 * UNIT_G)
        wait_until(
            lambda: stream.last_status("P2") not in (None, "offline"),
            what="the tile back online on the event stream",
            timeout=DEADLINE_S,
        )
        assert tile()["status"] != "offline"
        assert client.get("/api/v1/levels/P2").json()["agent_online"] is True
    finally:
        plc.close()
        stream.close()
