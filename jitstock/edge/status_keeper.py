"""The agent's retained status (``…/status``): the sensors' health, published as
``online`` only once the last will that says the same as ``offline`` is in place
(edge/lastwill.py), so a dead agent's will never shows older sensors than its last
status did."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Literal

import paho.mqtt.client as mqtt

from jitstock import protocol
from jitstock.clock import Clock
from jitstock.edge.lastwill import WillKeeper
from jitstock.ratelog import RateLimitedLog

# How long the `online` status waits for the last-will connection before going out anyway.
WILL_WAIT_S = 10.0


class StatusKeeper:
    """The sensors the status shows and the `online` status waiting for its will.

    :meth:`set_sensors` is called from the agent's threads; everything else from the
    publisher thread.  ``stats`` is the publisher's counter dict
    (``status_published``, ``will_lost``).
    """

    def __init__(
        self,
        topic: str,
        version: str,
        stats: dict[str, int],
        clock: Clock,
        rlog: RateLimitedLog,
    ) -> None:
        self.topic = topic
        self._version = version
        self._stats = stats
        self._clock = clock
        self._rlog = rlog
        self._lock = threading.Lock()
        self._sensors: tuple[protocol.SensorStatus, ...] = ()
        self._known = (
            False  # no `sensors: []` status before the agent knows its sensors
        )
        self._dirty = False
        self._pending_online: bytes | None = None
        self._pending_will: bytes | None = None
        self._pending_since = 0.0

    def set_sensors(self, sensors: Sequence[protocol.SensorStatus]) -> None:
        """Replace the per-bin health shown on the retained status (published if changed)."""
        new = tuple(sensors)
        with self._lock:
            if new != self._sensors or not self._known:
                self._sensors = new
                self._dirty = True
                self._known = True

    def reconnected(self) -> None:
        """A new session: the last will may have replaced our retained status."""
        self._pending_online = None
        with self._lock:
            self._dirty = True

    def payload(self, state: Literal["online", "offline"]) -> bytes:
        """The status message saying ``state`` with the current sensors."""
        with self._lock:
            sensors = self._sensors
        return self._encode(state, sensors, self._clock.time_ms())

    def publish_if_dirty(self, client: mqtt.Client, will: WillKeeper | None) -> None:
        """Status `online` after the will that says the same as `offline` is in place."""
        if will is None:
            return
        if will.take_lost():
            self._stats["will_lost"] += 1
            with self._lock:
                self._dirty = True  # the broker just published our will
        with self._lock:
            if self._dirty and self._known:
                self._dirty = False
                ts = self._clock.time_ms()
                self._pending_will = self._encode("offline", self._sensors, ts)
                will.want(self._pending_will)
                self._pending_online = self._encode("online", self._sensors, ts)
                self._pending_since = self._clock.monotonic()
        will.pump()
        online = self._pending_online
        if online is None:
            return
        waited = self._clock.monotonic() - self._pending_since
        if will.current_payload != self._pending_will:
            if waited < WILL_WAIT_S:
                return
            self._rlog.log(
                logging.WARNING,
                "will-late",
                "last-will connection not up after %ss; status published without it",
                WILL_WAIT_S,
            )
        self._pending_online = None
        client.publish(self.topic, online, qos=1, retain=True)
        self._stats["status_published"] += 1

    def _encode(
        self,
        state: Literal["online", "offline"],
        sensors: tuple[protocol.SensorStatus, ...],
        ts_ms: int,
    ) -> bytes:
        return protocol.encode_status(
            protocol.Status(state, self._version, ts_ms, sensors)
        )
