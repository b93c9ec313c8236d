"""InfluxQL text built only from quoted identifiers and literals, never from raw user strings.

InfluxQL's scanner (influxql/scanner.go ``ScanString``) reads double-quoted
identifiers and single-quoted strings alike, accepting the escapes ``\\n``,
``\\\\``, ``\\"`` and ``\\'``; any other backslash sequence is an error, so a
backslash is always doubled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jitstock.server.tsdb.model import Agg

_NS_PER_MS = 1_000_000
# InfluxDB's representable times (int64 ns minus reserved extremes); larger literals parse as unsigned and fail
_MIN_NS = -(2**63) + 2
_MAX_NS = 2**63 - 2
_FUNCS: dict[str, str] = {
    "mean": "MEAN",
    "min": "MIN",
    "max": "MAX",
    "last": "LAST",
    "count": "COUNT",
}


def _escape(text: str, quote: str) -> str:
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def quote_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier (measurement, tag key, field key, database)."""
    return '"' + _escape(name, '"') + '"'


def quote_string(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + _escape(value, "'") + "'"


def where(tags: Mapping[str, str], start_ms: int, end_ms: int) -> str:
    """WHERE clause: each tag equal to its value (``::tag`` so a same-named field cannot match) and [start, end)."""
    conds = [
        f"{quote_ident(k)}::tag = {quote_string(v)}" for k, v in sorted(tags.items())
    ]
    start_ns = min(max(start_ms * _NS_PER_MS, _MIN_NS), _MAX_NS)
    end_ns = min(max(end_ms * _NS_PER_MS, _MIN_NS), _MAX_NS)
    conds.append(f"time >= {start_ns}")
    conds.append(f"time < {end_ns}")
    return " WHERE " + " AND ".join(conds)


def select_raw(
    measurement: str,
    tags: Mapping[str, str],
    start_ms: int,
    end_ms: int,
    fields: Sequence[str] | None,
    limit: int | None,
) -> str:
    """Raw points in ascending time (all fields when fields is None)."""
    cols = (
        "*::field"
        if fields is None
        else ",".join(f"{quote_ident(f)}::field" for f in fields)
    )
    q = f"SELECT {cols} FROM {quote_ident(measurement)}{where(tags, start_ms, end_ms)} ORDER BY time ASC"
    if limit is not None:
        q += f" LIMIT {int(limit)}"
    return q


def select_downsampled(
    measurement: str,
    tags: Mapping[str, str],
    field: str,
    start_ms: int,
    end_ms: int,
    every_ms: int,
    agg: Agg,
) -> str:
    """One aggregate per epoch-aligned bucket; empty buckets null (count: 0)."""
    fill = "fill(0)" if agg == "count" else "fill(null)"
    return (
        f"SELECT {_FUNCS[agg]}({quote_ident(field)}::field) FROM {quote_ident(measurement)}"
        f"{where(tags, start_ms, end_ms)} GROUP BY time({int(every_ms)}ms) {fill}"
    )


def create_database(db: str) -> str:
    """CREATE DATABASE (a no-op when it exists)."""
    return f"CREATE DATABASE {quote_ident(db)}"


def show_field_keys(measurement: str) -> str:
    """Field names and their types for one measurement."""
    return f"SHOW FIELD KEYS FROM {quote_ident(measurement)}"
