"""The embedded time series store: one SQLite file (WAL), InfluxDB's semantics.

A point is stored as one row per field in ``points(series, field, ts_ms, value)``
with that as the primary key, so writing the same series, field and timestamp
again replaces the value — InfluxDB's merge rule (last write wins, field by
field).  Like InfluxDB, a field keeps the type it was first written with; a point
with a conflicting type is rejected (counted in ``points_rejected``).
Downsampling is one ``GROUP BY`` over epoch-aligned buckets in SQL.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jitstock.ratelog import RateLimitedLog
from jitstock.server.private_files import ensure_private_file
from jitstock.server.tsdb.errors import InvalidPoint
from jitstock.server.tsdb.model import (
    Agg,
    FieldValue,
    Frame,
    Point,
    Row,
    Tags,
    canonical_series,
    check_query,
    check_ts,
    normalize_fields,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,            -- JSON list of [key, value] pairs, sorted by key
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS fields (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,            -- float | integer | boolean | string, as InfluxDB names them
    UNIQUE (measurement, name)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL,
    field_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value,
    PRIMARY KEY (series_id, field_id, ts_ms)
) WITHOUT ROWID;
"""
_TYPE_NAMES: dict[type, str] = {
    float: "float",
    int: "integer",
    bool: "boolean",
    str: "string",
}
_AGG_SQL: dict[str, str] = {
    "mean": "AVG(value)",
    "min": "MIN(value)",
    "max": "MAX(value)",
    "count": "COUNT(value)",
}


class SqliteStore:
    """TimeSeriesStore in a local SQLite file; thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"synchronous must be OFF/NORMAL/FULL/EXTRA, not {synchronous!r}"
            )
        self._lock = threading.Lock()
        ensure_private_file(path)
        self._db = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; FULL also survives power loss, at an fsync per write
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.executescript(_SCHEMA)
        self._bad = RateLimitedLog(log)
        self._counts = {"points_written": 0, "write_errors": 0, "points_rejected": 0}
        self._closed = False
        # series by canonical identity, by the tags tuple as given (fast path), and per measurement for filters
        self._series: dict[tuple[str, Tags], int] = {}
        self._series_given: dict[tuple[str, Tags], int] = {}
        self._by_measurement: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self._fields: dict[tuple[str, str], tuple[int, str]] = {}
        for sid, m, tags in self._db.execute(
            "SELECT id, measurement, tags FROM series"
        ):
            items: Tags = tuple((k, v) for k, v in json.loads(tags))
            self._series[(m, items)] = sid
            self._by_measurement.setdefault(m, []).append((sid, dict(items)))
        for fid, m, name, ftype in self._db.execute(
            "SELECT id, measurement, name, type FROM fields"
        ):
            self._fields[(m, name)] = (fid, ftype)

    # ------------------------------------------------------------------ writing

    def write(self, points: Sequence[Point]) -> None:
        """Store points in one transaction (same series+field+timestamp: last write wins). Bad points are counted."""
        if not points:
            return
        rejected: list[tuple[Point, str]] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            rows: list[tuple[int, int, int, FieldValue]] = []
            written = 0
            self._db.execute("BEGIN")
            try:
                for p in points:
                    try:
                        rows.extend(self._rows(p))
                        written += 1
                    except InvalidPoint as exc:
                        rejected.append((p, str(exc)))
                self._db.executemany(
                    "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?)", rows
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._counts["write_errors"] += 1
                self._reload_catalog()
                raise
            self._counts["points_written"] += written
            self._counts["points_rejected"] += len(rejected)
        if rejected:
            self._bad.log(
                logging.WARNING,
                "invalid_point",
                "%s",
                f"{len(rejected)} point(s) rejected, e.g. {rejected[0][1]}",
            )

    def write_frame(self, frame: Frame) -> None:
        """Columnar write (the embedded store takes the general path)."""
        self.write(frame.points())

    def _rows(self, p: Point) -> list[tuple[int, int, int, FieldValue]]:
        """The point's rows; creates its series and fields as needed (inside the caller's transaction)."""
        if not isinstance(p, Point):
            raise InvalidPoint(f"not a Point: {p!r}")
        try:
            sid = self._series_given.get((p.measurement, p.tags))
        except TypeError as exc:
            raise InvalidPoint(
                f"tags must be a tuple of (key, value) pairs, got {p.tags!r}"
            ) from exc
        ts = check_ts(p.ts_ms)
        fields = normalize_fields(p.fields)
        m = p.measurement
        typed = []
        for k, v in fields:
            tname = _TYPE_NAMES[type(v)]
            known = self._fields.get((m, k))
            if known is not None and known[1] != tname:
                raise InvalidPoint(
                    f"field type conflict: {m}.{k} is {known[1]}, got {tname}"
                )
            typed.append((k, v, tname, known))
        if sid is None:
            sid = self._series_id(p.measurement, p.tags)
        out = []
        for k, v, tname, known in typed:
            if known is None:
                cur = self._db.execute(
                    "INSERT INTO fields (measurement, name, type) VALUES (?, ?, ?)",
                    (m, k, tname),
                )
                known = self._fields[(m, k)] = (int(cur.lastrowid or 0), tname)
            out.append((sid, known[0], ts, v))
        return out

    def _series_id(self, measurement: str, tags: Tags) -> int:
        m, items = canonical_series(measurement, tags)
        sid = self._series.get((m, items))
        if sid is None:
            cur = self._db.execute(
                "INSERT INTO series (measurement, tags) VALUES (?, ?)",
                (m, json.dumps([list(t) for t in items])),
            )
            sid = self._series[(m, items)] = int(cur.lastrowid or 0)
            self._by_measurement.setdefault(m, []).append((sid, dict(items)))
        self._series_given[(measurement, tags)] = sid
        return sid

    def _reload_catalog(self) -> None:
        """After a rollback the in-memory series/fields may name rows that no longer exist."""
        self._series.clear()
        self._series_given.clear()
        self._by_measurement.clear()
        self._fields.clear()
        for sid, m, tags in self._db.execute(
            "SELECT id, measurement, tags FROM series"
        ):
            items: Tags = tuple((k, v) for k, v in json.loads(tags))
            self._series[(m, items)] = sid
            self._by_measurement.setdefault(m, []).append((sid, dict(items)))
        for fid, m, name, ftype in self._db.execute(
            "SELECT id, measurement, name, type FROM fields"
        ):
            self._fields[(m, name)] = (fid, ftype)

    # ------------------------------------------------------------------ reading

    def _match(self, measurement: str, tags: Mapping[str, str]) -> list[int]:
        """Series of the measurement whose tags include every filter (an empty value matches a missing tag)."""
        want = list(tags.items())
        return [
            sid
            for sid, have in self._by_measurement.get(measurement, ())
            if all(have.get(k, "") == v for k, v in want)
        ]

    def query_raw(
        self,
        measurement: str,
        tags: Mapping[str, str],
        start_ms: int,
        end_ms: int,
        fields: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Points in [start_ms, end_ms) of every series matching tags, ascending time."""
        check_query(measurement, tags, start_ms, end_ms)
        if limit is not None and limit <= 0:
            return []
        with self._lock:
            sids = self._match(measurement, tags)
            known = {
                fid: (name, ftype)
                for (m, name), (fid, ftype) in self._fields.items()
                if m == measurement
            }
            if fields is not None:
                wanted = set(fields)
                known = {fid: nt for fid, nt in known.items() if nt[0] in wanted}
            if not sids or not known:
                return []
            cur = self._db.execute(
                "SELECT ts_ms, series_id, field_id, value FROM points"
                " WHERE series_id IN (SELECT value FROM json_each(?)) AND field_id IN (SELECT value FROM json_each(?))"
                " AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms, series_id",
                (json.dumps(sids), json.dumps(list(known)), start_ms, end_ms),
            )
            rows: list[Row] = []
            last: tuple[int, int] | None = None
            row: Row = {}
            for ts, sid, fid, value in cur:
                if (ts, sid) != last:
                    if limit is not None and len(rows) >= limit:
                        break
                    row = {"ts_ms": ts}
                    rows.append(row)
                    last = (ts, sid)
                name, ftype = known[fid]
                row[name] = _from_db(value, ftype)
            cur.close()
        return rows

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
        """One value per epoch-aligned every_ms bucket covering [start_ms, end_ms); empty: None (count: 0)."""
        check_query(measurement, tags, start_ms, end_ms, every_ms, agg)
        if end_ms <= start_ms:
            return []
        found: dict[int, Any] = {}
        ftype = "float"
        with self._lock:
            sids = self._match(measurement, tags)
            known = self._fields.get((measurement, field))
            if sids and known is not None:
                fid, ftype = known
                # bucket = floor(ts / every) * every, also for negative timestamps (SQLite's % truncates)
                bucket = "ts_ms - ((ts_ms % :e) + :e) % :e"
                if agg == "last":
                    select = f"SELECT {bucket} AS b, value, MAX(ts_ms)"  # SQLite: bare column from the max row
                else:
                    select = f"SELECT {bucket} AS b, {_AGG_SQL[agg]}"
                cur = self._db.execute(
                    f"{select} FROM points WHERE series_id IN (SELECT value FROM json_each(:s))"
                    " AND field_id = :f AND ts_ms >= :start AND ts_ms < :end GROUP BY b",
                    {
                        "e": every_ms,
                        "s": json.dumps(sids),
                        "f": fid,
                        "start": start_ms,
                        "end": end_ms,
                    },
                )
                found = {row[0]: row[1] for row in cur}
                cur.close()
        empty: float | None = 0 if agg == "count" else None
        out: list[tuple[int, float | None]] = []
        for t in range(start_ms - start_ms % every_ms, end_ms, every_ms):
            v = found.get(t)
            if v is None:
                out.append((t, empty))
            elif agg == "count":
                out.append((t, int(v)))
            elif agg == "last" and ftype in ("boolean", "string"):
                out.append((t, _from_db(v, ftype)))
            else:
                out.append((t, float(v)))
        return out

    # ------------------------------------------------------------------ housekeeping

    def stats(self) -> dict[str, Any]:
        """Counters; the spool gauges are always zero (nothing to spool)."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        out.update(
            backend="sqlite", spool_points=0, spool_batches=0, spool_oldest_age_s=0.0
        )
        return out

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()


def _from_db(value: Any, ftype: str) -> Any:
    """SQLite keeps bools as 0/1 and may hand back an int for a float column: restore the field's type."""
    if ftype == "boolean":
        return bool(value)
    if ftype == "float":
        return float(value)
    return value
