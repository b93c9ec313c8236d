"""InfluxDB line protocol encoding (precision ms), built for the ingest hot path.

The escaped series key (measurement + sorted tags) is cached per distinct
(measurement, tags) tuple and the escaped ``key=`` prefix per field key, so a
point costs a dict lookup plus formatting its field values.  Points of common
shape (known series, plain float/int/bool/str values) take the fast path; the
rest go through :mod:`jitstock.server.tsdb.model` validation, which either
fills the caches or rejects the point.

Escaping (docs.influxdata.com, "Line protocol" / special characters):
measurement: ``,`` and space; tag keys, tag values, field keys: ``,``, ``=``
and space; string field values: ``"`` and ``\\``.  Integers carry an ``i``
suffix; floats are written with ``repr`` (shortest form that round-trips).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import orjson

from jitstock.server.tsdb.errors import InvalidPoint
from jitstock.server.tsdb.model import (
    MAX_TS_MS,
    MIN_TS_MS,
    FieldValue,
    Frame,
    Point,
    Tags,
    canonical_series,
    check_ts,
    normalize_fields,
)

# Distinct series we remember escaped; beyond it the cache starts over (a leak guard, not a tuning knob).
MAX_CACHED_SERIES = 200_000
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


def escape_measurement(name: str) -> str:
    """Measurement name with commas and spaces escaped."""
    return name.replace(",", "\\,").replace(" ", "\\ ")


def escape_key(text: str) -> str:
    """Tag key, tag value or field key with commas, ``=`` and spaces escaped."""
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def escape_string(value: str) -> str:
    """String field value (without its quotes) with backslashes and double quotes escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def format_value(value: FieldValue) -> str:
    """One normalised field value in line protocol form."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return f"{value}i"
    if type(value) is float:
        return repr(value)
    return f'"{escape_string(value)}"'  # type: ignore[arg-type]


def series_key(measurement: str, tags: Tags) -> str:
    """Escaped ``measurement,k=v,...`` for a validated series (tags sorted, empty values dropped)."""
    m, items = canonical_series(measurement, tags)
    return ",".join(
        [escape_measurement(m), *(f"{escape_key(k)}={escape_key(v)}" for k, v in items)]
    )


class LineEncoder:
    """Encodes points to one line protocol body; keeps its caches across calls (one per store).

    The fast path writes a ``%``-template of the body (series keys, field keys,
    ``%s`` where a number goes) and formats every number of the batch at once with
    orjson, whose float output is the shortest string that round-trips (like
    ``repr``, about ten times faster).  Non-finite floats come out of orjson as
    ``null``; such a batch is redone point by point so the bad points are named.
    """

    def __init__(self) -> None:
        # (measurement, tags as given) -> escaped series key, '%' doubled for the template
        self._series: dict[tuple[str, Tags], str] = {}
        # (field key, value type) -> " key=%s" (first field) / ",key=%s" (others); ints get "%si"
        self._first: dict[tuple[str, type], str] = {}
        self._rest: dict[tuple[str, type], str] = {}

    def encode(
        self, points: Sequence[Point], rejected: list[tuple[Point, str]] | None = None
    ) -> tuple[bytes, int]:
        """(body, lines): the points as newline-terminated lines; bad points go to ``rejected`` (or raise)."""
        series = self._series
        first = self._first
        rest = self._rest
        tm: list[str] = []
        add = tm.append
        nums: list[object] = []
        nadd = nums.append
        n = 0
        bad: list[
            tuple[Point, str]
        ] = []  # only kept if the batch does not fall back to _encode_slow
        for p in points:
            mark_t, mark_n = len(tm), len(nums)
            try:
                add(series[(p.measurement, p.tags)])
                sep = first
                for k, v in p.fields:
                    t = type(v)
                    if t is int and not _I64_MIN <= v <= _I64_MAX:  # type: ignore[operator]
                        raise LookupError
                    add(
                        sep[(k, t)]
                    )  # KeyError for str values and unknown keys: slow path
                    nadd(v)
                    sep = rest
                ts = p.ts_ms
                if (
                    sep is first
                    or type(ts) is not int
                    or not MIN_TS_MS <= ts <= MAX_TS_MS
                ):
                    raise LookupError
                add(" %s\n")
                nadd(ts)
            except Exception:  # any surprise means "take the validating path"
                del tm[mark_t:], nums[mark_n:]
                try:
                    line = self._slow(p)
                except InvalidPoint as exc:
                    if rejected is None:
                        raise
                    bad.append((p, str(exc)))
                    continue
                add(line.replace("%", "%%") + "\n")
            n += 1
        try:
            formatted = orjson.dumps(nums)
        except (orjson.JSONEncodeError, TypeError):
            return self._encode_slow(points, rejected)
        if b"null" in formatted:  # NaN or infinity somewhere
            return self._encode_slow(points, rejected)
        if rejected is not None:
            rejected.extend(bad)
        values = tuple(formatted[1:-1].split(b",")) if nums else ()
        return "".join(tm).encode() % values, n

    def encode_frame(self, frame: Frame) -> tuple[bytes, int] | None:
        """(body, lines) for a frame, or None when it needs the validating path.

        The body is a ``%``-template of the rows (cached escaped series key plus
        a field template shared by every row) filled with all numbers of the
        frame formatted by one orjson call.  Only numeric and boolean columns
        take this path.
        """
        n = len(frame.ts_ms)
        if n == 0:
            return b"", 0
        parts = []
        for k, (name, column) in enumerate(
            zip(frame.fields, frame.columns, strict=True)
        ):
            kinds = set(map(type, column))
            if len(kinds) != 1:
                return None
            kind = kinds.pop()
            if kind is int:
                ints = cast("Sequence[int]", column)
                if min(ints) < _I64_MIN or max(ints) > _I64_MAX:
                    return None
            if kind not in (float, int, bool):
                return None
            cache = self._first if k == 0 else self._rest
            template = cache.get((name, kind))
            if template is None:
                return None  # first sight of this field here: the validating path fills the caches
            parts.append(template)
        ts = frame.ts_ms
        if set(map(type, ts)) != {int} or min(ts) < MIN_TS_MS or max(ts) > MAX_TS_MS:
            return None
        row_tail = "".join(parts) + " %s\n"
        series = self._series
        m = frame.measurement
        try:
            template = "".join([series[(m, tags)] + row_tail for tags in frame.tags])
        except (KeyError, TypeError):
            return None
        nums = [x for row in zip(*frame.columns, ts, strict=True) for x in row]
        try:
            formatted = orjson.dumps(nums)
        except (orjson.JSONEncodeError, TypeError):
            return None
        if b"null" in formatted:
            return None
        return template.encode() % tuple(formatted[1:-1].split(b",")), n

    def line(self, point: Point) -> str:
        """One point as a line without its newline (validating; raises InvalidPoint)."""
        return self._slow(point)

    def _encode_slow(
        self, points: Sequence[Point], rejected: list[tuple[Point, str]] | None
    ) -> tuple[bytes, int]:
        lines = []
        for p in points:
            try:
                lines.append(self._slow(p) + "\n")
            except InvalidPoint as exc:
                if rejected is None:
                    raise
                rejected.append((p, str(exc)))
        return "".join(lines).encode(), len(lines)

    def _slow(self, p: Point) -> str:
        if not isinstance(p, Point):
            raise InvalidPoint(f"not a Point: {p!r}")
        key = series_key(p.measurement, p.tags)
        parts = []
        for k, v in normalize_fields(p.fields):
            parts.append(f"{escape_key(k)}={format_value(v)}")
        ts = check_ts(p.ts_ms)
        # remember what passed so the next point of this shape takes the fast path
        try:
            if len(self._series) >= MAX_CACHED_SERIES:
                self._series.clear()
            self._series[(p.measurement, p.tags)] = key.replace("%", "%%")
        except TypeError:  # unhashable tags (a list): fine, just never fast
            pass
        for k, _ in p.fields:
            ek = escape_key(k).replace("%", "%%")
            for t in (float, bool):
                self._first[(k, t)] = f" {ek}=%s"
                self._rest[(k, t)] = f",{ek}=%s"
            self._first[(k, int)] = f" {ek}=%si"
            self._rest[(k, int)] = f",{ek}=%si"
        return f"{key} {','.join(parts)} {ts}"
