"""The server's MQTT connection: a persistent QoS 1 session with manual acknowledgement.

paho's network thread only queues what arrives; the ingest worker acknowledges
each message after what it carries is durable.  The broker never has more than
``receive_maximum`` unacknowledged messages in flight to us (MQTT 5 Receive
Maximum), so when ingest falls behind the broker holds the backlog in its queue
(size it: deploy/mosquitto.conf) instead of this process growing without bound.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from jitstock.server.settings import SettingRefused

log = logging.getLogger(__name__)

# Keep the session (and the messages queued for us) for a week of server downtime.
SESSION_EXPIRY_S = 7 * 24 * 3600
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 10
# Linux acknowledges received TCP data up to 40 ms late (delayed ACK) while this side sends
# nothing back (ingest acknowledges a message only once it is durable, and holds the
# acknowledgements of re-sent unchanged readings for up to a second).  A broker that holds
# small writes until the last one is acknowledged (Nagle's algorithm: mosquitto without
# set_tcp_nodelay) then sends its messages to us in bursts every 40 ms: measured, 17 ms
# p50 from publish to our network thread, against 1 ms for a subscriber that acknowledges
# at once.  So every delivered message is acknowledged at the TCP level at once
# (TCP_QUICKACK, Linux only, one system call; it has to be set again after each read).
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


@dataclass(slots=True, frozen=True)
class Incoming:
    """One delivered message, with the connection epoch its mid belongs to."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    epoch: int
    received: float
    # an admin's replay of a dead letter: applied without the seq check, never acknowledged
    replay: bool = False
    # the broker's DUP flag: it sent this message to us before (a redelivery after our
    # reconnect), so it can never be the first batch of a new outbox
    dup: bool = False
    # the broker's RETAIN flag: a stored retained message, sent because we (re)subscribed
    # (a live message comes with it clear whatever its publisher set)
    retain: bool = False


@dataclass(slots=True, frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_mqtt_url(url: str) -> BrokerAddress:
    """mqtt://host:port or mqtts://host:port."""
    parts = urlparse(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
    tls = parts.scheme in ("mqtts", "ssl")
    return BrokerAddress(
        parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls
    )


class MqttConnection:
    """A paho client for the server: subscriptions with manual ack, plus publishing."""

    def __init__(
        self,
        url: str,
        client_id: str,
        subscriptions: list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: Path | None = None,
        receive_maximum: int = 2000,
        protocol: str = "5",
        inbox: queue.SimpleQueue[Incoming] | None = None,
    ) -> None:
        self.address = parse_mqtt_url(url)
        self.inbox: queue.SimpleQueue[Incoming] = (
            inbox if inbox is not None else queue.SimpleQueue()
        )
        self._subscriptions = subscriptions
        self._receive_maximum = receive_maximum
        self._v5 = protocol == "5"
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        self.connected = threading.Event()
        # why the broker cannot be reached or refuses us (None: connected); logged once per reason
        self.problem: str | None = None
        self.failed_attempts = 0
        # mid -> the failure reason code of its PUBACK (MQTT 5), for publish_acked
        self._refused: dict[int, str] = {}
        # this connection attempt got a CONNACK (accepted or refused); paho thread only
        self._answered = False
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            manual_ack=True,
            # 3.1.1: a persistent session is clean_session=False; MQTT 5 uses clean_start below
            clean_session=None if self._v5 else False,
        )
        if username is not None:
            client.username_pw_set(username, password)
        self._tls_ca = tls_ca
        if self.address.tls:
            try:
                client.tls_set(
                    ca_certs=str(tls_ca) if tls_ca else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except OSError as exc:  # ssl.SSLError is one too
                raise SettingRefused(_ca_file_problem(tls_ca, exc)) from None
        elif tls_ca is not None:
            log.warning(
                "JITSTOCK_MQTT_TLS_CA is set but %s is not an mqtts:// URL: "
                "the connection is not encrypted and the CA file is not used",
                url,
            )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        if isinstance(getattr(client, "_on_message_filtered", None), MQTTMatcher):
            client._on_message_filtered = _NoFilteredCallbacks()  # type: ignore[no-untyped-call]
        self.client = client

    def start(self) -> None:
        """Connect (retrying in the background until the broker is there) and start the network thread."""
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            props.ReceiveMaximum = self._receive_maximum
            self.client.connect_async(
                self.address.host,
                self.address.port,
                keepalive=KEEPALIVE_S,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(
                self.address.host, self.address.port, keepalive=KEEPALIVE_S
            )
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until the first CONNACK (tests and the demo use it)."""
        return self.connected.wait(timeout)

    @property
    def epoch(self) -> int:
        """Connection generation: mids from an older one must not be acknowledged."""
        return self._epoch

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged messages the broker sends us at most."""
        return self._receive_maximum

    def ack(self, item: Incoming) -> None:
        """Acknowledge a message once what it carries is durable."""
        if item.qos == 0 or item.epoch != self._epoch:
            # a mid from a previous connection means nothing now; the broker redelivers that message
            return
        self.client.ack(item.mid, item.qos)

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish (queued by paho while disconnected)."""
        self.client.publish(topic, payload, qos=qos, retain=retain)

    def publish_acked(self, topic: str, payload: bytes, timeout: float) -> None:
        """Publish at QoS 1, not retained, and return once the broker acknowledged it
        (PUBACK).  Raises when not connected (nothing is queued then), when no PUBACK
        came within ``timeout`` (paho may still deliver it later: a retry then
        duplicates it) or when the PUBACK refuses the message (MQTT 5 reason code)."""
        if not self.connected.is_set():
            raise ConnectionError("not connected to the MQTT broker")
        info = self.client.publish(topic, payload, qos=1, retain=False)
        info.wait_for_publish(timeout)  # raises if paho did not take it
        if not info.is_published():
            raise TimeoutError(f"no PUBACK within {timeout:g} s")
        refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise RuntimeError(f"the broker refused the message: {refused}")

    # -- paho callbacks (network thread: keep them short) --

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # called before paho marks the message published: publish_acked reads it after
        if reason.is_failure:
            self._refused[mid] = str(reason)
        else:
            self._refused.pop(mid, None)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._answered = True
        if reason.is_failure:
            # bad user name or password, not authorised, ...: the broker says which
            self._report(f"the broker refused the connection: {reason}")
            return
        if self.problem is not None:
            log.info(
                "MQTT connection to %s:%s works again (was: %s)",
                self.address.host,
                self.address.port,
                self.problem,
            )
            self.problem = None
        with self._epoch_lock:
            self._epoch += 1
        _tcp_option(client, socket.TCP_NODELAY)  # our PUBACKs and orders go out at once
        # always (re)subscribe: idempotent on the broker, and a lost session would otherwise stay deaf
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.address.host,
            self.address.port,
            flags.session_present,
        )
        self.connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this inside its `except OSError` around the connect: the error is current
        self._report(_describe(sys.exc_info()[1], self.address.tls, self._tls_ca))

    def _report(self, problem: str) -> None:
        """Log a connection problem once (again only when the reason changes), keep it for /healthz."""
        self.failed_attempts += 1
        if problem != self.problem:
            log.error(
                "MQTT connection to %s:%s%s failed: %s (retrying every %d-%d s; "
                "logged again only if the reason changes)",
                self.address.host,
                self.address.port,
                " (TLS)" if self.address.tls else "",
                problem,
                RECONNECT_MIN_S,
                RECONNECT_MAX_S,
            )
        self.problem = problem

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        answered, self._answered = self._answered, False
        if reason.value == 0:
            return  # our own disconnect (stop)
        if not answered:
            # closed before any CONNACK: typically plain MQTT spoken to a TLS port
            hint = "" if self.address.tls else "; if this is a TLS port, use mqtts://"
            self._report(
                f"the broker closed the connection before answering CONNECT ({reason}){hint}"
            )
            return
        log.warning("MQTT disconnected: %s; reconnecting", reason)

    def _on_message(
        self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage
    ) -> None:
        self.inbox.put(
            Incoming(
                msg.topic,
                bytes(msg.payload),
                msg.mid,
                msg.qos,
                self._epoch,
                time.monotonic(),
                dup=bool(msg.dup),
                retain=bool(msg.retain),
            )
        )
        if _TCP_QUICKACK is not None:
            _tcp_option(client, _TCP_QUICKACK)


class _NoFilteredCallbacks(MQTTMatcher):
    """paho's table of per-topic callbacks, answering at once while it is empty.

    paho looks every received message up in this table, and its lookup is a recursive
    closure: one reference cycle (function, cells, the split topic) per message, which only
    the cyclic garbage collector frees. At 150,000 readings/s that was most of what the
    collector found. This server registers no per-topic callbacks (``on_message`` takes
    everything), so an empty table yields nothing without building the closure; one that
    someone fills keeps paho's lookup.
    """

    def iter_match(self, topic: str) -> Iterator[object]:
        if not self._root._children:
            return iter(())
        return super().iter_match(topic)  # type: ignore[no-untyped-call,no-any-return]


def _tcp_option(client: mqtt.Client, option: int) -> None:
    """Switch a TCP option on for the client's socket (best effort: a socket that is
    gone, or not TCP, keeps its defaults)."""
    sock = client.socket()
    setsockopt = getattr(sock, "setsockopt", None)  # paho types it as a bare SocketLike
    if setsockopt is None:
        return
    try:
        setsockopt(socket.IPPROTO_TCP, option, 1)
    except OSError:
        pass


def _ca_file_problem(path: Path | None, exc: OSError) -> str:
    """Why the CA file cannot be used, naming it (a refused setting, not a traceback)."""
    if isinstance(exc, FileNotFoundError):
        what = "does not exist"
    elif isinstance(exc, IsADirectoryError):
        what = "is a directory, not a PEM file"
    elif isinstance(exc, PermissionError):
        what = "cannot be read (permission denied)"
    elif isinstance(exc, ssl.SSLError):
        what = f"holds no usable PEM certificate ({exc.reason or exc})"
    else:
        what = f"cannot be used ({exc.strerror or exc})"
    if path is None:  # the system CA store itself failed to load
        return f"JITSTOCK_MQTT_TLS_CA: the system CA certificates {what}"
    return f"JITSTOCK_MQTT_TLS_CA: the CA file {path} {what}"


def _describe(
    exc: BaseException | None, tls: bool = False, tls_ca: Path | None = None
) -> str:
    """A connect failure in words: TLS verification and handshake errors name their cause."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = (
            f"JITSTOCK_MQTT_TLS_CA={tls_ca}"
            if tls_ca is not None
            else "the system CA store (JITSTOCK_MQTT_TLS_CA is not set)"
        )
        return (
            f"TLS certificate verify failed: {exc.verify_message} "
            f"(the broker's certificate is checked against {trusted})"
        )
    if tls and isinstance(exc, (ConnectionResetError, ssl.SSLEOFError)):
        return (
            f"the broker closed the connection during the TLS handshake ({exc}); "
            "if this is a plain MQTT port, use mqtt://"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on this port?)"
    return f"{type(exc).__name__}: {exc}"
