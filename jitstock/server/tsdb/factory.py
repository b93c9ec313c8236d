"""Choosing the backend: InfluxDB when a URL is configured, the embedded SQLite store otherwise."""

from __future__ import annotations

from pathlib import Path

from jitstock.server.tsdb.model import TimeSeriesStore


def open_store(
    *,
    influx_url: str | None = None,
    influx_db: str = "jit",
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
    sqlite_path: str | Path = "jitstock-ts.db",
    spool_path: str | Path = "influx-spool.db",
) -> TimeSeriesStore:
    """InfluxStore on influx_url (spooling to spool_path) if given, else SqliteStore at sqlite_path."""
    if influx_url:
        from jitstock.server.tsdb.influx import (
            InfluxStore,
        )  # httpx only needed with InfluxDB

        return InfluxStore(
            influx_url,
            influx_db,
            spool_path=spool_path,
            token=token,
            user=user,
            password=password,
        )
    from jitstock.server.tsdb.sqlite_store import SqliteStore

    return SqliteStore(sqlite_path)
