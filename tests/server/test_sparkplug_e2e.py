"""Issue 17 acceptance, from the outside: a Sparkplug B edge node built with a third-party
library (pysparkplug's EdgeNode, not our code) publishes NBIRTH/DBIRTH/DDATA/DDEATH/NDEATH
to a real Mosquitto; a real jitstock server, with its mappings set through the HTTP API,
follows the mapped bins' levels (an order is placed at the reorder point), their sensor
state and the agent's online state.  A seq gap makes the server publish a rebirth request
(NCMD) that a subscriber sees; a payload that is not protobuf is rejected and counted, and
good data after it is still applied.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pysparkplug as spb
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.server.seed import BinSeed, SupplierSeed
from tests.server.server_support import running_app, seed, wait_until
from tests.waits import WAIT_S

# pysparkplug 0.6 builds its paho client on callback API version 1: its warning, not ours
pytestmark = pytest.mark.filterwarnings(
    "ignore:Callback API version 1 is deprecated:DeprecationWarning"
)

SITE = "plant1"
GROUP = "Plant1"
NODE = "Line1"
DEVICE = "Scale1"
UNIT_G = 10.0
TARE_G = 100.0
B2_UNIT_G = 5.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def grams(parts: int) -> float:
    """The gross weight of B1 holding this many parts."""
    return TARE_G + parts * UNIT_G


def weight(value: float) -> spb.Metric:
    return spb.Metric(
        timestamp=now_ms(),
        name="Gross Weight",
        datatype=spb.DataType.DOUBLE,
        value=value,
    )


def parts(value: int) -> spb.Metric:
    return spb.Metric(
        timestamp=now_ms(), name="Parts", datatype=spb.DataType.UINT32, value=value
    )


def edge_node(port: int, b1_parts: int, b2_parts: int) -> spb.EdgeNode:
    """Line1 with its scale indicator Scale1, connected: NBIRTH then DBIRTH (seq 0, 1)."""
    client = spb.Client(client_id=f"line1-{time.monotonic_ns()}")
    node = spb.EdgeNode(
        GROUP,
        NODE,
        metrics=[
            spb.Metric(
                timestamp=now_ms(),
                name="Uptime",
                datatype=spb.DataType.INT64,
                value=1,
            )
        ],
        client=client,
    )
    node.register(spb.Device(DEVICE, [weight(grams(b1_parts)), parts(b2_parts)]))
    node.connect("127.0.0.1", port=port, blocking=False)
    return node


def update_device(node: spb.EdgeNode, metrics: list[spb.Metric]) -> None:
    """EdgeNode.update_device as pysparkplug 0.3.0 means it: 0.3.0 leaves the device id out
    of the DDATA topic (later releases, which pip cannot install beside paho-mqtt 2, fix
    it).  The edge node's own seq counter numbers the message, as update_device does."""
    topic = spb.Topic(
        message_type=spb.MessageType.DDATA,
        group_id=GROUP,
        edge_node_id=NODE,
        device_id=DEVICE,
    )
    payload = spb.DData(now_ms(), seq=node._seq, metrics=tuple(metrics))
    node._client.publish(
        spb.Message(
            topic=topic, payload=payload, qos=spb.QoS.AT_MOST_ONCE, retain=False
        ),
        include_dtypes=True,
    )


def crash(node: spb.EdgeNode) -> None:
    """The gateway loses power: no DISCONNECT, so the broker publishes the NDEATH will
    that EdgeNode registered at connect (with the bdSeq of its NBIRTH)."""
    paho = node._client._client
    paho.loop_stop()
    sock = paho.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class CommandWatch:
    """A subscriber on the group's NCMD topics: what the server asks the edge nodes."""

    def __init__(self, port: int) -> None:
        self.commands: list[tuple[str, spb.NCmd]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ncmd-watch")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(
            f"spBv1.0/{GROUP}/NCMD/#", qos=0
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.commands.append((msg.topic, spb.NCmd.decode(bytes(msg.payload))))

    def rebirths(self) -> list[str]:
        """Topics of the rebirth requests seen."""
        with self._lock:
            return [
                topic
                for topic, cmd in self.commands
                if any(
                    m.name == "Node Control/Rebirth" and m.value is True
                    for m in cmd.metrics
                )
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_raw(port: int, topic: str, payload: bytes) -> None:
    """One message from an unrelated client (like mosquitto_pub)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="raw-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def metric(client: httpx.Client, name: str) -> float:
    """One sample of /metrics (0 if absent)."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def rejected(client: httpx.Client, reason: str) -> float:
    return metric(client, f'jitstock_rejected_batches_total{{reason="{reason}"}}')


@pytest.fixture(autouse=True)
def _paho2_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    """pysparkplug 0.6.1's Client still calls paho 1's message_retry_set, which paho 2
    removed (it never retried QoS>0 publishes in a live session anyway): a no-op stands in.
    The server itself uses only pysparkplug's payload classes."""
    monkeypatch.setattr(
        mqtt.Client, "message_retry_set", lambda self, retry: None, raising=False
    )


@pytest.fixture
def plant(tmp_path: Path, mosquitto: Any) -> Iterator[tuple[httpx.Client, int]]:
    """B1 (by weight) and B2 (by count) fed by agent gw-1; a real server following Plant1."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed("B1", "gw-1", "SKU-1", UNIT_G, TARE_G, 20, 40, 200, "S1"),
            BinSeed("B2", "gw-1", "SKU-2", B2_UNIT_G, 0.0, 5, 40, 200, "S1"),
        ],
        [SupplierSeed("S1", "Supplier 1", None, None, mqtt_orders=True)],
        site=SITE,
    )
    with (
        running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            sparkplug_groups=GROUP,
            sparkplug_rebirth_interval_s=0.5,
        ) as (_app, url),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for metric_name, bin_id, unit in (
            ("Gross Weight", "B1", "grams"),
            ("Parts", "B2", "count"),
        ):
            r = client.put(
                "/api/v1/sparkplug/mappings",
                json={
                    "group_id": GROUP,
                    "edge_node": NODE,
                    "device": DEVICE,
                    "metric": metric_name,
                    "bin_id": bin_id,
                    "unit": unit,
                },
            )
            assert r.status_code == 201, r.text
        port = int(mosquitto.url.rsplit(":", 1)[1])

        # The server's Sparkplug session subscribes after its HTTP port is up, and a BIRTH
        # published before that is lost (this EdgeNode ignores rebirth requests): wait until
        # a message on the group reaches the server (counted: no mapping names "probe").
        def probe_seen() -> bool:
            publish_raw(port, f"spBv1.0/{GROUP}/NDATA/probe", b"")
            return rejected(client, "sparkplug_unmapped_node") >= 1

        wait_until(probe_seen, interval=0.5, what="the server subscribed to Plant1")
        yield client, port


def level(client: httpx.Client, bin_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/levels/{bin_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def node_status(client: httpx.Client) -> tuple[Any, ...]:
    """Line1 as GET /api/v1/sparkplug/status shows it."""
    status = client.get("/api/v1/sparkplug/status").json()
    assert (status["enabled"], status["groups"]) == (True, [GROUP])
    (node,) = status["nodes"]
    return (
        node["online"],
        node["in_step"],
        node["devices_online"],
        node["devices_offline"],
    )


def agent_state(client: httpx.Client) -> str:
    state: str = client.get("/api/v1/agents/gw-1").json()["state"]
    return state


def test_a_third_party_edge_node_drives_levels_online_state_and_rebirth(
    plant: tuple[httpx.Client, int],
) -> None:
    client, port = plant
    watch = CommandWatch(port)
    node = edge_node(port, b1_parts=50, b2_parts=30)
    try:
        # NBIRTH + DBIRTH: current values become levels, the agent is online
        wait_until(
            lambda: (
                level(client, "B1")["on_hand"] == 50
                and level(client, "B2")["on_hand"] == 30
            ),
            what="levels from the BIRTH",
        )
        wait_until(lambda: agent_state(client) == "online", what="gw-1 online")
        assert level(client, "B1")["sensor_ok"] is True
        assert node_status(client) == (True, True, [DEVICE], [])

        # DDATA (by name): B1 down to 15 parts, at or below its reorder point 20: an order
        update_device(node, [weight(grams(15))])
        wait_until(lambda: level(client, "B1")["on_hand"] == 15, what="DDATA applied")
        orders = wait_until(
            lambda: client.get("/api/v1/orders", params={"bin_id": "B1"}).json(),
            what="an order for B1",
        )
        assert orders[0]["bin_id"] == "B1"
        events = client.get("/api/v1/bins/B1/events").json()["events"]
        assert any(e["kind"] == "consumption" and e["delta"] == -35 for e in events)

        # not protobuf: rejected and counted; the next good DDATA still applies
        publish_raw(port, f"spBv1.0/{GROUP}/DDATA/{NODE}/{DEVICE}", b"not protobuf")
        wait_until(
            lambda: rejected(client, "sparkplug_malformed") == 1.0,
            what="the bad payload counted",
        )
        update_device(node, [weight(grams(12)), parts(7)])
        wait_until(
            lambda: (
                level(client, "B1")["on_hand"] == 12
                and level(client, "B2")["on_hand"] == 7
            ),
            what="good DDATA after the bad payload",
        )

        # DDEATH: the device's bins lose their sensor, the node (agent) stays online
        node.deregister(DEVICE)
        b1 = wait_until(
            lambda: (lv := level(client, "B1"))["sensor_ok"] is False and lv,
            what="B1's sensor offline after DDEATH",
        )
        assert "DDEATH" in b1["sensor_fault"]
        assert level(client, "B2")["sensor_ok"] is False
        assert agent_state(client) == "online"
        assert node_status(client) == (True, True, [], [DEVICE])
        node.register(spb.Device(DEVICE, [weight(grams(11)), parts(7)]))  # DBIRTH
        wait_until(
            lambda: (
                level(client, "B1")["sensor_ok"] is True
                and level(client, "B1")["on_hand"] == 11
            ),
            what="sensor back and level from the new DBIRTH",
        )

        # a seq gap (messages lost): not applied, a rebirth request to Line1
        gap = spb.Client(client_id="gap-publisher")
        gap.connect("127.0.0.1", port=port, blocking=False)
        try:
            wait_until(lambda: gap._client.is_connected(), what="gap publisher up")
            gap.publish(
                spb.Message(
                    topic=spb.Topic(
                        group_id=GROUP,
                        message_type=spb.MessageType.DDATA,
                        edge_node_id=NODE,
                        device_id=DEVICE,
                    ),
                    payload=spb.DData(now_ms(), seq=200, metrics=(weight(grams(3)),)),
                    qos=spb.QoS.AT_MOST_ONCE,
                    retain=False,
                ),
                include_dtypes=True,
            )
        finally:
            gap.disconnect()
        wait_until(
            lambda: f"spBv1.0/{GROUP}/NCMD/{NODE}" in watch.rebirths(),
            what="a rebirth request after the seq gap",
        )
        assert rejected(client, "sparkplug_seq_gap") == 1.0
        assert level(client, "B1")["on_hand"] == 11
        assert node_status(client)[:2] == (
            True,
            False,
        )  # alive, waiting for the rebirth

        # NDEATH (the broker's will after a crash): the agent is offline, its sensors too
        crash(node)
        wait_until(lambda: agent_state(client) == "offline", what="gw-1 offline")
        assert "NDEATH" in level(client, "B1")["sensor_fault"]
        assert node_status(client) == (False, False, [], [])

        # the node comes back (what it does on a rebirth): in step, online, values applied
        node = edge_node(port, b1_parts=9, b2_parts=6)
        wait_until(
            lambda: (
                agent_state(client) == "online"
                and level(client, "B1")["on_hand"] == 9
                and level(client, "B1")["sensor_ok"] is True
            ),
            what="gw-1 back online with the rebirth's values",
        )
        update_device(node, [parts(4)])
        wait_until(lambda: level(client, "B2")["on_hand"] == 4, what="DDATA in step")
    finally:
        node.disconnect()
        watch.close()
