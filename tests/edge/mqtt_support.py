"""Test helpers for the edge publishing side: a real MQTT subscriber that records what arrives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.waits import WAIT_S, wait_until


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    @property
    def doc(self) -> dict:
        return orjson.loads(self.payload)


class Collector:
    """A paho subscriber on a real broker that keeps every message in arrival order."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        *,
        client_id: str = "",
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "subscriber did not subscribe"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(msg.topic, bytes(msg.payload), bool(msg.retain))
            )

    def snapshot(self, suffix: str = "") -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def seqs(self) -> list[int]:
        """seq of every readings/scans batch in arrival order (duplicates included)."""
        return [
            m.doc["seq"]
            for m in self.snapshot()
            if m.topic.endswith("/readings") or m.topic.endswith("/scans")
        ]

    def wait_for(
        self, pred: Callable[[], bool], timeout: float = WAIT_S, what: str = ""
    ) -> None:
        wait_until(pred, timeout, interval=0.05, what=what or str(pred))

    def wait_seqs(self, last: int, timeout: float = WAIT_S) -> None:
        self.wait_for(lambda: last in set(self.seqs()), timeout, f"seq {last}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def assert_complete_in_order(
    seqs: list[int], expected: range, max_duplicates: int
) -> None:
    """Every expected seq at least once, first arrivals in seq order, few duplicates."""
    first: list[int] = []
    seen: set[int] = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first.append(s)
    missing = sorted(set(expected) - seen)
    assert not missing, f"{len(missing)} batches missing, first {missing[:10]}"
    assert first == list(expected), "batches arrived out of order"
    duplicates = len(seqs) - len(first)
    assert duplicates <= max_duplicates, f"{duplicates} duplicates"


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    """Publish one retained QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()
