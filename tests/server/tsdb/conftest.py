"""Stores for the contract suite: the same tests run on SQLite and on a real InfluxDB."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock.server.tsdb import TimeSeriesStore
from jitstock.server.tsdb.influx import InfluxStore
from jitstock.server.tsdb.sqlite_store import SqliteStore
from tests.services import InfluxDB

_dbs = itertools.count()


def make_influx_store(
    server: InfluxDB, tmp_path: Path, **kwargs: object
) -> InfluxStore:
    """An InfluxStore on its own fresh database of the server."""
    db = f"test_{next(_dbs)}"
    return InfluxStore(server.url, db, spool_path=tmp_path / f"spool-{db}.db", **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "influxdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TimeSeriesStore]:
    """Each backend in turn, empty."""
    s: TimeSeriesStore
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "ts.db")
    else:
        s = make_influx_store(request.getfixturevalue("influxdb"), tmp_path)
    yield s
    s.close()
