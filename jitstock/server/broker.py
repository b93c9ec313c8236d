"""The demo's embedded MQTT broker: amqtt (MQTT 3.1.1) on its own event loop in a thread.

For production point `JITSTOCK_MQTT_URL` at Mosquitto (deploy/mosquitto.conf);
amqtt is plenty for a demo (a few thousand QoS 1 messages per second).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from amqtt.broker import Broker  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

# amqtt logs every connection at INFO; the demo's console is for orders and deliveries.
for _name in ("amqtt", "transitions"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class EmbeddedBroker:
    """Start and stop an in-process MQTT broker on host:port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self.url = f"mqtt://{host}:{port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="embedded-broker", daemon=True
        )
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": True
                }
            },
        }
        self._broker = Broker(config, loop=self._loop)

    def start(self) -> None:
        """Start listening (blocks until the listener is up)."""
        self._thread.start()
        fut: Future[None] = asyncio.run_coroutine_threadsafe(
            self._broker.start(), self._loop
        )
        fut.result(timeout=15)
        log.info("embedded MQTT broker on %s", self.url)

    def stop(self) -> None:
        """Shut the broker down and stop its loop."""
        # amqtt reports its own cancelled tasks as errors while shutting down
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        try:
            asyncio.run_coroutine_threadsafe(
                self._broker.shutdown(), self._loop
            ).result(timeout=15)
        except Exception:  # shutting down: nothing left to save
            log.debug("embedded broker shutdown", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
