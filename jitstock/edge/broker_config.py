"""Where and how an edge agent connects to its broker (from ``mqtt_url`` and the TLS and
credential settings)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(slots=True, frozen=True)
class BrokerConfig:
    """Where and how to connect."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> BrokerConfig:
        """Parse ``mqtt://host:port`` or ``mqtts://host:port`` (TLS); kwargs add credentials/TLS files."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(
                f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}"
            )
        tls_flag = bool(kwargs.pop("tls", False))
        tls = parts.scheme in ("mqtts", "ssl") or tls_flag
        # credentials in the URL count when none are given separately
        if parts.username and kwargs.get("username") is None:
            kwargs["username"] = parts.username
        if parts.password and kwargs.get("password") is None:
            kwargs["password"] = parts.password
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            **kwargs,
        )

    def new_client(self, client_id: str, *, v5: bool, max_inflight: int) -> mqtt.Client:
        """A fresh paho client for one session (no callbacks set).

        Clean start and no session on the broker either way: the outbox is the
        agent's session, and paho's own reconnect is never used (it would re-send
        what the outbox re-sends).
        """
        if v5:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv5,
                reconnect_on_failure=False,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=client_id,
                protocol=mqtt.MQTTv311,
                clean_session=True,
                reconnect_on_failure=False,
            )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(
                ca_certs=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                cert_reqs=ssl.CERT_NONE if self.tls_insecure else ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(self.tls_insecure)
        client.max_inflight_messages_set(max_inflight)
        client.max_queued_messages_set(0)
        return client
