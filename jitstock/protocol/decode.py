"""Decoding payloads from the wire: never raises anything but
:class:`~jitstock.protocol.contract.ProtocolError` (see :mod:`jitstock.protocol`)."""

from __future__ import annotations

import math
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import orjson

from jitstock.protocol.contract import (
    BIN_RE,
    MAX_CODE_LEN,
    MAX_EXACT_FLOAT_INT,
    MAX_FAULT_LEN,
    MAX_FUTURE_MS,
    MAX_GRAMS,
    MAX_INT64,
    MAX_ITEMS_PER_BATCH,
    MAX_LABEL_LEN,
    MAX_PAST_MS,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    NAME_RE,
    AgentConfig,
    BinMapping,
    ProtocolError,
    Reading,
    ReadingsBatch,
    Reject,
    Scan,
    ScansBatch,
    SensorStatus,
    Status,
    valid_code,
    valid_label,
)


def load_payload(payload: bytes) -> dict[str, Any]:
    """The payload's JSON object, size-checked; ``ProtocolError`` otherwise."""
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
    doc = load_payload(payload)
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
    doc: dict[str, Any] | None = None,
) -> tuple[ReadingColumns, list[Reject]]:
    """Decode a readings batch into columns, validating whole columns at once.

    Same contract as :func:`decode_readings`.  A well-formed batch is checked
    with a few C-level passes (types by ``set(map(type, ...))``, ranges by
    min/max); anything unusual falls back to the per-reading path, so a bad
    reading is still named and the good ones kept.  ``known_bins`` lets the
    caller replace the per-reading bin-name regex by a set lookup.  ``doc``: the
    payload already parsed by :func:`load_payload` (not modified here), to spare a
    second parse.
    """
    if doc is None:
        doc = load_payload(payload)
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
    doc = load_payload(payload)
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
        if not isinstance(code, str) or not valid_code(code):
            rejects.append(
                Reject(
                    i,
                    "bad_code",
                    f"scans[{i}].code must be 1..{MAX_CODE_LEN} printable characters "
                    "or GS (\\u001d), at least one printable",
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
    doc = load_payload(payload)
    state = doc.get("state")
    if state not in ("online", "offline"):
        raise ProtocolError("wrong_type", "field 'state' must be 'online' or 'offline'")
    version = doc.get("version", "")
    if not valid_label(version, MAX_LABEL_LEN):
        raise ProtocolError(
            "wrong_type",
            f"field 'version' must be a string of at most {MAX_LABEL_LEN} "
            "printable characters",
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
        if fault is not None and not valid_label(fault, MAX_FAULT_LEN):
            raise ProtocolError(
                "wrong_type",
                f"sensors[{i}].fault must be null or a string of at most "
                f"{MAX_FAULT_LEN} printable characters",
            )
        sensors.append(SensorStatus(s["bin"], ok, fault))
    return Status(state, version, ts_ms, tuple(sensors))


def decode_config(payload: bytes) -> AgentConfig:
    """Decode a retained agent configuration."""
    doc = load_payload(payload)
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
