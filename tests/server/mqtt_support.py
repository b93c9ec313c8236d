"""Publishing raw MQTT as agents do, and watching a real server apply it (poison and fuzz tests)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.server.app import ServerApp
from jitstock.server.seed import BinSeed
from tests.server.server_support import running_app, wait_until

SITE = "plant1"
UNIT_G = 10.0
TARE_G = 100.0
# Generous: a busy 2-core machine runs six test suites at once; conditions are polled.
DEADLINE_S = 60.0


def bin_seed(bin_id: str, agent: str) -> BinSeed:
    """A bin of 10 g parts on a 100 g tare, never reordering (reorder point 0)."""
    return BinSeed(bin_id, agent, "SKU-" + bin_id, UNIT_G, TARE_G, 0, 10, 10_000, None)


def now_ms() -> int:
    """Wall-clock ms, the wire's time base."""
    return time.time_ns() // 1_000_000


def readings_payload(
    agent: str, seq: int, bin_id: str, grams: float, ts: int | None = None
) -> bytes:
    """One readings batch with one stable reading."""
    t = now_ms() if ts is None else ts
    return orjson.dumps(
        {
            "agent": agent,
            "seq": seq,
            "sent_ms": t,
            "readings": [{"bin": bin_id, "ts_ms": t, "grams": grams, "stable": True}],
        }
    )


def topic(agent: str, kind: str, site: str = SITE) -> str:
    """An agent topic."""
    return f"jit/v1/{site}/{agent}/{kind}"


class Publisher:
    """A paho client publishing at QoS 1 as any agent (an open test broker has no ACL)."""

    def __init__(self, mqtt_url: str) -> None:
        port = int(mqtt_url.rsplit(":", 1)[1])
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-pub-{secrets.token_hex(3)}"
        )
        self.client.max_inflight_messages_set(200)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._last: mqtt.MQTTMessageInfo | None = None

    def send(self, topic: str, payload: bytes | str, *, wait: bool = True) -> None:
        """Publish at QoS 1; with wait, until the broker has it (PUBACK)."""
        info = self.client.publish(topic, payload, qos=1)
        self._last = info
        if wait:
            info.wait_for_publish(DEADLINE_S)

    def flush(self) -> None:
        """Wait until everything published so far has reached the broker."""
        if self._last is not None:
            self._last.wait_for_publish(DEADLINE_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def publisher(mqtt_url: str) -> Iterator[Publisher]:
    """A connected Publisher, closed afterwards."""
    p = Publisher(mqtt_url)
    try:
        yield p
    finally:
        p.close()


@contextmanager
def server(
    tmp: Path, db_url: str, mqtt_url: str, **settings: Any
) -> Iterator[tuple[ServerApp, str]]:
    """A real server (in this process) on a state DB, connected to the broker."""
    with running_app(data_dir=tmp, db_url=db_url, mqtt_url=mqtt_url, **settings) as (
        app,
        base,
    ):
        assert app.mqtt.wait_connected(DEADLINE_S), "server never connected to MQTT"
        yield app, base


def metric(app: ServerApp, name: str, **labels: str) -> float:
    """A sample of the server's Prometheus registry (0 when never set)."""
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


def on_hand(base: str, bin_id: str) -> int | None:
    """A bin's count through the API."""
    r = httpx.get(f"{base}/api/v1/levels/{bin_id}", timeout=10)
    return r.json().get("on_hand") if r.status_code == 200 else None


def healthz(base: str) -> dict[str, Any]:
    """/healthz's body."""
    return httpx.get(f"{base}/healthz", timeout=10).json()


def wait_count(base: str, bin_id: str, count: int, what: str = "") -> None:
    """Until the API shows ``count`` parts in ``bin_id``."""
    wait_until(
        lambda: on_hand(base, bin_id) == count,
        DEADLINE_S,
        interval=0.05,
        what=what or f"{bin_id} at {count}",
    )
