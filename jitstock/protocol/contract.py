"""The wire contract's definitions: limits, reject reasons, topics, message types and
their encoding (see :mod:`jitstock.protocol`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

PROTOCOL_VERSION = "v1"
TOPIC_ROOT = "jit/v1"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Bin and scanner ids.  No '/': a bin id is one segment of REST paths (/api/v1/bins/{id})
# and of MQTT topics, and the API, the wire and the docs must allow the same ids.
BIN_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

# Largest payload the server accepts; a 500-reading batch is ~40 KiB.
MAX_PAYLOAD_BYTES = 256 * 1024
# Largest MQTT packet the broker takes (deploy/mosquitto.conf max_packet_size, advertised to
# MQTT 5 clients): the payload limit plus room for the fixed header, the longest agent topic
# (145 bytes), the packet id and MQTT 5 properties.  A payload over MAX_PAYLOAD_BYTES that
# still fits reaches the server and is counted (oversized); nothing is dropped unseen.
MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + 1024
# Most readings or scans one batch may carry.
MAX_ITEMS_PER_BATCH = 2000
# Heaviest gross weight we believe (2 t): anything above is a wiring fault or garbage.
MAX_GRAMS = 2_000_000.0
# Readings may be old after an outage (the edge outbox holds them for days) ...
MAX_PAST_MS = 30 * 24 * 3600 * 1000
# ... but never from the future beyond clock skew between a Pi and the server.
MAX_FUTURE_MS = 5 * 60 * 1000
# A scan code: 1 .. MAX_CODE_LEN characters (not bytes), each printable or GS.
MAX_CODE_LEN = 256
# ASCII GS (group separator): how a scanner sends the FNC1 that separates the
# variable-length fields of a GS1-128 / GS1 DataMatrix label.  The one control
# character a scan code may hold (see :func:`valid_code`).
GS = "\x1d"
# Every integer on the wire must fit a signed 64-bit column (BIGINT) and Python's sqlite3.
MAX_INT64 = 2**63 - 1
# seq counts batches from 1; beyond int64 the state DB cannot store it.
MAX_SEQ = MAX_INT64
# An integral float (a PLC that has only REALs) stands for an integer up to 2**53: beyond,
# a double no longer holds every integer, so the device's value may already be lost.
MAX_EXACT_FLOAT_INT = 2**53
# A status's version is stored in a VARCHAR(64) column, a sensor's fault in VARCHAR(200).
MAX_LABEL_LEN = 64
MAX_FAULT_LEN = 200
# Agent ids that name something else at the agent level of a topic: orders to suppliers
# are published on jit/v1/{site}/orders/{supplier}, so an agent called "orders" would
# collide with them (a supplier with id "status" would feed the server's own orders back).
RESERVED_AGENT_IDS = frozenset({"orders"})


def valid_code(code: str) -> bool:
    """A scan code the contract allows: 1 .. MAX_CODE_LEN characters, printable or GS
    (U+001D, a GS1 label's FNC1 separator), at least one of them printable."""
    rest = code.replace(GS, "")
    return 0 < len(code) <= MAX_CODE_LEN and rest != "" and rest.isprintable()


def valid_label(text: object, max_len: int) -> bool:
    """A status's ``version`` or a sensor's ``fault``: a string of at most ``max_len``
    printable characters (empty allowed).  Like a scan code it may hold no control
    character: the server stores, shows and logs it, and a newline or ESC from a device
    would forge a log line or a terminal's output."""
    return isinstance(text, str) and len(text) <= max_len and text.isprintable()


Kind = Literal["readings", "scans", "status", "config"]
AGENT_KINDS: tuple[Kind, ...] = ("readings", "scans", "status", "config")

# Every label a rejection is counted under (jitstock_rejected_batches_total and
# jitstock_rejected_items_total{reason}), with what it means.  docs/protocol.md has the
# same table with an example each; tests/test_protocol_reasons.py finds every label the
# code can produce and checks it is here and there.
REJECT_REASONS: Mapping[str, str] = {
    "oversized": f"the payload is over {MAX_PAYLOAD_BYTES} bytes",
    "malformed_json": "the payload is not JSON (NaN, 1e400 and trailing garbage included)",
    "wrong_type": "a field is missing, of the wrong JSON type, or not matching its pattern",
    "out_of_range": "an integer field (seq, sent_ms, status ts_ms) is outside its range",
    "too_many_items": f"more than {MAX_ITEMS_PER_BATCH} readings, scans or sensors",
    "agent_mismatch": "the payload's agent is not the topic's agent",
    "bad_topic": "the topic is not jit/v1/{site}/{agent}/{kind}",
    "reserved_topic": "the agent level of the topic is reserved (orders)",
    "bad_timestamp": "ts_ms too far in the future or the past of the server's clock",
    "bad_weight": f"grams outside 0..{MAX_GRAMS:g}",
    "bad_code": f"a scan code that is empty, over {MAX_CODE_LEN} characters, "
    "or holds a control character other than GS or nothing but GS",
    "wrong_site": "the topic's site is not the site of the agent's record",
    "unknown_agent": "no agent record with this id (POST /api/v1/agents)",
    "unknown_bin": "no bin with this id",
    "bin_of_other_agent": "the bin exists but another agent feeds it",
    "bad_calibration": "the bin's calibration cannot give a count (unit weight, tare)",
    "seq_jump": "seq more than MAX_SEQ_JUMP beyond the last one applied: a broken counter",
    "retained": "a readings or scans message the broker keeps as retained, replayed at "
    "a (re)subscribe",
}


class ProtocolError(ValueError):
    """A payload or topic that breaks the wire contract; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ---------------------------------------------------------------- topics


def agent_topic(site: str, agent: str, kind: Kind) -> str:
    """Topic of one agent's stream of ``kind``."""
    if not NAME_RE.fullmatch(site) or not NAME_RE.fullmatch(agent):
        raise ProtocolError(
            "bad_topic", f"site/agent must match {NAME_RE.pattern}: {site!r}/{agent!r}"
        )
    if agent in RESERVED_AGENT_IDS:
        raise ProtocolError("bad_topic", f"agent id {agent!r} is reserved")
    return f"{TOPIC_ROOT}/{site}/{agent}/{kind}"


def orders_topic(site: str, supplier: str) -> str:
    """Topic a supplier system subscribes to for its orders."""
    return f"{TOPIC_ROOT}/{site}/orders/{supplier}"


def subscription(kind: Kind) -> str:
    """Wildcard filter for ``kind`` from every agent of every site."""
    return f"{TOPIC_ROOT}/+/+/{kind}"


@dataclass(slots=True, frozen=True)
class TopicAddress:
    site: str
    agent: str
    kind: Kind


def parse_topic(topic: str) -> TopicAddress:
    """Split an agent topic into site, agent and kind."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != TOPIC_ROOT:
        raise ProtocolError("bad_topic", f"not a jit/v1 agent topic: {topic!r}")
    site, agent, kind = parts[2], parts[3], parts[4]
    if agent in RESERVED_AGENT_IDS:
        raise ProtocolError(
            "reserved_topic", f"{topic!r} is an order topic, not an agent topic"
        )
    if (
        not NAME_RE.fullmatch(site)
        or not NAME_RE.fullmatch(agent)
        or kind not in AGENT_KINDS
    ):
        raise ProtocolError("bad_topic", f"not a jit/v1 agent topic: {topic!r}")
    return TopicAddress(site, agent, kind)


def is_orders_topic(topic: str) -> bool:
    """Whether ``topic`` is a server-to-supplier order topic (jit/v1/{site}/orders/...)."""
    parts = topic.split("/")
    return (
        len(parts) >= 4
        and f"{parts[0]}/{parts[1]}" == TOPIC_ROOT
        and parts[3] in RESERVED_AGENT_IDS
    )


# ---------------------------------------------------------------- messages


@dataclass(slots=True, frozen=True)
class Reading:
    """One stable (or keep-alive) gross weight of one bin."""

    bin: str
    ts_ms: int
    grams: float
    stable: bool = True


@dataclass(slots=True, frozen=True)
class ReadingsBatch:
    agent: str
    seq: int
    sent_ms: int | None  # when the batch was closed; informational, may be left out
    readings: tuple[Reading, ...]


@dataclass(slots=True, frozen=True)
class Scan:
    scanner: str
    ts_ms: int
    code: str


@dataclass(slots=True, frozen=True)
class ScansBatch:
    agent: str
    seq: int
    sent_ms: int | None
    scans: tuple[Scan, ...]


@dataclass(slots=True, frozen=True)
class SensorStatus:
    bin: str
    ok: bool
    fault: str | None = None


@dataclass(slots=True, frozen=True)
class Status:
    state: Literal["online", "offline"]
    version: str
    ts_ms: int
    sensors: tuple[SensorStatus, ...] = ()


@dataclass(slots=True, frozen=True)
class BinMapping:
    """Which bin a scale port (and channel) feeds, with optional edge-side hints."""

    port: str
    bin: str
    channel: int = 0
    tare_hint_g: float | None = None


@dataclass(slots=True, frozen=True)
class AgentConfig:
    """Retained, server-owned configuration an agent applies without restarting."""

    bins: tuple[BinMapping, ...] = ()
    step_g: float | None = None
    keepalive_s: float | None = None
    stability_window_s: float | None = None
    stability_spread_g: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class Reject:
    """A reading dropped from an otherwise good batch, with the reason label."""

    index: int
    reason: str
    message: str


# ---------------------------------------------------------------- encoding


def _head(agent: str, seq: int, sent_ms: int | None) -> dict[str, Any]:
    head: dict[str, Any] = {"agent": agent, "seq": seq}
    if sent_ms is not None:
        head["sent_ms"] = sent_ms
    return head


def encode_readings(batch: ReadingsBatch) -> bytes:
    """Serialise a readings batch to its JSON payload."""
    body = _head(batch.agent, batch.seq, batch.sent_ms)
    body["readings"] = [
        {"bin": r.bin, "ts_ms": r.ts_ms, "grams": r.grams, "stable": r.stable}
        for r in batch.readings
    ]
    return orjson.dumps(body)


def encode_scans(batch: ScansBatch) -> bytes:
    """Serialise a scans batch to its JSON payload."""
    body = _head(batch.agent, batch.seq, batch.sent_ms)
    body["scans"] = [
        {"scanner": s.scanner, "ts_ms": s.ts_ms, "code": s.code} for s in batch.scans
    ]
    return orjson.dumps(body)


def encode_status(status: Status) -> bytes:
    """Serialise an agent status (also used for the last will)."""
    return orjson.dumps(
        {
            "state": status.state,
            "version": status.version,
            "ts_ms": status.ts_ms,
            "sensors": [
                {"bin": s.bin, "ok": s.ok, "fault": s.fault} for s in status.sensors
            ],
        }
    )


def encode_config(config: AgentConfig) -> bytes:
    """Serialise an agent configuration."""
    body: dict[str, Any] = {
        "bins": [
            {
                "port": b.port,
                "channel": b.channel,
                "bin": b.bin,
                "tare_hint_g": b.tare_hint_g,
            }
            for b in config.bins
        ]
    }
    for key in ("step_g", "keepalive_s", "stability_window_s", "stability_spread_g"):
        value = getattr(config, key)
        if value is not None:
            body[key] = value
    body.update(config.extra)
    return orjson.dumps(body)


def publish_packet_bytes(topic: str, payload: bytes, *, mqtt5: bool = True) -> int:
    """Size of the QoS 1 MQTT PUBLISH packet (no properties) carrying ``payload`` on
    ``topic``: what a broker compares with its Maximum Packet Size."""
    remaining = 2 + len(topic.encode()) + 2 + (1 if mqtt5 else 0) + len(payload)
    length_bytes = 1
    while remaining >= 128**length_bytes:
        length_bytes += 1
    return 1 + length_bytes + remaining


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the wire's time base)."""
    import time

    return time.time_ns() // 1_000_000
