"""No silent broker drops: Mosquitto with the limits of deploy/mosquitto.conf advertises
its Maximum Packet Size to MQTT 5 clients, never acknowledges an oversized QoS 1 publish
(it disconnects the client instead of PUBACKing and dropping it), and delivers every
packet within the limit, so a payload over the protocol's limit reaches the server and is
counted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol as p
from tests.edge.mqtt_support import Collector
from tests.services import Mosquitto
from tests.waits import WAIT_S, wait_until

SHIPPED_CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"
LIMIT_KEYS = ("max_packet_size", "message_size_limit")
# The longest agent topic there is: 64-character site and agent names.
LONGEST_TOPIC = p.agent_topic("s" * 64, "a" * 64, "readings")


def shipped_limits() -> dict[str, int]:
    """The size settings of deploy/mosquitto.conf."""
    out = {}
    for line in SHIPPED_CONF.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in LIMIT_KEYS:
            out[words[0]] = int(words[1])
    return out


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A private Mosquitto with the shipped size limits."""
    extra = "\n".join(f"{k} {v}" for k, v in shipped_limits().items())
    broker = Mosquitto(
        Path(tmp_path_factory.mktemp("mosquitto-limits")), extra_conf=extra
    )
    broker.start()
    yield broker
    broker.stop()


class Device:
    """A paho client recording its CONNACK properties, PUBACKs and disconnects."""

    def __init__(self, port: int, protocol: int) -> None:
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack: dict[str, Any] = {}
        self.pubacks: dict[int, Any] = {}
        self.disconnect_reason: Any = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(WAIT_S), "device did not connect"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if properties is not None and hasattr(properties, "MaximumPacketSize"):
            self.connack["MaximumPacketSize"] = properties.MaximumPacketSize
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.pubacks[mid] = reason_code

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.disconnected.is_set():
            self.disconnect_reason = reason_code
            self.disconnected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_the_shipped_limits_are_the_protocols() -> None:
    limits = shipped_limits()
    assert limits["max_packet_size"] == p.MAX_PACKET_BYTES
    # a message_size_limit below the packet limit would PUBACK and drop (silently for
    # MQTT 3.1.1) what fits the packet but not the payload limit
    message_limit = limits.get("message_size_limit")
    assert message_limit is None or message_limit >= p.MAX_PACKET_BYTES
    # the largest payload the server takes fits a packet on the longest topic
    largest = p.publish_packet_bytes(LONGEST_TOPIC, b"x" * p.MAX_PAYLOAD_BYTES)
    assert largest <= p.MAX_PACKET_BYTES
    assert p.publish_packet_bytes("a/b", b"xyz", mqtt5=False) == 1 + 1 + 2 + 3 + 2 + 3


@pytest.mark.parametrize(
    "protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"]
)
def test_an_oversized_qos1_publish_is_refused_never_acknowledged_and_dropped(
    broker: Mosquitto, protocol: int
) -> None:
    sub = Collector(broker.port, ["jit/v1/#"])
    device = Device(broker.port, protocol)
    topic = p.agent_topic("plant1", "pi-1", "readings")
    payload = b'{"agent":"pi-1","seq":1,"readings":[]}' + b" " * 300_000
    try:
        if protocol == mqtt.MQTTv5:
            # the broker says its limit up front: a client can refuse before sending
            limit = device.connack["MaximumPacketSize"]
            assert limit == p.MAX_PACKET_BYTES
            assert p.publish_packet_bytes(topic, payload) > limit
        # paho sends it anyway (it does not check the limit): the broker must not ack it
        info = device.client.publish(topic, payload, qos=1)
        assert device.disconnected.wait(WAIT_S), "the broker kept the connection"
        device.client.loop_stop()  # no reconnect: paho would re-send the same packet
        assert device.pubacks == {}
        assert not info.is_published()
        if protocol == mqtt.MQTTv5:
            assert device.disconnect_reason.value == 0x95  # packet too large
        else:
            assert device.disconnect_reason.is_failure
        # nothing was delivered: a message sent after it arrives alone
        marker = Device(broker.port, mqtt.MQTTv311)
        marker.client.publish(topic, b"marker", qos=1).wait_for_publish(WAIT_S)
        marker.close()
        sub.wait_for(lambda: sub.snapshot(), what="the marker")
        assert [m.payload for m in sub.snapshot()] == [b"marker"]
    finally:
        device.client.disconnect()
        device.client.loop_stop()
        sub.close()


@pytest.mark.parametrize(
    "protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"]
)
def test_a_payload_over_the_protocol_limit_that_fits_a_packet_reaches_the_server(
    broker: Mosquitto, protocol: int
) -> None:
    # one byte over MAX_PAYLOAD_BYTES on the longest topic: the broker delivers it, the
    # server rejects it as oversized and counts it (nothing vanishes in between)
    head = b'{"agent":"' + b"a" * 64 + b'","seq":1,"readings":[]}'
    payload = head + b" " * (p.MAX_PAYLOAD_BYTES + 1 - len(head))
    sub = Collector(broker.port, ["jit/v1/#"])
    device = Device(broker.port, protocol)
    try:
        info = device.client.publish(LONGEST_TOPIC, payload, qos=1)
        info.wait_for_publish(WAIT_S)
        wait_until(lambda: info.mid in device.pubacks, what="PUBACK")
        assert not device.pubacks[info.mid].is_failure
        sub.wait_for(lambda: sub.snapshot(), what="delivery")
        (got,) = sub.snapshot()
        assert got.payload == payload
        with pytest.raises(p.ProtocolError) as err:
            p.decode_readings(got.payload, expected_agent="a" * 64)
        assert err.value.reason == "oversized"
    finally:
        device.close()
        sub.close()
