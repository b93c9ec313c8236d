"""InfluxDB backend through the v1-compatible HTTP API (1.x, 2.x with DBRP, 3.x Core).

Writes: line protocol, gzip, ``precision=ms``, at most ``batch_points`` points per
request.  While InfluxDB is unreachable or failing (connection error, timeout,
5xx, 401/403/408/429) the request bodies go to a local :class:`Spool` and
``write`` still returns normally: the points are durable on disk.  As long as the
spool holds anything, new writes are appended behind it, and a background thread
replays it oldest first, so InfluxDB receives everything in write order.  A 400
(bad data — the encoder should have caught it) is logged, counted and dropped so
one poisoned batch cannot wedge the spool.

Queries: InfluxQL on ``/query`` built by :mod:`influxql` (quoted identifiers and
literals only).  Points still in the spool are not visible to queries.
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.ratelog import RateLimitedLog
from jitstock.server.tsdb import influxql
from jitstock.server.tsdb.errors import TsdbQueryError, TsdbUnavailable
from jitstock.server.tsdb.lineprotocol import LineEncoder
from jitstock.server.tsdb.model import Agg, Frame, Point, Row, check_query
from jitstock.server.tsdb.spool import Spool

log = logging.getLogger(__name__)

# Points per /write request: InfluxDB's guidance is 5,000-10,000; measured here ~4x the throughput of 100.
BATCH_POINTS = 5000
# A request slower than this counts as InfluxDB being away (writes then go to the spool).
HTTP_TIMEOUT_S = 10.0
# First and longest pause between replay attempts while InfluxDB stays away.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0
# gzip level 1 gets most of the size win at a fraction of level 6's CPU.
GZIP_LEVEL = 1
# Statuses that say "not now" rather than "bad data": keep the points and retry.
_RETRY_STATUSES = frozenset({401, 403, 404, 408, 429})
_DROPPED_RE = re.compile(rb"dropped=(\d+)")
# Outcomes of one POST: stored, refused as bad data (dropped), or to be tried again later.
_OK, _REJECTED, _RETRY = "ok", "rejected", "retry"


class InfluxStore:
    """TimeSeriesStore on InfluxDB's v1 HTTP API with a local spool for outages."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        spool_path: str | Path,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        batch_points: int = BATCH_POINTS,
        timeout_s: float = HTTP_TIMEOUT_S,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        clock: Clock = REAL_CLOCK,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be >= 1")
        self.db = db
        self._batch = batch_points
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = (user, password or "") if user and not token else None
        self._http = httpx.Client(
            base_url=url,
            headers=headers,
            auth=auth,
            timeout=timeout_s,
            transport=transport,
        )
        self._spool = Spool(spool_path, clock)
        self._encoder = LineEncoder()
        self._bad = RateLimitedLog(log)
        # one writer at a time: keeps write order and the encoder's caches
        self._lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counts = {
            "points_written": 0,
            "write_errors": 0,
            "points_rejected": 0,
            "batches_rejected": 0,
        }
        self._field_types: dict[str, dict[str, str]] = {}
        self._db_ready = False
        self._closed = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._replayer = threading.Thread(
            target=self._replay_loop, name="influx-spool-replay", daemon=True
        )
        self._replayer.start()
        if self._spool.points:
            self._wake.set()

    # ------------------------------------------------------------------ writing

    def write(self, points: Sequence[Point]) -> None:
        """Send points to InfluxDB, or spool them if it is away; durable on return. Bad points are counted."""
        if not points:
            return
        rejected: list[tuple[Point, str]] = []
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            bodies = [
                self._encoder.encode(points[i : i + self._batch], rejected)
                for i in range(0, len(points), self._batch)
            ]
            self._send_or_spool([(body, n) for body, n in bodies if n])
        if rejected:
            self._count("points_rejected", len(rejected))
            self._bad.log(
                logging.WARNING,
                "invalid_point",
                "%s",
                f"{len(rejected)} point(s) rejected, e.g. {rejected[0][1]}",
            )

    def write_frame(self, frame: Frame) -> None:
        """Columnar write: encoded in one pass when the frame's shape is known, else as points."""
        step = self._batch
        bodies = []
        for start in range(0, len(frame), step):
            encoded = self._encoder.encode_frame(frame.slice(start, start + step))
            if encoded is None:
                # unknown series or fields, odd values: the validating path (fills the caches)
                self.write(frame.points())
                return
            bodies.append(encoded)
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            self._send_or_spool([(b, n) for b, n in bodies if n])

    def _send_or_spool(self, bodies: list[tuple[bytes, int]]) -> None:
        sent = 0
        if not self._spool.points:
            while sent < len(bodies) and self._send(*bodies[sent]) != _RETRY:
                sent += 1
        if sent < len(bodies):
            self._spool.append(bodies[sent:])
            self._wake.set()

    def _send(self, body: bytes, n: int, account_rejects: bool = True) -> str:
        """POST one body: _OK, _REJECTED (bad data, dropped and counted) or _RETRY (keep it for later)."""
        if not self._db_ready:
            self._ensure_db()
        try:
            r = self._http.post(
                "/write",
                params={"db": self.db, "precision": "ms"},
                content=gzip.compress(body, GZIP_LEVEL, mtime=0),
                headers={
                    "Content-Encoding": "gzip",
                    "Content-Type": "text/plain; charset=utf-8",
                },
            )
        except httpx.HTTPError as exc:
            self._count("write_errors", 1)
            self._bad.log(
                logging.WARNING, "unreachable", "%s", f"write failed, spooling: {exc!r}"
            )
            return _RETRY
        status = r.status_code
        if status < 300:
            self._count("points_written", n)
            return _OK
        self._count("write_errors", 1)
        text = r.content[:500]
        if status == 404 and b"database not found" in text:
            self._db_ready = False
        if status >= 500 or status in _RETRY_STATUSES:
            self._bad.log(
                logging.WARNING,
                f"http_{status}",
                "%s",
                f"write refused, spooling: {text!r}",
            )
            return _RETRY
        if status == 413 and n > 1:  # body too large for this server: halve it
            lines = body.splitlines(keepends=True)
            half = len(lines) // 2
            first = self._send(b"".join(lines[:half]), half)
            if first == _RETRY:
                return _RETRY
            second = self._send(b"".join(lines[half:]), len(lines) - half)
            return _RETRY if second == _RETRY else _OK
        if not account_rejects:  # the caller will resend the parts and count them then
            return _REJECTED
        # bad data: InfluxDB keeps the lines it could parse (partial write) and names what it dropped
        m = _DROPPED_RE.search(r.content)
        dropped = int(m.group(1)) if m else n
        self._count("batches_rejected", 1)
        self._count("points_rejected", dropped)
        self._count("points_written", n - dropped)
        self._bad.log(
            logging.WARNING,
            f"http_{status}",
            "%s",
            f"dropped a batch of {n} point(s) InfluxDB refused: {text!r}",
        )
        return _REJECTED

    def _ensure_db(self) -> None:
        """CREATE DATABASE once; InfluxDB 2.x/3.x refuse it (buckets are made elsewhere), which is fine."""
        try:
            r = self._http.post("/query", data={"q": influxql.create_database(self.db)})
        except httpx.HTTPError:
            return
        if r.status_code < 500:
            self._db_ready = True

    def _replay_loop(self) -> None:
        delay = self._retry_min
        while not self._stop.is_set():
            if not self._spool.points:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                head = self._spool.head(self._batch)
                outcome = self._send(
                    b"".join(b.body for b in head),
                    sum(b.points for b in head),
                    account_rejects=len(head) == 1,
                )
                if outcome == _REJECTED and len(head) > 1:
                    # several spooled writes went as one request: resend them one by one so only the
                    # bad one is lost on servers without partial writes (re-sent points merge harmlessly)
                    for one in head:
                        if self._send(one.body, one.points) == _RETRY:
                            break
                        self._spool.remove([one])
                    else:
                        delay = self._retry_min
                        continue
                elif outcome != _RETRY:
                    self._spool.remove(head)
                    delay = self._retry_min
                    continue
            except Exception:  # the replayer must outlive any surprise
                log.exception("spool replay failed")
            self._stop.wait(delay)
            delay = min(delay * 2, self._retry_max)

    def wait_drained(self, timeout_s: float) -> bool:
        """Block until the spool is empty (or timeout); True when it is."""
        stop = threading.Event()
        waited = 0.0
        while self._spool.points and waited < timeout_s:
            stop.wait(0.05)
            waited += 0.05
        return not self._spool.points

    # ------------------------------------------------------------------ reading

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
        if (fields is not None and not fields) or (limit is not None and limit <= 0):
            return []  # InfluxQL would read LIMIT 0 as "no limit"
        series = self._query(
            influxql.select_raw(measurement, tags, start_ms, end_ms, fields, limit)
        )
        if not series:
            return []
        types = self._types(measurement, series[0]["columns"][1:])
        rows: list[Row] = []
        for s in series:
            cols = s["columns"]
            floats = [i for i, c in enumerate(cols) if i and types.get(c) == "float"]
            for values in s["values"]:
                for i in floats:
                    if type(values[i]) is int:  # JSON writes 3.0 as 3
                        values[i] = float(values[i])
                row: Row = {"ts_ms": values[0]}
                row.update(
                    (c, v)
                    for c, v in zip(cols[1:], values[1:], strict=True)
                    if v is not None
                )
                rows.append(row)
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
        series = self._query(
            influxql.select_downsampled(
                measurement, tags, field, start_ms, end_ms, every_ms, agg
            )
        )
        if not series:
            return _empty_buckets(start_ms, end_ms, every_ms, agg)
        out: list[tuple[int, float | None]] = []
        for ts, v in series[0]["values"]:
            if agg == "count":
                out.append((ts, int(v or 0)))
            elif isinstance(v, int | float) and not isinstance(v, bool):
                out.append((ts, float(v)))
            else:
                out.append((ts, v))
        return out

    def _types(self, measurement: str, columns: Sequence[str]) -> dict[str, str]:
        types = self._field_types.get(measurement)
        if types is None or any(c not in types for c in columns):
            series = self._query(influxql.show_field_keys(measurement))
            types = {name: kind for s in series for name, kind in s["values"]}
            self._field_types[measurement] = types
        return types

    def _query(self, q: str) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; its series (empty when the database or measurement does not exist)."""
        try:
            r = self._http.post("/query", data={"q": q, "db": self.db, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise TsdbUnavailable(f"InfluxDB unreachable: {exc!r}") from exc
        if r.status_code >= 500:
            raise TsdbUnavailable(f"InfluxDB answered {r.status_code}: {r.text[:300]}")
        try:
            doc = orjson.loads(r.content)
        except orjson.JSONDecodeError as exc:
            raise TsdbQueryError(
                f"InfluxDB answered {r.status_code} with non-JSON: {r.text[:300]!r}"
            ) from exc
        if r.status_code >= 400 or "error" in doc:
            raise TsdbQueryError(
                f"InfluxDB refused the query ({r.status_code}): {doc.get('error')}"
            )
        result = doc["results"][0]
        if "error" in result:
            if str(result["error"]).startswith("database not found"):
                return []
            raise TsdbQueryError(f"InfluxDB refused the query: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    # ------------------------------------------------------------------ housekeeping

    def stats(self) -> dict[str, Any]:
        """Counters (points_written, write_errors, points_rejected, batches_rejected) and spool gauges."""
        with self._stats_lock:
            out: dict[str, Any] = dict(self._counts)
        out["backend"] = "influxdb"
        out["spool_points"] = self._spool.points
        out["spool_batches"] = self._spool.batches
        out["spool_oldest_age_s"] = self._spool.oldest_age_s()
        return out

    def close(self) -> None:
        """Stop the replayer (the spool keeps what is left for next time) and close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._wake.set()
        self._replayer.join()
        self._http.close()
        self._spool.close()

    def _count(self, name: str, n: int) -> None:
        with self._stats_lock:
            self._counts[name] += n


def _empty_buckets(
    start_ms: int, end_ms: int, every_ms: int, agg: Agg
) -> list[tuple[int, float | None]]:
    """What InfluxDB's fill() would give for a range without data."""
    first = start_ms - start_ms % every_ms
    empty: float | None = 0 if agg == "count" else None
    return [(t, empty) for t in range(first, end_ms, every_ms)]
