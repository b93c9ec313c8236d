"""The server's SQLite files (state DB, time series, InfluxDB spool) are readable only by
their owner, with their WAL files, whether new or left world-readable by an older version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from jitstock.server.db.session import make_engine
from jitstock.server.tsdb.spool import Spool
from jitstock.server.tsdb.sqlite_store import SqliteStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_private(path: Path) -> None:
    files = [path, *path.parent.glob(path.name + "-*")]
    for f in files:
        assert _mode(f) == 0o600, (f.name, oct(_mode(f)))


def test_state_db_and_its_wal_are_0600_even_with_a_permissive_umask(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert (tmp_path / "state.db-wal").exists()
        _assert_private(tmp_path / "state.db")
        engine.dispose()
    finally:
        os.umask(old)


def test_spool_and_sqlite_history_are_0600(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "influx-spool.db")
    store = SqliteStore(tmp_path / "ts.db")
    try:
        _assert_private(tmp_path / "influx-spool.db")
        _assert_private(tmp_path / "ts.db")
    finally:
        store.close()
        spool.close()


def test_an_existing_world_readable_state_db_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    path.chmod(0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert _mode(path) == 0o600
