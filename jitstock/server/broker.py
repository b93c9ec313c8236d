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


# How long a stop waits for amqtt's shutdown before cancelling its clients' readers again.
RECANCEL_S = 0.25


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
        self._config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": True
                }
            },
        }
        self._broker: Broker | None = None

    def start(self) -> None:
        """Start listening (blocks until the listener is up)."""
        self._thread.start()
        fut: Future[None] = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=15)
        log.info("embedded MQTT broker on %s", self.url)

    async def _start(self) -> None:
        # Built on its own loop: amqtt's Broker makes the future that stops its broadcast
        # loop in __init__, bound to the loop current then.  Built in the caller's thread
        # it was bound to another loop, the stop signal never woke the broadcast loop
        # and every shutdown waited out amqtt's 5 s timeout.
        self._broker = Broker(self._config)
        await self._broker.start()

    async def _shutdown(self) -> None:
        assert self._broker is not None
        # amqtt stops each client's reader task by cancelling it and waits for it to
        # end; on Python 3.11 asyncio.wait_for drops a cancellation that comes as its
        # read completes (CPython gh-86296: a PUBACK arriving as the demo stops), and
        # the stop would wait for that client forever: cancel again until it ends.
        readers = [
            getattr(handler, "_reader_task", None)
            for _, handler in getattr(self._broker, "_sessions", {}).values()
        ]
        shutdown = asyncio.ensure_future(self._broker.shutdown())
        try:
            while not (await asyncio.wait([shutdown], timeout=RECANCEL_S))[0]:
                for task in readers:
                    if task is not None and not task.done():
                        task.cancel()
            shutdown.result()
        finally:
            # what the broker leaves running (a client's connection it did not close)
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

    def stop(self) -> None:
        """Shut the broker down and stop its loop."""
        # amqtt reports its own cancelled tasks as errors while shutting down
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                    timeout=15
                )
            except Exception:  # shutting down: nothing left to save
                log.debug("embedded broker shutdown", exc_info=True)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if self._thread.is_alive():
            log.warning("embedded broker: its thread did not stop")
            return
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()
