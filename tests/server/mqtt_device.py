"""A device written from docs/protocol.md alone (not from jitstock.protocol): what a PLC
vendor with ``mosquitto_pub`` would send — readings and scans batches with its own seq."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.waits import WAIT_S


class HandDevice:
    """Publishes hand-written JSON batches for one agent over QoS 1."""

    def __init__(
        self,
        mqtt_url: str,
        site: str,
        agent: str,
        *,
        unit_g: float,
        tare_g: float,
        seq: int = 0,
    ) -> None:
        self.site, self.agent = site, agent
        self.unit_g, self.tare_g = unit_g, tare_g
        self.seq = seq
        port = int(mqtt_url.rsplit(":", 1)[1])
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"hand-{agent}-{secrets.token_hex(3)}",
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()

    def _publish(self, kind: str, body: dict[str, Any]) -> None:
        info = self.client.publish(
            f"jit/v1/{self.site}/{self.agent}/{kind}", json.dumps(body), qos=1
        )
        info.wait_for_publish(timeout=WAIT_S)

    def count(
        self, bin_id: str, n: int, *, ts_ms: int | None = None, stable: bool = True
    ) -> None:
        """One reading showing ``n`` units on the bin's scale."""
        self.seq += 1
        now = int(time.time() * 1000)
        self._publish(
            "readings",
            {
                "agent": self.agent,
                "seq": self.seq,
                "sent_ms": now,
                "readings": [
                    {
                        "bin": bin_id,
                        "ts_ms": ts_ms if ts_ms is not None else now,
                        "grams": self.tare_g + n * self.unit_g,
                        "stable": stable,
                    }
                ],
            },
        )

    def scan(self, code: str, scanner: str = "dock1") -> None:
        """One scanned code."""
        self.seq += 1
        now = int(time.time() * 1000)
        self._publish(
            "scans",
            {
                "agent": self.agent,
                "seq": self.seq,
                "sent_ms": now,
                "scans": [{"scanner": scanner, "ts_ms": now, "code": code}],
            },
        )
