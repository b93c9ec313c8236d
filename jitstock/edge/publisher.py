"""MQTT publisher: drains the disk outbox in seq order, keeps the retained status, takes config.

One thread owns everything MQTT.  Each connection gets a *fresh* paho client
driven by ``client.loop()`` from that thread; paho's own reconnect is never
used.  Why: paho keeps unacknowledged QoS 1 messages in memory and re-sends
them itself on ``reconnect()``, which would double with the outbox re-send (and
it knows nothing about batches written while it was down).  So the outbox is
the only re-send mechanism: after every (re)connect the publisher starts again
at the lowest unacknowledged seq and publishes in seq order, at most
``window`` messages in flight.  A batch leaves the outbox only when its PUBACK
arrives.  Duplicates happen only for batches whose PUBACK was lost in the
connection drop (at most ``window``); the server applies each (agent, seq) once.

The window stays far below paho's 65,535 message ids: ids wrap, and more
unacknowledged messages than ids would overwrite each other (a 100,000-message
QoS 1 burst loses messages).

MQTT 5 first, 3.1.1 when the broker refuses 5 (the embedded demo broker, amqtt,
speaks only 3.1.1). With MQTT 5 the broker's CONNACK tells its Maximum Packet
Size and Receive Maximum: batches are split to fit (edge/batching.py; the agent
splits new ones, a stored one too large for this broker is re-split in the
outbox under new seqs), the window stays within Receive Maximum, and a PUBACK
with a failure reason code leaves the batch in the outbox (never acknowledged
and dropped). ``mqtt_max_payload_bytes`` caps payloads on any protocol (set it
to Mosquitto's ``message_size_limit``, which 3.1.1 clients are not told).

The retained status is published once the agent knows its sensors (no
``sensors: []`` at start-up); the last will is kept equal to the last status
(as ``offline``) on a second connection (edge/lastwill.py).

A failure outside the per-session guard (building the client, a bug) ends the
thread with :attr:`Publisher.failure` set; the agent then exits non-zero so
systemd restarts it, instead of running on without a publisher.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from jitstock import __version__, protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.ack_batch import AckBatch
from jitstock.edge.batching import split_payload
from jitstock.edge.broker_config import BrokerConfig
from jitstock.edge.lastwill import WillKeeper
from jitstock.edge.outbox import Outbox, OutboxError
from jitstock.edge.payload_limit import PayloadLimit
from jitstock.edge.retained_config import ConfigCallback, RetainedConfig
from jitstock.edge.status_keeper import StatusKeeper
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# In-flight QoS 1 batches: enough to fill a LAN round trip many times, far below 65,535 mids.
DEFAULT_WINDOW = 1000
# Upper bound accepted for the window, leaving most of the mid space free.
MAX_WINDOW = 20_000
# MQTT keep-alive: the broker fires our last will after 1.5x this without traffic.
KEEPALIVE_S = 30
# Reconnect backoff: fast first retry (broker restart), capped so a dead broker costs nothing.
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
# How long the loop sleeps in select() when there is nothing to send: latency of a new batch.
IDLE_POLL_S = 0.05
# A broker that accepted TCP but sends no CONNACK within this is treated as down.
CONNACK_TIMEOUT_S = 10.0
# On stop, how long we wait for the broker to confirm the retained `offline` status ...
OFFLINE_FLUSH_S = 3.0
# ... and, before that, how long we keep draining the outbox (systemd allows 90 s in all).
SHUTDOWN_DRAIN_S = 5.0
# Most batches read from SQLite per drain step (keeps one step short).
DRAIN_CHUNK = 500
# Bytes of a PUBLISH packet besides topic and payload: fixed header (<= 5), topic
# length (2), packet id (2), MQTT 5 properties length (1), with room to spare.
PUBLISH_OVERHEAD = 16
# Status and will messages ride on top of the window within the broker's Receive Maximum.
STATUS_HEADROOM = 8
# MQTT 5 PUBACK reason code "Packet too large" (Mosquitto: message_size_limit).
RC_PACKET_TOO_LARGE = 0x95
# CONNACK reason of a broker that does not speak MQTT 5 (3.1.1 return code 1).
RC_UNSUPPORTED_PROTOCOL = 0x84


class Publisher:
    """Owns the MQTT connection of one agent: outbox drain, status, config."""

    def __init__(
        self,
        outbox: Outbox,
        broker: BrokerConfig,
        *,
        site: str,
        agent: str,
        on_config: ConfigCallback | None = None,
        version: str = __version__,
        window: int = DEFAULT_WINDOW,
        clock: Clock = REAL_CLOCK,
        keepalive_s: int = KEEPALIVE_S,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        idle_poll_s: float = IDLE_POLL_S,
        shutdown_drain_s: float = SHUTDOWN_DRAIN_S,
        max_payload_bytes: int = protocol.MAX_PAYLOAD_BYTES,
        on_limit: Callable[[int], None] | None = None,
    ) -> None:
        if not 1 <= window <= MAX_WINDOW:
            raise ValueError(f"window must be 1..{MAX_WINDOW}, got {window}")
        self.outbox = outbox
        self.broker = broker
        self.site = site
        self.agent = agent
        self.version = version
        self.window = window
        self._clock = clock
        self._keepalive_s = keepalive_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._idle_poll_s = idle_poll_s
        self._shutdown_drain_s = shutdown_drain_s
        self._topics = {
            "readings": protocol.agent_topic(site, agent, "readings"),
            "scans": protocol.agent_topic(site, agent, "scans"),
        }
        self.status_topic = protocol.agent_topic(site, agent, "status")
        self.config_topic = protocol.agent_topic(site, agent, "config")
        self._rlog = RateLimitedLog(log)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._client_id = f"jitstock-edge-{site}-{agent}"
        self._v5 = True  # until a broker refuses MQTT 5
        self._overhead = PUBLISH_OVERHEAD + max(
            len(t.encode()) for t in self._topics.values()
        )
        self.failure: BaseException | None = None
        self._will: WillKeeper | None = None
        # per-connection state, touched only by the publisher thread
        self._inflight: dict[int, tuple[int, int]] = {}
        self._refused: list[tuple[int, int, ReasonCode]] = []
        self._window = window
        self._broker_limit: int | None = None
        self._receive_max: int | None = None
        self._loss_at: int | None = None
        self._connack: ReasonCode | None = None
        self._max_sent_seq = 0
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "connects",
                "connect_failures",
                "disconnects",
                "published",
                "resent",
                "acked",
                "status_published",
                "config_applied",
                "config_rejected",
                "outbox_errors",
                "refused_by_broker",
                "resplit",
                "will_lost",
            ),
            0,
        )
        self._status = StatusKeeper(
            self.status_topic, version, self._stats, clock, self._rlog
        )
        self._limits = PayloadLimit(outbox, max_payload_bytes, self._rlog, on_limit)
        self._acks = AckBatch(outbox, self._stats, clock, self._rlog)
        self._config = RetainedConfig(
            self.config_topic, on_config, self._stats, clock, self._rlog
        )

    # ------------------------------------------------------------ public

    def start(self) -> None:
        """Start the publisher thread (connects in the background, retries forever)."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-publisher", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = SHUTDOWN_DRAIN_S + OFFLINE_FLUSH_S + 5.0) -> None:
        """Drain briefly, publish the retained `offline` status, disconnect, end the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def set_sensors(self, sensors: Sequence[protocol.SensorStatus]) -> None:
        """Replace the per-bin health shown on the retained status (published if changed)."""
        self._status.set_sensors(sensors)

    @property
    def payload_limit(self) -> int:
        """Largest batch payload the broker takes (configured cap, MQTT 5 packet limit)."""
        return self._limits.value

    @property
    def failed(self) -> bool:
        """True when the publisher thread died; the process must end (non-zero)."""
        return self.failure is not None

    @property
    def connected(self) -> bool:
        """True while a broker session is up."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or ``timeout`` passed (False)."""
        return self._connected.wait(timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Counters for logs and metrics."""
        return {
            **self._stats,
            "inflight": len(self._inflight),
            "outbox_depth": self.outbox.depth,
        }

    # ------------------------------------------------------------ thread

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # recorded; the agent ends the process
            self.failure = exc
            log.error("publisher failed: %s: %s", type(exc).__name__, exc)
            log.debug("publisher failure", exc_info=True)

    def _loop(self) -> None:
        delay = self._reconnect_min_s
        while not self._stopping.is_set():
            client = self._new_client(self._client_id)
            was_up = False
            try:
                was_up = self._session(client)
            except Exception:  # the loop must survive anything paho or SQLite throws
                log.exception("publisher session failed")
            finally:
                self._connected.clear()
                self._inflight.clear()
                self._refused.clear()
                self._acks.flush(force=True)
                if self._will is not None:
                    if self._stopping.is_set():
                        self._will.close()
                    else:
                        self._will.drop()  # no data connection: the agent is offline
                    self._will = None
                # paho closes its socket pair only in __del__; without its loop thread we close it
                # here so no file descriptors leak across reconnects
                client._reset_sockets()
            if self._stopping.is_set():
                break
            if self._fallback_to_311():
                continue  # at once, with MQTT 3.1.1
            delay = (
                self._reconnect_min_s
                if was_up
                else min(delay * 2, self._reconnect_max_s)
            )
            self._stopping.wait(delay)

    def _speaks_no_v5(self) -> bool:
        """The broker's CONNACK refused MQTT 5 (a 3.1.1-only broker)."""
        rc = self._connack
        return self._v5 and rc is not None and rc.value in (RC_UNSUPPORTED_PROTOCOL, 1)

    def _fallback_to_311(self) -> bool:
        if not self._speaks_no_v5():
            return False
        self._v5 = False
        log.warning(
            "broker %s:%s does not speak MQTT 5; using 3.1.1 (no packet limit from the "
            "broker: batches capped at mqtt_max_payload_bytes = %d)",
            self.broker.host,
            self.broker.port,
            self._limits.cap,
        )
        return True

    def _new_client(self, client_id: str) -> mqtt.Client:
        # status messages ride on top of the window; paho must never queue behind its own limit
        client = self.broker.new_client(
            client_id, v5=self._v5, max_inflight=self.window + 16
        )
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _session(self, client: mqtt.Client) -> bool:
        """One connection's life; True if it got as far as CONNACK."""
        self._connack = None
        self._broker_limit = self._receive_max = None
        try:
            client.connect(
                self.broker.host, self.broker.port, keepalive=self._keepalive_s
            )
        except (OSError, ValueError) as exc:
            self._stats["connect_failures"] += 1
            self._rlog.log(
                logging.WARNING,
                "connect",
                "cannot reach broker %s:%s: %s",
                self.broker.host,
                self.broker.port,
                exc,
            )
            return False
        deadline = self._clock.monotonic() + CONNACK_TIMEOUT_S
        while self._connack is None:
            rc = client.loop(self._idle_poll_s)
            if self._connack is not None:
                # a refusing CONNACK: paho reports an error from this same loop call,
                # so its reason is read below, not lost with the connection
                break
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._stopping.is_set():
                self._stats["connect_failures"] += 1
                return False
            if self._clock.monotonic() > deadline:
                self._stats["connect_failures"] += 1
                self._rlog.log(
                    logging.WARNING,
                    "connect",
                    "no CONNACK from broker within %ss",
                    CONNACK_TIMEOUT_S,
                )
                return False
        if self._connack.is_failure:
            self._stats["connect_failures"] += 1
            if self._speaks_no_v5():
                return False  # _loop falls back to 3.1.1 and says so
            self._rlog.log(
                logging.ERROR,
                "connack",
                "broker refused the connection: %s",
                self._connack,
            )
            return False
        self._stats["connects"] += 1
        self._apply_broker_limits()
        log.info(
            "connected to %s:%s (MQTT %s, payload limit %d bytes, window %d)",
            self.broker.host,
            self.broker.port,
            "5" if self._v5 else "3.1.1",
            self._limits.value,
            self._window,
        )
        self._will = WillKeeper(
            self._new_client,
            self._client_id,
            self.broker.host,
            self.broker.port,
            self._keepalive_s,
            topic=self.status_topic,
            clock=self._clock,
        )
        self._status.reconnected()
        self._config.reconnected()
        client.subscribe(self.config_topic, qos=1)
        self._connected.set()
        try:
            self._pump(client)
        finally:
            self._stats["disconnects"] += 1
        return True

    def _pump(self, client: mqtt.Client) -> None:
        """Drain the outbox with a bounded window until the connection drops or stop()."""
        sent_upto = 0  # every (re)connect starts again at the lowest unacknowledged seq
        drain_until: float | None = None
        while True:
            if self._stopping.is_set():
                # on stop, a short last drain: a clean shutdown leaves nothing behind if it can
                now = self._clock.monotonic()
                if drain_until is None:
                    drain_until = now + self._shutdown_drain_s
                if now >= drain_until or (
                    not self._inflight and self.outbox.last_seq <= sent_upto
                ):
                    break
            self._status.publish_if_dirty(client, self._will)
            self._handle_refusals()
            self._config.check_cleared()
            sent_upto = self._send_some(client, sent_upto)
            if sent_upto < 0:
                return  # connection lost; the next session re-sends from the outbox
            can_send = (
                self._window > len(self._inflight) and self.outbox.last_seq > sent_upto
            )
            rc = client.loop(0.0 if can_send else self._idle_poll_s)
            self._acks.flush()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._note_loss(rc)
                self._rlog.log(
                    logging.WARNING, "lost", "connection to broker lost (%s)", rc.name
                )
                return
        self._goodbye(client)

    def _send_some(self, client: mqtt.Client, sent_upto: int) -> int:
        """Publish the next batches that fit the window; new ``sent_upto``, or -1 if the link broke."""
        room = self._window - len(self._inflight)
        last = self.outbox.last_seq
        if room <= 0 or last <= sent_upto:
            return sent_upto
        try:
            items = self.outbox.pending(sent_upto, min(room, DRAIN_CHUNK))
        except OutboxError as exc:
            self._stats["outbox_errors"] += 1
            self._rlog.log(logging.ERROR, "outbox", "%s", exc)
            return sent_upto
        if not items:
            return last  # everything up to `last` was acknowledged or thinned
        for item in items:
            if len(item.payload) > self._limits.value:
                # written under a larger limit: its items go out again, split, as new seqs
                self._resplit(item.seq, item.kind, item.payload)
                sent_upto = item.seq
                continue
            info = client.publish(self._topics[item.kind], item.payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return -1
            self._inflight[info.mid] = (item.seq, len(item.payload))
            self._stats["published"] += 1
            if item.seq <= self._max_sent_seq:
                self._stats["resent"] += 1
            else:
                self._max_sent_seq = item.seq
            sent_upto = item.seq
        return sent_upto

    def _resplit(self, seq: int, kind: Any, payload: bytes) -> None:
        try:
            new = self.outbox.replace_batch(
                seq, kind, split_payload(payload, self._limits.value)
            )
        except OutboxError as exc:
            self._stats["outbox_errors"] += 1
            self._rlog.log(logging.ERROR, "outbox", "%s", exc)
            return
        self._stats["resplit"] += 1
        self._rlog.log(
            logging.WARNING,
            "resplit",
            "batch %d (%d bytes) exceeds the broker's limit of %d bytes: re-sent as seq %d..%d "
            "(seq %d becomes a gap)",
            seq,
            len(payload),
            self._limits.value,
            new[0],
            new[-1],
            seq,
        )

    def _handle_refusals(self) -> None:
        """PUBACKs with a failure reason: the batch stays in the outbox (never acked and dropped)."""
        refused, self._refused = self._refused, []
        for seq, size, rc in refused:
            self._stats["refused_by_broker"] += 1
            if rc.value == RC_PACKET_TOO_LARGE:
                # Mosquitto's message_size_limit, which MQTT 5 CONNACK does not tell
                self._limits.set(
                    min(self._limits.value, size // 2), "broker refused as too large"
                )
                items = [i for i in self.outbox.pending(seq - 1, 1) if i.seq == seq]
                if items:
                    self._resplit(seq, items[0].kind, items[0].payload)
                continue
            self._rlog.log(
                logging.ERROR,
                f"refused:{rc.value}",
                "broker refused batch %d: %s; it stays queued and is re-sent after the "
                "next reconnect",
                seq,
                rc,
            )

    def _note_loss(self, rc: MQTTErrorCode) -> None:
        """A connection dropped twice with the same oldest batch in flight: too large for the broker.

        Mosquitto's ``message_size_limit`` answers an oversized MQTT 5 publish with a
        PUBACK reason code (0x95) the specification reserves for CONNACK/DISCONNECT,
        which paho takes as a malformed packet and drops the connection. Halving the
        limit (and so re-splitting that batch) ends the loop instead of re-sending forever.
        """
        if not self._inflight:
            self._loss_at = None
            return
        seq, size = min(self._inflight.values())
        if rc == MQTTErrorCode.MQTT_ERR_PROTOCOL and self._loss_at == seq:
            self._limits.set(
                min(self._limits.value, size // 2), "broker dropped it twice"
            )
            self._loss_at = None
        else:
            self._loss_at = seq

    def _apply_broker_limits(self) -> None:
        """Fit the payload limit and the window to what this broker's CONNACK said."""
        if self._broker_limit is not None:
            self._limits.set(
                self._broker_limit - self._overhead, "broker Maximum Packet Size"
            )
        window = self.window
        if self._receive_max is not None:
            window = max(1, min(window, self._receive_max - STATUS_HEADROOM))
        self._window = window

    def _goodbye(self, client: mqtt.Client) -> None:
        """Retained `offline` status, confirmed by the broker, then a clean DISCONNECT."""
        info = client.publish(
            self.status_topic,
            self._status.payload("offline"),
            qos=1,
            retain=True,
        )
        deadline = self._clock.monotonic() + OFFLINE_FLUSH_S
        while not info.is_published() and self._clock.monotonic() < deadline:
            if client.loop(0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._acks.flush(force=True)
        if self._will is not None:
            self._will.close()  # clean: the retained `offline` above stands
            self._will = None
        client.disconnect()
        client.loop(0.05)

    # ------------------------------------------------------------ paho callbacks (this thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connack = reason_code
        if reason_code.is_failure or properties is None:
            return
        self._broker_limit = getattr(properties, "MaximumPacketSize", None)
        self._receive_max = getattr(properties, "ReceiveMaximum", None)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        if reason_code.is_failure:
            self._refused.append((entry[0], entry[1], reason_code))
            return
        self._acks.add(entry[0])
        self._stats["acked"] += 1

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: Any,
        properties: Any,
    ) -> None:
        self._config.subscribed()

    def _on_message(
        self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage
    ) -> None:
        self._config.message(msg.topic, bytes(msg.payload))
