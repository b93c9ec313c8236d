"""A plant's database from an earlier release (tests/fixtures/release-2bad9c4.db and its
PostgreSQL dump .pg.sql, made by commit 2bad9c4 at revision 0005_merge) upgrades with `jitstock admin init` and
with the server's own start, keeping its bins, orders and keys."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from jitstock.server.db.migrate import current_revision, head_revision
from tests.server.conftest import _postgres_database
from tests.server.server_support import ServerProcess
from tests.services import Mosquitto, find_binary
from tests.waits import WAIT_S, wait_until

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release-2bad9c4.db"
PG_FIXTURE = FIXTURE.with_suffix(".pg.sql")
# the keys make_release_db.py stored (hashed) in the fixture
ADMIN_KEY = "jsk_release-fixture-admin-key-0123456789abcdefghij"
REVOKED_KEY = "jsk_release-fixture-revoked-viewer-key-xyz"
ORDERS = {
    "11111111-1111-4111-8111-111111111111": ("A-01", "acknowledged", 200),
    "22222222-2222-4222-8222-222222222222": ("A-02", "delivered", 200),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The release's database: a copy of the SQLite file, or its PostgreSQL dump loaded
    into a fresh database with psql (the fixtures themselves stay as committed)."""
    if request.param == "sqlite":
        copy = tmp_path / "state.db"
        shutil.copyfile(FIXTURE, copy)
        url = f"sqlite:///{copy}"
    else:
        url = next(pg := _postgres_database())
        libpq = make_url(url).set(drivername="postgresql")
        psql = find_binary("psql", "/usr/bin/psql")
        load = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                libpq.render_as_string(hide_password=False),
                "-f",
                str(PG_FIXTURE),
            ],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert load.returncode == 0, load.stderr
    assert current_revision(url) == "0005_merge"
    yield url
    if request.param == "postgresql":
        pg.close()  # drops the database


def check_data(url: str) -> None:
    """Bins, orders and keys of the release, read through the upgraded server's API."""
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=url, headers=auth, timeout=WAIT_S) as http:
        bins = {b["id"]: b for b in http.get("/api/v1/bins").raise_for_status().json()}
        assert sorted(bins) == ["A-01", "A-02"]
        assert (bins["A-01"]["sku_id"], bins["A-01"]["reorder_point"]) == (
            "M6-BOLT",
            50,
        )
        assert (bins["A-02"]["sku_id"], bins["A-02"]["order_qty"]) == ("WASHER", 200)
        orders = http.get("/api/v1/orders").raise_for_status().json()
        assert {o["id"]: (o["bin_id"], o["state"], o["qty"]) for o in orders} == ORDERS
        keys = http.get("/api/v1/keys").raise_for_status().json()
        assert {k["name"]: k["revoked"] for k in keys} == {
            "ops-admin": False,
            "old-viewer": True,
        }
        revoked = {"Authorization": f"Bearer {REVOKED_KEY}"}
        assert http.get("/api/v1/bins", headers=revoked).status_code == 401


def test_admin_init_upgrades_the_previous_release_keeping_its_data(
    old_db: str, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    env = {
        "JITSTOCK_DB_URL": old_db,
        "JITSTOCK_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "admin", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"migrated from 0005_merge to {head_revision()}" in proc.stdout
    # the release's admin key is live: no new one
    assert "already initialised: 1 admin key(s)" in proc.stdout
    assert "jsk_" not in proc.stdout
    assert current_revision(old_db) == head_revision()
    server = ServerProcess(tmp_path, db_url=old_db, auth="on", mqtt_url=mosquitto.url)
    server.start()
    try:
        check_data(server.url)
    finally:
        server.stop()


def test_server_start_upgrades_the_previous_release_keeping_its_data(
    old_db: str, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    server = ServerProcess(tmp_path, db_url=old_db, auth="on", mqtt_url=mosquitto.url)
    server.start()
    try:
        wait_until(lambda: current_revision(old_db) == head_revision(), WAIT_S)
        check_data(server.url)
    finally:
        server.stop()
