"""Time series store for bin history: one interface, InfluxDB or embedded SQLite behind it.

``open_store(...)`` picks the backend; both accept and reject the same points and
answer queries the same way (the contract suite in tests/server/tsdb runs on both).
"""

from jitstock.server.tsdb.errors import (
    InvalidPoint,
    TsdbError,
    TsdbQueryError,
    TsdbUnavailable,
)
from jitstock.server.tsdb.factory import open_store
from jitstock.server.tsdb.model import AGGS, Agg, Frame, Point, Row, TimeSeriesStore

__all__ = [
    "AGGS",
    "Agg",
    "Frame",
    "InvalidPoint",
    "Point",
    "Row",
    "TimeSeriesStore",
    "TsdbError",
    "TsdbQueryError",
    "TsdbUnavailable",
    "open_store",
]
