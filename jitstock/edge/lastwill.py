"""The agent's MQTT last will, kept current on a second connection.

MQTT fixes a client's will at CONNECT; paho's ``will_set`` works only before
connecting. The will must say what the agent last said (its sensors and the
``ts_ms`` of its last status), so it cannot ride on the data connection without
reconnecting it, and with it the in-flight window, at every health change.

So the will lives on its own small connection, the *holder*: to change the will,
a new holder connects with the new will, and only then the old one says a clean
DISCONNECT (which discards its will). If the agent dies (SIGKILL, power, network)
the holder's connection drops and the broker publishes the newest will. When
the data connection is lost, :meth:`WillKeeper.drop` closes the holder's socket
without a DISCONNECT, so the broker publishes the will then too: an agent that
cannot publish is offline.

Holders use paho's own network thread (``loop_start``): they carry no messages,
only the connection. Their client ids are ``<data client id>-will-a`` / ``-b``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# A holder that has not connected within this is given up (and retried).
HOLDER_CONNECT_TIMEOUT_S = 10.0
# Pause between attempts when a holder cannot connect (the data connection may still work).
HOLDER_RETRY_S = 2.0

ClientFactory = Callable[[str], mqtt.Client]


class _Holder:
    """One connection whose only job is to carry a will."""

    def __init__(
        self, client: mqtt.Client, payload: bytes, on_lost: Callable[[], None]
    ) -> None:
        self.client = client
        self.payload = payload
        self.connected = threading.Event()
        self.failed = threading.Event()
        self._closing = False
        self._on_lost = on_lost
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self.failed.set()
        else:
            self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self.failed.set()
        if was_up and not self._closing:
            self._on_lost()  # the broker published this will while the agent runs

    def close(self, *, fire_will: bool) -> None:
        """End the connection: a clean DISCONNECT (will discarded) or a dropped socket (will sent)."""
        self._closing = True
        if fire_will:
            sock = self.client.socket()
            if isinstance(sock, socket.socket):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already gone
        else:
            self.client.disconnect()
        self.client.loop_stop()
        self.client._reset_sockets()


class WillKeeper:
    """Keeps one holder connected with the newest will (called from the publisher thread)."""

    def __init__(
        self,
        factory: ClientFactory,
        client_id: str,
        host: str,
        port: int,
        keepalive_s: int,
        *,
        topic: str,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._factory = factory
        self._client_id = client_id
        self._host = host
        self._port = port
        self._keepalive_s = keepalive_s
        self._topic = topic
        self._clock = clock
        self._rlog = RateLimitedLog(log)
        self._current: _Holder | None = None
        self._pending: _Holder | None = None
        self._pending_since = 0.0
        self._wanted: bytes | None = None
        self._next_try = 0.0
        self._flip = False
        self._lost = threading.Event()
        self.connects = 0

    @property
    def current_payload(self) -> bytes | None:
        """The will the broker holds for us now (None: no holder connected)."""
        holder = self._current
        if holder is None or not holder.connected.is_set():
            return None
        return holder.payload

    def take_lost(self) -> bool:
        """True once after a holder's connection dropped on its own (its will was published)."""
        if self._lost.is_set():
            self._lost.clear()
            return True
        return False

    def want(self, payload: bytes) -> None:
        """Make ``payload`` the will; :meth:`pump` does the connecting."""
        self._wanted = payload
        self._next_try = 0.0

    def pump(self) -> None:
        """Advance: start a holder for the wanted will, promote it once connected."""
        now = self._clock.monotonic()
        pending = self._pending
        if pending is not None:
            if pending.connected.is_set():
                old, self._current, self._pending = self._current, pending, None
                self.connects += 1
                if old is not None:
                    old.close(fire_will=False)
            elif (
                pending.failed.is_set()
                or now - self._pending_since > HOLDER_CONNECT_TIMEOUT_S
            ):
                self._pending = None
                pending.close(fire_will=False)
                self._next_try = now + HOLDER_RETRY_S
                self._rlog.log(
                    logging.WARNING,
                    "holder",
                    "cannot connect the last-will connection to %s:%s; retrying",
                    self._host,
                    self._port,
                )
            return
        wanted = self._wanted
        if wanted is None or now < self._next_try:
            return
        current = self._current
        if (
            current is not None
            and current.payload == wanted
            and current.connected.is_set()
        ):
            return
        self._start(wanted, now)

    def _start(self, payload: bytes, now: float) -> None:
        self._flip = not self._flip
        client = self._factory(f"{self._client_id}-will-{'a' if self._flip else 'b'}")
        client.will_set(self._topic, payload, qos=1, retain=True)
        holder = _Holder(client, payload, self._lost.set)
        try:
            # blocking TCP (and TLS) connect: the data connection just reached this broker
            client.connect(self._host, self._port, keepalive=self._keepalive_s)
            client.loop_start()
        except (OSError, ValueError) as exc:
            client._reset_sockets()
            self._next_try = now + HOLDER_RETRY_S
            self._rlog.log(
                logging.WARNING, "holder", "last-will connection failed: %s", exc
            )
            return
        self._pending, self._pending_since = holder, now

    def drop(self) -> None:
        """The data connection is gone: let the broker publish the will (socket closed, no DISCONNECT)."""
        for holder in (self._pending, self._current):
            if holder is not None:
                holder.close(fire_will=True)
        self._pending = self._current = None
        self._lost.clear()

    def close(self) -> None:
        """Clean shutdown (the agent published `offline` itself): DISCONNECT, will discarded."""
        for holder in (self._pending, self._current):
            if holder is not None:
                holder.close(fire_will=False)
        self._pending = self._current = None
        self._wanted = None
