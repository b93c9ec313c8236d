"""MQTT wire contract v1, shared by edge, server and firmware_sim.

Topics (``{site}`` and ``{agent}`` match ``[A-Za-z0-9_-]+``)::

    jit/v1/{site}/{agent}/readings   edge -> server  QoS 1            ReadingsBatch
    jit/v1/{site}/{agent}/scans      edge -> server  QoS 1            ScansBatch
    jit/v1/{site}/{agent}/status     edge -> server  QoS 1, retained  Status (last will: offline)
    jit/v1/{site}/{agent}/config     server -> edge  QoS 1, retained  AgentConfig
    jit/v1/{site}/orders/{supplier}  server -> supplier QoS 1         order JSON

docs/protocol.md documents the same contract for third-party devices.

docs/asyncapi.yaml holds the same contract as AsyncAPI 3.0 with a JSON Schema per
payload; tests/test_asyncapi.py keeps the two in agreement.

Decoding never raises anything but :class:`ProtocolError`.  A batch whose
envelope is bad is rejected whole; inside a good envelope each reading is
validated on its own, so one bad reading does not cost the good ones
(:func:`decode_readings` returns the rejects with their reasons).  Every reason
label is in :data:`REJECT_REASONS`.

Lenient where industrial devices need it: an integral float stands for an
integer (``1767225600249.0``), ``0``/``1`` for a boolean, ``sent_ms`` may be
left out.  Strict where it protects data: names, ranges, the agent of the topic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Container, Mapping
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
MAX_CODE_LEN = 256
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
    "bad_code": f"a scan code that is empty, over {MAX_CODE_LEN} characters or not printable",
    "wrong_site": "the topic's site is not the site of the agent's record",
    "unknown_agent": "no agent record with this id (POST /api/v1/agents)",
    "unknown_bin": "no bin with this id",
    "bin_of_other_agent": "the bin exists but another agent feeds it",
    "bad_calibration": "the bin's calibration cannot give a count (unit weight, tare)",
    "seq_jump": "seq more than MAX_SEQ_JUMP beyond the last one applied: a broken counter",
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


# ---------------------------------------------------------------- decoding


def _load(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            "oversized", f"payload is {len(payload)} bytes, limit {MAX_PAYLOAD_BYTES}"
        )
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("malformed_json", f"payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ProtocolError("wrong_type", "payload must be a JSON object")
    return doc


def _integral(value: Any) -> int | None:
    """``value`` as an integer: an int, or an integral float up to 2**53; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if (
        isinstance(value, float)
        and value.is_integer()
        and abs(value) <= MAX_EXACT_FLOAT_INT
    ):
        return int(value)
    return None


def _boolean(value: Any) -> bool | None:
    """``value`` as a boolean: true/false, or 0/1 as PLCs send them; else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    return None


def _int(
    doc: dict[str, Any], key: str, *, minimum: int = 0, maximum: int = MAX_INT64
) -> int:
    raw = doc.get(key)
    value = _integral(raw)
    if value is None:
        raise ProtocolError(
            "wrong_type",
            f"field {key!r} must be an integer, got {type(raw).__name__}",
        )
    if value < minimum or value > maximum:
        raise ProtocolError(
            "out_of_range",
            f"field {key!r} must be in {minimum}..{maximum}, got {value}",
        )
    return value


def _envelope(
    doc: dict[str, Any], list_key: str, expected_agent: str | None
) -> tuple[str, int, int | None, list[Any]]:
    agent = doc.get("agent")
    if not isinstance(agent, str) or not NAME_RE.fullmatch(agent):
        raise ProtocolError(
            "wrong_type", f"field 'agent' must be a string matching {NAME_RE.pattern}"
        )
    if expected_agent is not None and agent != expected_agent:
        raise ProtocolError(
            "agent_mismatch",
            f"payload agent {agent!r} does not match topic agent {expected_agent!r}",
        )
    seq = _int(doc, "seq", minimum=1, maximum=MAX_SEQ)
    sent_ms = None if doc.get("sent_ms") is None else _int(doc, "sent_ms")
    items = doc.get(list_key)
    if not isinstance(items, list):
        raise ProtocolError("wrong_type", f"field {list_key!r} must be a list")
    if len(items) > MAX_ITEMS_PER_BATCH:
        raise ProtocolError(
            "too_many_items",
            f"{len(items)} {list_key} in one batch, limit {MAX_ITEMS_PER_BATCH}",
        )
    return agent, seq, sent_ms, items


def _check_ts(raw: Any, now_ms: int | None) -> tuple[int | None, str | None]:
    """An item's ts_ms (None when not an integer) and what is wrong with it, if anything."""
    ts = _integral(raw)
    if ts is None or ts < 0:
        return ts, "field 'ts_ms' must be a non-negative integer"
    if ts > MAX_INT64:
        return ts, f"ts_ms {ts} is beyond a signed 64-bit integer"
    if now_ms is not None:
        if ts > now_ms + MAX_FUTURE_MS:
            return (
                ts,
                f"ts_ms {ts} is more than {MAX_FUTURE_MS // 1000} s in the future",
            )
        if ts < now_ms - MAX_PAST_MS:
            return (
                ts,
                f"ts_ms {ts} is more than {MAX_PAST_MS // 86_400_000} days in the past",
            )
    return ts, None


def decode_readings(
    payload: bytes, *, expected_agent: str | None = None, now_ms: int | None = None
) -> tuple[ReadingsBatch, list[Reject]]:
    """Decode and validate a readings batch; bad readings come back as rejects."""
    doc = _load(payload)
    agent, seq, sent_ms, items = _envelope(doc, "readings", expected_agent)
    good, rejects = _readings(items, now_ms)
    return ReadingsBatch(agent, seq, sent_ms, tuple(good)), rejects


def _readings(
    items: list[Any], now_ms: int | None
) -> tuple[list[Reading], list[Reject]]:
    """Validate readings one by one (the general path, naming each bad reading)."""
    good: list[Reading] = []
    rejects: list[Reject] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            rejects.append(Reject(i, "wrong_type", f"readings[{i}] must be an object"))
            continue
        bin_id = item.get("bin")
        if not isinstance(bin_id, str) or not BIN_RE.fullmatch(bin_id):
            rejects.append(
                Reject(
                    i,
                    "wrong_type",
                    f"readings[{i}].bin must be a string matching {BIN_RE.pattern}",
                )
            )
            continue
        ts, problem = _check_ts(item.get("ts_ms"), now_ms)
        if ts is None or problem is not None:
            reason = "wrong_type" if ts is None else "bad_timestamp"
            rejects.append(Reject(i, reason, f"readings[{i}]: {problem}"))
            continue
        grams = item.get("grams")
        if isinstance(grams, bool) or not isinstance(grams, int | float):
            rejects.append(
                Reject(i, "wrong_type", f"readings[{i}].grams must be a number")
            )
            continue
        grams = float(grams)
        if not math.isfinite(grams) or grams < 0 or grams > MAX_GRAMS:
            rejects.append(
                Reject(
                    i,
                    "bad_weight",
                    f"readings[{i}].grams {grams} outside 0..{MAX_GRAMS:g}",
                )
            )
            continue
        stable = _boolean(item.get("stable", True))
        if stable is None:
            rejects.append(
                Reject(
                    i, "wrong_type", f"readings[{i}].stable must be a boolean or 0/1"
                )
            )
            continue
        good.append(Reading(bin_id, ts, grams, stable))
    return good, rejects


@dataclass(slots=True)
class ReadingColumns:
    """A readings batch as columns: what the server's batch processing wants."""

    agent: str
    seq: int
    sent_ms: int | None
    bins: list[str]
    ts_ms: list[int]
    grams: list[float]
    stable: list[bool]


def decode_readings_columns(
    payload: bytes,
    *,
    expected_agent: str | None = None,
    now_ms: int | None = None,
    known_bins: Container[str] | None = None,
) -> tuple[ReadingColumns, list[Reject]]:
    """Decode a readings batch into columns, validating whole columns at once.

    Same contract as :func:`decode_readings`.  A well-formed batch is checked
    with a few C-level passes (types by ``set(map(type, ...))``, ranges by
    min/max); anything unusual falls back to the per-reading path, so a bad
    reading is still named and the good ones kept.  ``known_bins`` lets the
    caller replace the per-reading bin-name regex by a set lookup.
    """
    doc = _load(payload)
    agent, seq, sent_ms, items = _envelope(doc, "readings", expected_agent)
    fast = _columns(items, now_ms, known_bins)
    if fast is not None:
        bins, ts, grams, stable = fast
        return ReadingColumns(agent, seq, sent_ms, bins, ts, grams, stable), []
    good, rejects = _readings(items, now_ms)
    return (
        ReadingColumns(
            agent,
            seq,
            sent_ms,
            [r.bin for r in good],
            [r.ts_ms for r in good],
            [r.grams for r in good],
            [r.stable for r in good],
        ),
        rejects,
    )


def _columns(
    items: list[Any], now_ms: int | None, known_bins: Container[str] | None
) -> tuple[list[str], list[int], list[float], list[bool]] | None:
    if not items:
        return [], [], [], []
    if set(map(type, items)) != {dict}:
        return None
    try:
        bins = [r["bin"] for r in items]
        ts = [r["ts_ms"] for r in items]
        grams = [r["grams"] for r in items]
    except KeyError:
        return None
    stable = [r.get("stable", True) for r in items]
    if (
        set(map(type, bins)) != {str}
        or set(map(type, ts)) != {int}
        or not set(map(type, grams)) <= {float, int}
        or set(map(type, stable)) != {bool}
    ):
        return None
    if known_bins is not None:
        if not all(b in known_bins for b in bins):
            return None
    elif not all(map(BIN_RE.fullmatch, bins)):
        return None
    # orjson never yields NaN or infinity, so min/max bound every value
    if min(grams) < 0 or max(grams) > MAX_GRAMS or min(ts) < 0 or max(ts) > MAX_INT64:
        return None
    if now_ms is not None and (
        max(ts) > now_ms + MAX_FUTURE_MS or min(ts) < now_ms - MAX_PAST_MS
    ):
        return None
    return bins, ts, [float(g) for g in grams], stable


def decode_scans(
    payload: bytes, *, expected_agent: str | None = None, now_ms: int | None = None
) -> tuple[ScansBatch, list[Reject]]:
    """Decode and validate a scans batch; bad scans come back as rejects."""
    doc = _load(payload)
    agent, seq, sent_ms, items = _envelope(doc, "scans", expected_agent)
    good: list[Scan] = []
    rejects: list[Reject] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            rejects.append(Reject(i, "wrong_type", f"scans[{i}] must be an object"))
            continue
        scanner, code, ts = item.get("scanner"), item.get("code"), item.get("ts_ms")
        if not isinstance(scanner, str) or not BIN_RE.fullmatch(scanner):
            rejects.append(
                Reject(
                    i,
                    "wrong_type",
                    f"scans[{i}].scanner must be a string matching {BIN_RE.pattern}",
                )
            )
            continue
        if (
            not isinstance(code, str)
            or not code
            or len(code) > MAX_CODE_LEN
            or not code.isprintable()
        ):
            rejects.append(
                Reject(
                    i,
                    "bad_code",
                    f"scans[{i}].code must be 1..{MAX_CODE_LEN} printable characters",
                )
            )
            continue
        ts_ms, problem = _check_ts(ts, now_ms)
        if ts_ms is None or problem is not None:
            rejects.append(Reject(i, "bad_timestamp", f"scans[{i}]: {problem}"))
            continue
        good.append(Scan(scanner, ts_ms, code))
    return ScansBatch(agent, seq, sent_ms, tuple(good)), rejects


def decode_status(payload: bytes, *, now_ms: int | None = None) -> Status:
    """Decode an agent status message (``now_ms`` bounds ``ts_ms`` to the clock-skew window)."""
    doc = _load(payload)
    state = doc.get("state")
    if state not in ("online", "offline"):
        raise ProtocolError("wrong_type", "field 'state' must be 'online' or 'offline'")
    version = doc.get("version", "")
    if not isinstance(version, str) or len(version) > MAX_LABEL_LEN:
        raise ProtocolError(
            "wrong_type",
            f"field 'version' must be a string of at most {MAX_LABEL_LEN} characters",
        )
    ts_ms = _int(doc, "ts_ms")
    if now_ms is not None and ts_ms > now_ms + MAX_FUTURE_MS:
        # a retained status may be old (a last will says ts_ms 0), but never from the future
        raise ProtocolError(
            "bad_timestamp",
            f"ts_ms {ts_ms} is more than {MAX_FUTURE_MS // 1000} s in the future",
        )
    raw = doc.get("sensors", [])
    if not isinstance(raw, list):
        raise ProtocolError("wrong_type", "field 'sensors' must be a list")
    if len(raw) > MAX_ITEMS_PER_BATCH:
        raise ProtocolError(
            "too_many_items",
            f"{len(raw)} sensors in one status, limit {MAX_ITEMS_PER_BATCH}",
        )
    sensors = []
    for i, s in enumerate(raw):
        ok = _boolean(s.get("ok")) if isinstance(s, dict) else None
        if (
            not isinstance(s, dict)
            or not isinstance(s.get("bin"), str)
            or not BIN_RE.fullmatch(s["bin"])
            or ok is None
        ):
            raise ProtocolError(
                "wrong_type",
                f"sensors[{i}] must be an object with 'bin' matching {BIN_RE.pattern} "
                "and boolean (or 0/1) 'ok'",
            )
        fault = s.get("fault")
        if fault is not None and (
            not isinstance(fault, str) or len(fault) > MAX_FAULT_LEN
        ):
            raise ProtocolError(
                "wrong_type",
                f"sensors[{i}].fault must be null or a string of at most "
                f"{MAX_FAULT_LEN} characters",
            )
        sensors.append(SensorStatus(s["bin"], ok, fault))
    return Status(state, version, ts_ms, tuple(sensors))


def decode_config(payload: bytes) -> AgentConfig:
    """Decode a retained agent configuration."""
    doc = _load(payload)
    raw = doc.pop("bins", [])
    if not isinstance(raw, list):
        raise ProtocolError("wrong_type", "field 'bins' must be a list")
    bins = []
    for i, b in enumerate(raw):
        if (
            not isinstance(b, dict)
            or not isinstance(b.get("port"), str)
            or not isinstance(b.get("bin"), str)
        ):
            raise ProtocolError(
                "wrong_type",
                f"bins[{i}] must be an object with string 'port' and 'bin'",
            )
        channel = _integral(b.get("channel", 0))
        tare = b.get("tare_hint_g")
        if channel is None or channel < 0:
            raise ProtocolError(
                "wrong_type", f"bins[{i}].channel must be a non-negative integer"
            )
        if tare is not None and (
            isinstance(tare, bool) or not isinstance(tare, int | float)
        ):
            raise ProtocolError("wrong_type", f"bins[{i}].tare_hint_g must be a number")
        bins.append(
            BinMapping(
                b["port"], b["bin"], channel, None if tare is None else float(tare)
            )
        )
    values: dict[str, float | None] = {}
    for key in ("step_g", "keepalive_s", "stability_window_s", "stability_spread_g"):
        v = doc.pop(key, None)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, int | float) or v <= 0
        ):
            raise ProtocolError(
                "wrong_type", f"field {key!r} must be a positive number"
            )
        values[key] = None if v is None else float(v)
    return AgentConfig(bins=tuple(bins), extra=doc, **values)


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
