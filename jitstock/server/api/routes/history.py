"""A bin's history from the time series store: raw readings or downsampled buckets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, ReadSessionDep, Viewer
from jitstock.server.api.errors import FieldInvalid
from jitstock.server.api.schemas import HistoryPoint, HistoryPublic
from jitstock.server.api.timeparse import parse_duration, parse_instant
from jitstock.server.db.models import Bin
from jitstock.server.tsdb.model import Agg

router = APIRouter(prefix="/api/v1/bins", tags=["history"])

MEASUREMENT = "bin_level"  # what ingest writes, tagged bin=<id>
FIELDS = ("grams", "count")
# Without a start, show the last day: what a line manager looks at first.
DEFAULT_WINDOW_MS = 24 * 3600 * 1000
# More buckets than a chart has pixels is a mistake, and an expensive one.
MAX_BUCKETS = 10_000
MAX_RAW_POINTS = 100_000


@router.get("/{bin_id}/history")
def bin_history(
    bin_id: str,
    ctx: CtxDep,
    session: ReadSessionDep,
    _key: Viewer,
    start: Annotated[
        str | None, Query(description="epoch ms or ISO 8601; default end - 24 h")
    ] = None,
    end: Annotated[
        str | None, Query(description="epoch ms or ISO 8601 (exclusive); default now")
    ] = None,
    resolution: Annotated[
        str | None,
        Query(description="bucket size: 10s, 5m, 1h, 1d or ms; omit for raw readings"),
    ] = None,
    agg: Annotated[
        Agg, Query(description="how a bucket summarises its readings")
    ] = "mean",
    limit: Annotated[
        int,
        Query(
            ge=1, le=MAX_RAW_POINTS, description="raw only: at most this many readings"
        ),
    ] = 10_000,
) -> HistoryPublic:
    """Readings of a bin over [start, end): raw, or one point per resolution bucket."""
    catalog.get_or_404(session, Bin, "bin", bin_id)
    end_ms = parse_instant("end", end) if end is not None else ctx.clock.time_ms()
    start_ms = (
        parse_instant("start", start)
        if start is not None
        else end_ms - DEFAULT_WINDOW_MS
    )
    if start_ms >= end_ms:
        raise FieldInvalid(
            "start", f"must be before end ({start_ms} >= {end_ms})", where="query"
        )
    tags = {"bin": bin_id}
    if resolution is None:
        rows = ctx.tsdb.query_raw(
            MEASUREMENT, tags, start_ms, end_ms, fields=list(FIELDS), limit=limit + 1
        )
        points = [
            HistoryPoint(ts_ms=r["ts_ms"], grams=r.get("grams"), count=r.get("count"))
            for r in rows[:limit]
        ]
        return HistoryPublic(
            bin_id=bin_id,
            start_ms=start_ms,
            end_ms=end_ms,
            resolution_ms=None,
            agg=None,
            truncated=len(rows) > limit,
            points=points,
        )
    every_ms = parse_duration("resolution", resolution)
    buckets = -(-(end_ms - start_ms) // every_ms)
    if buckets > MAX_BUCKETS:
        raise FieldInvalid(
            "resolution",
            f"{resolution} over this range makes {buckets} buckets; at most {MAX_BUCKETS}: coarsen it or shorten the range",
            where="query",
        )
    series = {
        f: ctx.tsdb.query_downsampled(
            MEASUREMENT, tags, f, start_ms, end_ms, every_ms, agg
        )
        for f in FIELDS
    }
    counts = dict(series["count"])
    points = [
        HistoryPoint(ts_ms=ts, grams=g, count=counts.get(ts))
        for ts, g in series["grams"]
    ]
    return HistoryPublic(
        bin_id=bin_id,
        start_ms=start_ms,
        end_ms=end_ms,
        resolution_ms=every_ms,
        agg=agg,
        truncated=False,
        points=points,
    )
