"""Query-string times: instants as epoch ms or ISO 8601, durations as ms or '5m'-style."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from jitstock.server.api.errors import FieldInvalid

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)?$")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
}


def parse_instant(field: str, value: str) -> int:
    """Epoch milliseconds from '1700000000000' or '2026-11-27T04:00:00Z' (naive ISO means UTC)."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FieldInvalid(
            field,
            f"{value!r} is neither epoch milliseconds nor an ISO 8601 time",
            where="query",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def parse_duration(field: str, value: str) -> int:
    """Milliseconds from '60000', '500ms', '10s', '5m', '1h', '1d' or '1w'; must be positive."""
    m = _DURATION.match(value.strip())
    if m is None or int(m.group(1)) <= 0:
        raise FieldInvalid(
            field,
            f"{value!r} is not a positive duration like 10s, 5m, 1h or milliseconds",
            where="query",
        )
    return int(m.group(1)) * _UNIT_MS[m.group(2) or "ms"]
