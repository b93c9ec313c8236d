"""The store's data model: Point, the TimeSeriesStore protocol, and the validation both backends share.

Both backends accept and reject exactly the same points, so code and tests written
against the SQLite store behave the same against InfluxDB.  The rules are those
line protocol can represent faithfully on every InfluxDB generation:

- measurement, tag keys and field keys: non-empty, no control characters, no
  backslash, not ``time``; a measurement may not start with ``#`` (a comment line);
- tag values: no control characters and no trailing backslash (line protocol
  cannot escape a backslash before the separator); an empty tag value means
  "no such tag" (InfluxDB drops empty tags), so it is removed;
- field values: finite float, int64, bool or str (numpy scalars are converted);
- ``ts_ms``: an integer within InfluxDB's nanosecond range.

Series identity is (measurement, tag set): tags are compared sorted, so their
order in ``Point.tags`` does not matter.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from jitstock.server.tsdb.errors import InvalidPoint

FieldValue: TypeAlias = float | int | str | bool
Tags: TypeAlias = tuple[tuple[str, str], ...]
Fields: TypeAlias = tuple[tuple[str, FieldValue], ...]
Agg = Literal["mean", "min", "max", "last", "count"]
AGGS: tuple[Agg, ...] = ("mean", "min", "max", "last", "count")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# InfluxDB stores nanoseconds in an int64 and reserves the two extremes.
MIN_TS_MS = (INT64_MIN + 2) // 1_000_000 + 1
MAX_TS_MS = (INT64_MAX - 1) // 1_000_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: a series (measurement + tags), its field values, a timestamp in ms."""

    measurement: str
    tags: Tags
    fields: Fields
    ts_ms: int


Row: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Frame:
    """Many points of one measurement sharing field names, as columns: the ingest hot path.

    ``tags[i]``, ``columns[k][i]`` and ``ts_ms[i]`` make row i; every value of a
    column has the same type.  A frame is exactly equivalent to its points().
    """

    measurement: str
    tags: Sequence[Tags]
    fields: tuple[str, ...]
    columns: Sequence[Sequence[FieldValue]]
    ts_ms: Sequence[int]

    def __len__(self) -> int:
        return len(self.ts_ms)

    def points(self) -> list[Point]:
        """The same data as points (the general path)."""
        names = self.fields
        return [
            Point(self.measurement, tags, tuple(zip(names, values, strict=True)), ts)
            for tags, ts, *values in zip(
                self.tags, self.ts_ms, *self.columns, strict=True
            )
        ]

    def slice(self, start: int, stop: int) -> Frame:
        """Rows [start, stop)."""
        return Frame(
            self.measurement,
            self.tags[start:stop],
            self.fields,
            [c[start:stop] for c in self.columns],
            self.ts_ms[start:stop],
        )


class TimeSeriesStore(Protocol):
    """History of bin levels and scans: write points, read them back raw or downsampled."""

    def write(self, points: Sequence[Point]) -> None:
        """Store points; durable on return (in the backend, or in the local spool)."""
        ...

    def write_frame(self, frame: Frame) -> None:
        """Store a columnar frame; same semantics as write(frame.points()), faster."""
        ...

    def query_raw(
        self,
        measurement: str,
        tags: Mapping[str, str],
        start_ms: int,
        end_ms: int,
        fields: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Points in [start_ms, end_ms) of every series matching tags, ascending time, as {"ts_ms", field: value}."""
        ...

    def query_downsampled(
        self,
        measurement: str,
        tags: Mapping[str, str],
        field: str,
        start_ms: int,
        end_ms: int,
        every_ms: int,
        agg: Agg,
    ) -> list[tuple[int, float | None]]:
        """One value per epoch-aligned bucket of every_ms covering [start_ms, end_ms); empty buckets None (count: 0)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and gauges: spool_points, spool_oldest_age_s, points_written, write_errors, points_rejected."""
        ...

    def close(self) -> None:
        """Stop background work and release files and connections."""
        ...


def check_name(what: str, name: str) -> str:
    """A measurement, tag key or field key, or InvalidPoint."""
    if type(name) is not str or not name:
        raise InvalidPoint(f"{what} must be a non-empty string, got {name!r}")
    if "\\" in name or _CONTROL.search(name):
        raise InvalidPoint(f"{what} {name!r} contains a backslash or control character")
    if name == "time":
        raise InvalidPoint(f"{what} may not be 'time' (reserved by InfluxDB)")
    if what == "measurement" and name.startswith("#"):
        raise InvalidPoint(f"measurement {name!r} may not start with '#'")
    return name


def check_tag_value(key: str, value: str) -> str:
    """A tag value, or InvalidPoint."""
    if type(value) is not str:
        raise InvalidPoint(f"tag {key!r} value must be a string, got {value!r}")
    if value.endswith("\\") or _CONTROL.search(value):
        raise InvalidPoint(
            f"tag {key!r} value {value!r} ends with a backslash or contains a control character"
        )
    return value


def canonical_series(measurement: str, tags: Tags) -> tuple[str, Tags]:
    """Validated measurement and tags sorted by key without empty values (the series identity)."""
    check_name("measurement", measurement)
    try:
        items = [
            (check_name("tag key", k), check_tag_value(k, v))
            for k, v in tags
            if v != ""
        ]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidPoint):
            raise
        raise InvalidPoint(f"tags must be (key, value) pairs, got {tags!r}") from exc
    items.sort()
    for (a, _), (b, _) in zip(items, items[1:], strict=False):
        if a == b:
            raise InvalidPoint(f"duplicate tag key {a!r}")
    return measurement, tuple(items)


def normalize_value(key: str, value: object) -> FieldValue:
    """A field value as float/int/bool/str (numpy scalars converted), or InvalidPoint."""
    t = type(value)
    if t is float or t is int or t is bool or t is str:
        v: FieldValue = value  # type: ignore[assignment]
    elif (
        isinstance(value, bool)
        or getattr(getattr(value, "dtype", None), "kind", None) == "b"
    ):
        v = bool(value)
    elif isinstance(value, numbers.Integral):
        v = int(value)
    elif isinstance(value, numbers.Real):
        v = float(value)
    elif isinstance(value, str):
        v = str(value)
    else:
        raise InvalidPoint(f"field {key!r} has unsupported type {t.__name__}")
    if type(v) is float and not math.isfinite(v):
        raise InvalidPoint(f"field {key!r} is {v!r}; only finite floats can be stored")
    if type(v) is int and not INT64_MIN <= v <= INT64_MAX:
        raise InvalidPoint(f"field {key!r} = {v} does not fit in int64")
    return v


def check_ts(ts_ms: object) -> int:
    """A timestamp in ms as int within InfluxDB's range, or InvalidPoint."""
    if isinstance(ts_ms, numbers.Integral) and not isinstance(ts_ms, bool):
        ts = int(ts_ms)
    else:
        raise InvalidPoint(f"ts_ms must be an integer, got {ts_ms!r}")
    if not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise InvalidPoint(f"ts_ms {ts} is outside InfluxDB's time range")
    return ts


def normalize_fields(fields: Fields) -> list[tuple[str, FieldValue]]:
    """Validated field keys and values (a point needs at least one field)."""
    try:
        out = [(check_name("field key", k), normalize_value(k, v)) for k, v in fields]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidPoint):
            raise
        raise InvalidPoint(
            f"fields must be (key, value) pairs, got {fields!r}"
        ) from exc
    if not out:
        raise InvalidPoint("a point needs at least one field")
    return out


def check_query(
    measurement: str,
    tags: Mapping[str, str],
    start_ms: int,
    end_ms: int,
    every_ms: int = 1,
    agg: str | None = None,
) -> None:
    """Reject query arguments that no backend could answer meaningfully."""
    if agg is not None and agg not in AGGS:
        raise ValueError(f"unknown aggregate {agg!r}")
    if not isinstance(measurement, str) or not measurement:
        raise ValueError("measurement must be a non-empty string")
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"tag filter {k!r}={v!r}: keys and values must be strings")
    if not isinstance(start_ms, int) or not isinstance(end_ms, int):
        raise ValueError("start_ms and end_ms must be integers")
    if not isinstance(every_ms, int) or every_ms <= 0:
        raise ValueError("every_ms must be a positive integer")
