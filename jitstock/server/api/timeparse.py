"""Query-string times: instants as epoch ms or ISO 8601, durations as ms or '5m'-style.

Both are bounded (instants to 1970..2200, durations to ten years), so whatever a
client sends, the numbers that reach the stores fit a 64-bit integer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from jitstock.server.api.errors import FieldInvalid
from jitstock.server.api.schemas import MAX_EPOCH_MS

_DURATION = re.compile(r"^(\d{1,15})(ms|s|m|h|d|w)?$")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}
# A bucket or window longer than ten years is a typo.
MAX_DURATION_MS = 10 * 366 * 86_400_000
# Longer than any ISO 8601 time or 2200 in epoch ms; refused before parsing.
_MAX_INSTANT_CHARS = 40


def _bounded(field: str, ms: int) -> int:
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise FieldInvalid(
            field,
            f"must be between 0 and {MAX_EPOCH_MS} epoch ms (1970 to 2200)",
            where="query",
        )
    return ms


def parse_instant(field: str, value: str) -> int:
    """Epoch milliseconds from '1700000000000' or '2026-11-27T04:00:00Z' (naive ISO means UTC)."""
    text = value.strip()
    if len(text) > _MAX_INSTANT_CHARS:
        raise FieldInvalid(
            field, "too long for epoch milliseconds or an ISO 8601 time", where="query"
        )
    if re.fullmatch(r"[-+]?\d+", text):
        return _bounded(field, int(text))
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        ms = int(when.timestamp() * 1000)
    except (ValueError, OverflowError):
        raise FieldInvalid(
            field,
            f"{value!r} is neither epoch milliseconds nor an ISO 8601 time",
            where="query",
        ) from None
    return _bounded(field, ms)


def parse_duration(field: str, value: str) -> int:
    """Milliseconds from '60000', '500ms', '10s', '5m', '1h', '1d' or '1w'; positive, at most ten years."""
    m = _DURATION.match(value.strip())
    if m is None or int(m.group(1)) <= 0:
        raise FieldInvalid(
            field,
            f"{value[:_MAX_INSTANT_CHARS]!r} is not a positive duration like 10s, 5m, 1h or milliseconds",
            where="query",
        )
    ms = int(m.group(1)) * _UNIT_MS[m.group(2) or "ms"]
    if ms > MAX_DURATION_MS:
        raise FieldInvalid(
            field, f"at most {MAX_DURATION_MS} ms (ten years)", where="query"
        )
    return ms
