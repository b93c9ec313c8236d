"""Issue 10, MQTT edges: the deploy/ ACL keeps an agent in its own site and away from the
order topics, and a server the broker refuses says why once (real Mosquitto with the ACL)."""

from __future__ import annotations

import gc
import logging
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.server import mqtt as mqtt_mod
from jitstock.server.mqtt import MqttConnection
from tests.edge.mqtt_support import Collector
from tests.server.mqtt_support import DEADLINE_S, publisher, topic
from tests.server.server_support import wait_until
from tests.services import Mosquitto, deploy_acl_broker

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"jitstock-server": "server-pw", "pi-1": "pi-1-pw"}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Any:
    """Mosquitto with passwords and deploy/mosquitto.acl as shipped."""
    broker = deploy_acl_broker(tmp_path, PASSWORDS)
    yield broker
    broker.stop()


def test_acl_confines_an_agent_to_its_site_and_away_from_orders(
    acl_broker: Mosquitto,
) -> None:
    server = Collector(
        acl_broker.port,
        ["jit/v1/#"],
        username="jitstock-server",
        password=PASSWORDS["jitstock-server"],
    )
    agent = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    agent.username_pw_set("pi-1", PASSWORDS["pi-1"])
    agent.connect("127.0.0.1", acl_broker.port)
    agent.loop_start()
    try:
        for forged in (
            "jit/v1/otherplant/pi-1/readings",
            "jit/v1/plant1/orders/status",
            "jit/v1/plant1/pi-1/config",
        ):
            agent.publish(forged, b'{"forged": true}', qos=1).wait_for_publish(10)
        # the broker keeps one client's messages in order: once this one arrived,
        # any forged one it let through would have arrived before it
        agent.publish(
            "jit/v1/plant1/pi-1/readings", b'{"ok": true}', qos=1
        ).wait_for_publish(10)
        server.wait_for(lambda: server.snapshot("/readings"), what="pi-1 readings")
        assert [m.topic for m in server.snapshot()] == ["jit/v1/plant1/pi-1/readings"]
    finally:
        agent.disconnect()
        agent.loop_stop()
        server.close()


def test_a_refused_server_logs_why_once(
    acl_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    conn = MqttConnection(
        acl_broker.url,
        "jitstock-server-test",
        ["jit/v1/+/+/readings"],
        username="jitstock-server",
        password="wrong",
    )
    with caplog.at_level(logging.ERROR, logger="jitstock.server.mqtt"):
        conn.start()
        try:
            wait_until(
                lambda: conn.failed_attempts >= 2,
                60,
                interval=0.1,
                what="two refused connection attempts",
            )
        finally:
            conn.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "refused" in errors[0]
    assert conn.problem is not None
    assert not conn.connected.is_set()


def test_an_unreachable_broker_is_logged_once_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.services import free_port

    conn = MqttConnection(f"mqtt://127.0.0.1:{free_port()}", "jitstock-x", [])
    with caplog.at_level(logging.ERROR, logger="jitstock.server.mqtt"):
        conn.start()
        try:
            wait_until(
                lambda: conn.failed_attempts >= 2,
                60,
                interval=0.1,
                what="two failed connection attempts",
            )
        finally:
            conn.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "connection refused" in errors[0]


def test_the_server_socket_neither_delays_nor_waits_to_acknowledge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: TCP_NODELAY on the server's socket once connected, and TCP_QUICKACK
    set again after every delivered message (a broker with Nagle's algorithm would
    otherwise hold our messages up to the 40 ms of Linux's delayed ACK)."""
    if not hasattr(socket, "TCP_QUICKACK"):
        pytest.skip("TCP_QUICKACK is Linux's")
    broker = Mosquitto(tmp_path)
    broker.start()
    conn = MqttConnection(broker.url, "jitstock-server-test", ["jit/v1/#"])
    quick: list[int] = []
    real = mqtt_mod._tcp_option

    def spy(client: mqtt.Client, option: int) -> None:
        if option == socket.TCP_QUICKACK:
            quick.append(option)
        real(client, option)

    monkeypatch.setattr(mqtt_mod, "_tcp_option", spy)
    conn.start()
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        assert conn.wait_connected(60)
        sock = conn.client.socket()
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        sender.connect("127.0.0.1", broker.port)
        sender.loop_start()

        def delivered() -> bool:
            # publish until three arrived (the subscription may still be on its way)
            sender.publish("jit/v1/p/a/readings", b"{}", qos=1)
            return len(quick) >= 3

        wait_until(delivered, 60, interval=0.05, what="three messages delivered")
        assert conn.inbox.qsize() >= len(quick)  # one per message
    finally:
        sender.loop_stop()
        sender.disconnect()
        conn.stop()
        broker.stop()


def test_receiving_messages_leaves_no_garbage_cycles(mosquitto: Mosquitto) -> None:
    """Each received message must be freed by reference counting alone: paho's per-topic
    callback lookup made a reference cycle per message, and at 150,000 readings/s the cyclic
    collector's pauses that garbage brought on were the slowest reorders (issue 12)."""
    messages = 300
    conn = MqttConnection(mosquitto.url, "gc-test", ["jit/v1/+/+/readings"])
    conn.start()
    try:
        assert conn.wait_connected(DEADLINE_S)
        with publisher(mosquitto.url) as pub:
            # subscribed and flowing: CONNACK can come before the SUBACK, so a message
            # published at once may find no subscription yet (a busy box): send until one
            # arrives, then start from a clean inbox
            def flowing() -> bool:
                pub.send(topic("pi-1", "readings"), b"{}")
                return conn.inbox.qsize() >= 1

            wait_until(flowing, interval=0.5, what="the first message")
            while not conn.inbox.empty():
                conn.inbox.get_nowait()
            gc.collect()
            gc.garbage.clear()
            gc.set_debug(gc.DEBUG_SAVEALL)  # keep what a collection finds, to count it
            try:
                for i in range(messages):
                    pub.send(topic("pi-1", "readings"), b'{"i": %d}' % i, wait=False)
                pub.flush()
                wait_until(
                    lambda: conn.inbox.qsize() >= messages,
                    what=f"{messages} messages received",
                )
                gc.collect()
                found = [type(o).__qualname__ for o in gc.garbage]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
    finally:
        conn.stop()
    # a cycle per message is at least 5 objects (function, cells, the split topic);
    # the test's own publisher and threads may leave a few
    assert len(found) < messages // 10, Counter(found).most_common(5)
