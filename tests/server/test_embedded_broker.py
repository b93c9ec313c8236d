"""The demo's embedded broker (amqtt) stops promptly and cleanly with a client connected.

amqtt's ``Broker`` makes the future that tells its broadcast loop to stop when it is
constructed, on the event loop current then; built outside its own loop's thread, the
signal never woke the loop and every stop waited out amqtt's 5 s timeout
(``_BROADCAST_SHUTDOWN_TIMEOUT``) before cancelling it.
"""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.server.broker import EmbeddedBroker
from tests.services import free_port

# amqtt cancels a broadcast loop that has not stopped 5 s after its signal; a stop that
# needs that timeout takes >= 5 s, a prompt one milliseconds (a bound against the
# timeout, not a speed target)
PROMPT_S = 3.0


def test_stop_with_a_client_connected_is_prompt_and_clean() -> None:
    port = free_port()
    broker = EmbeddedBroker(port=port)
    broker.start()
    received = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-embedded")
    client.on_message = lambda *_: received.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.subscribe("t/#", qos=1)
        time.sleep(0.2)
        client.publish("t/x", b"1", qos=1)
        assert received.wait(10), "the broker did not route a message"
        started = time.monotonic()
        broker.stop()  # the client still connected, as the demo's edge agents are
        took = time.monotonic() - started
    finally:
        client.loop_stop()
        client.disconnect()
    # the broadcast loop ended on its stop signal, not cancelled after the timeout
    task = broker._broker._broadcast_task
    assert task is not None
    assert task.done()
    assert not task.cancelled()
    assert took < PROMPT_S, f"stop took {took:.2f} s"
    assert not broker._thread.is_alive()
    assert broker._loop.is_closed()
    assert "embedded-broker" not in {t.name for t in threading.enumerate()}
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
