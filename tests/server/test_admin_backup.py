"""`jitstock admin backup` -> wipe -> `restore` keeps bins, orders, keys and history:
SQLite state with the embedded history store, PostgreSQL state (pg_dump/pg_restore)
with InfluxDB history (influxd backup/restore -portable)."""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from jitstock.cli import main
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey, Bin, Order
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.settings import ServerSettings
from jitstock.server.tsdb import Point, open_store
from tests.server.conftest import PG_ADMIN_DSN
from tests.server.db_factories import seed
from tests.server.mqtt_support import (
    bin_seed,
    on_hand,
    publisher,
    readings_payload,
    topic,
)
from tests.server.mqtt_support import server as mqtt_server
from tests.server.server_support import seed as seed_db
from tests.services import InfluxDB, Mosquitto
from tests.waits import WAIT_S, wait_until

POINTS = 240
T0_MS = 1_800_000_000_000
ORDER_IDS = [
    "aaaaaaaa-0000-4000-8000-000000000001",
    "aaaaaaaa-0000-4000-8000-000000000002",
]


@pytest.fixture
def plant(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> ServerSettings:
    """JITSTOCK_* of a plant: SQLite + embedded history, or PostgreSQL + InfluxDB."""
    for name in list(os.environ):
        if name.startswith("JITSTOCK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("JITSTOCK_DB_URL", db_url)
    monkeypatch.setenv("JITSTOCK_DATA_DIR", str(tmp_path / "data"))
    if db_url.startswith("postgresql"):
        influx: InfluxDB = request.getfixturevalue("influxdb")
        monkeypatch.setenv("JITSTOCK_INFLUX_URL", influx.url)
        monkeypatch.setenv(
            "JITSTOCK_INFLUX_DB", f"jit_{tmp_path.name[-20:]}".replace("-", "_")
        )
        monkeypatch.setenv("JITSTOCK_INFLUX_RPC", f"127.0.0.1:{influx.rpc_port}")
    return ServerSettings()


def admin(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    rc = main(["admin", *argv])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def history(settings: ServerSettings) -> list[tuple[int, int]]:
    store = open_store(
        influx_url=settings.influx_url,
        influx_db=settings.influx_db,
        sqlite_path=settings.tsdb_file,
        spool_path=settings.spool_file,
    )
    try:
        rows = store.query_raw("bin_level", {"bin": "bin-0"}, 0, 2**62)
    finally:
        store.close()
    return [(r["ts_ms"], r["count"]) for r in rows]


def fill(settings: ServerSettings) -> None:
    """Bins, two orders and the readings of one bin, as a running plant would have them."""
    engine = make_engine(settings.db_url)
    factory = make_session_factory(engine)
    seed(factory, bins=3)
    with transaction(factory) as s:
        for i, oid in enumerate(ORDER_IDS):
            s.add(
                Order(
                    id=oid,
                    bin_id=f"bin-{i}",
                    sku_id="M6-bolt",
                    supplier_id="acme",
                    site_id="plant1",
                    qty=100 + i,
                    state=("sent", "delivered")[i],
                    created_ms=T0_MS + i,
                    trigger={"reason": "reorder_point"},
                )
            )
    engine.dispose()
    store = open_store(
        influx_url=settings.influx_url,
        influx_db=settings.influx_db,
        sqlite_path=settings.tsdb_file,
        spool_path=settings.spool_file,
    )
    try:
        store.write(
            [
                Point(
                    "bin_level",
                    (("bin", "bin-0"),),
                    (("count", 500 - i),),
                    T0_MS + i * 1000,
                )
                for i in range(POINTS)
            ]
        )
        if settings.influx_url:  # written through; nothing may be left in the spool
            assert store.stats()["spool_points"] == 0
    finally:
        store.close()


def state(settings: ServerSettings) -> tuple[object, ...]:
    engine = make_engine(settings.db_url)
    with transaction(make_session_factory(engine), readonly=True) as s:
        bins = s.execute(select(Bin.id, Bin.on_hand).order_by(Bin.id)).all()
        orders = s.execute(
            select(Order.id, Order.state, Order.qty).order_by(Order.id)
        ).all()
        keys = s.execute(
            select(ApiKey.name, ApiKey.role, ApiKey.revoked, ApiKey.key_hash).order_by(
                ApiKey.id
            )
        ).all()
    engine.dispose()
    return tuple(bins), tuple(orders), tuple(keys)


def wipe(settings: ServerSettings) -> None:
    """Lose everything: the database (dropped and made again empty) and the history."""
    if settings.db_url.startswith("sqlite"):
        db = Path(make_url(settings.db_url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        settings.tsdb_file.unlink()
        return
    name = make_url(settings.db_url).database
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    r = httpx.post(
        f"{settings.influx_url}/query",
        data={"q": f'DROP DATABASE "{settings.influx_db}"'},
        timeout=WAIT_S,
    )
    assert r.status_code == 200, r.text


def test_backup_wipe_restore_keeps_bins_orders_keys_and_history(
    plant: ServerSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    init = admin(capsys, "init")
    admin_key = re.findall(r"^\s+(jsk_\S+)$", init, re.M)
    assert len(admin_key) == 1
    admin(capsys, "keys", "create", "robot", "--role", "manager")
    admin(capsys, "keys", "revoke", "2")
    fill(plant)
    before = state(plant)
    assert len(before[0]) == 3
    assert len(before[1]) == 2
    assert len(before[2]) == 2
    readings = history(plant)
    assert len(readings) == POINTS
    out = admin(capsys, "backup", str(tmp_path / "backup"))
    assert "backup complete" in out
    kind = "InfluxDB" if plant.influx_url else "embedded store"
    assert f"history ({kind}" in out
    assert oct((tmp_path / "backup").stat().st_mode & 0o777) == "0o700"
    wipe(plant)
    assert history(plant) == []
    out = admin(capsys, "restore", str(tmp_path / "backup"))
    assert "restore complete" in out
    assert state(plant) == before
    assert history(plant) == readings
    # what a user notices: the same keys let them in, the revoked one does not
    check = admin(capsys, "keys", "list")
    assert re.search(r"1 admin\s+live .* admin \(jitstock admin init\)", check)
    assert re.search(r"2 manager\s+revoked .* robot", check)


def test_restore_over_a_changed_database_brings_back_the_backup(
    plant: ServerSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    admin(capsys, "init")
    fill(plant)
    before = state(plant)
    admin(capsys, "backup", str(tmp_path / "b"))
    admin(capsys, "keys", "create", "made after the backup", "--role", "admin")
    engine = make_engine(plant.db_url)
    with transaction(make_session_factory(engine)) as s:
        s.get(Order, ORDER_IDS[0]).state = "cancelled"  # type: ignore[union-attr]
    engine.dispose()
    assert state(plant) != before
    admin(capsys, "restore", str(tmp_path / "b"), "--replace-history")
    assert state(plant) == before
    assert len(history(plant)) == POINTS


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_backup_refuses_a_non_empty_directory_and_restore_a_non_backup(
    plant: ServerSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    admin(capsys, "init")
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    assert main(["admin", "backup", str(full)]) == 1
    assert "is not empty" in capsys.readouterr().err
    for manifest in (
        None,
        "",
        "{",
        "[]",
        '{"format": 99}',
        '{"format": 1, "revision": "0099_future", "parts": {}}',
        '{"format": 18446744073709551616, "created_ms": NaN}',
        # a manifest never names a path: these would read or write outside the backup
        '{"format": 1, "created_ms": 0, "revision": null, "parts": {"state": '
        '{"kind": "sqlite", "file": "../../state.db"}}}',
        '{"format": 1, "created_ms": 0, "revision": null, "parts": {"state": '
        '{"kind": "sqlite", "file": "state.sqlite"}, "data_dir": ["../../../evil.db"]}}',
        '{"format": 1, "created_ms": 0, "revision": null, "parts": {"state": '
        '{"kind": "sqlite", "file": "state.sqlite"}, "history": {"kind": '
        '"influxd-portable", "dir": "/etc", "database": "jit"}}}',
    ):
        src = tmp_path / f"src{abs(hash(manifest))}"
        src.mkdir()
        if manifest is not None:
            (src / "manifest.json").write_text(manifest)
        assert main(["admin", "restore", str(src)]) == 1
        err = capsys.readouterr().err
        assert "jitstock admin restore:" in err
        assert "Traceback" not in err
    # nothing was restored: the database still has init's key only and no bins
    assert state(plant)[0] == ()
    assert len(state(plant)[2]) == 1
    assert not list(tmp_path.parent.glob("evil.db"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_backup_is_consistent_while_a_writer_commits(
    plant: ServerSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    admin(capsys, "init")
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        # the server's own engine settings (WAL, busy timeout): one audit row per commit
        engine = make_engine(plant.db_url)
        factory = make_session_factory(engine)
        while not stop.is_set():
            with transaction(factory) as s:
                record_audit(
                    s,
                    at_ms=written[0],
                    actor="t",
                    action="x",
                    entity="e",
                    entity_id="1",
                )
            written[0] += 1
        engine.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        deadline = WAIT_S
        while written[0] < 50 and deadline > 0:
            stop.wait(0.05)
            deadline -= 0.05
        admin(capsys, "backup", str(tmp_path / "online"))
        at_backup = written[0]
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)
    copy = sqlite3.connect(tmp_path / "online" / "state.sqlite")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = [
            r[0] for r in copy.execute("SELECT at_ms FROM audit_log WHERE actor = 't'")
        ]
    finally:
        copy.close()
    # a prefix of the commits, with no gap: the copy is one moment of the database
    assert rows == list(range(len(rows)))
    assert 50 <= len(rows) <= at_backup + 1


@pytest.mark.parametrize(
    ("url", "args", "password"),
    [
        (
            "postgresql:///jitstock?host=/var/run/postgresql",
            ["--dbname", "jitstock", "--host", "/var/run/postgresql"],
            None,
        ),
        (
            "postgresql://jitstock:s3cret@db.plant:6543/stock",
            [
                "--dbname",
                "stock",
                "--host",
                "db.plant",
                "--port",
                "6543",
                "--username",
                "jitstock",
            ],
            "s3cret",
        ),
    ],
)
def test_pg_tools_get_the_configured_connection_and_the_password_only_in_env(
    url: str, args: list[str], password: str | None
) -> None:
    from jitstock.server.admin.backup import _pg_args

    got, env = _pg_args(url)
    assert got == args
    assert env.get("PGPASSWORD") == password
    assert all("s3cret" not in a for a in got)  # never on a command line (ps shows it)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_closed_influx_backup_port_fails_at_once_and_writes_nothing(
    plant: ServerSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from tests.services import free_port

    admin(capsys, "init")
    monkeypatch.setenv("JITSTOCK_INFLUX_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("JITSTOCK_INFLUX_RPC", f"127.0.0.1:{free_port()}")
    # influxd would retry for minutes; the probe answers at once (the timeout is the hang guard)
    assert main(["admin", "backup", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "backup port" in err
    assert "JITSTOCK_INFLUX_RPC" in err
    assert not (tmp_path / "b").exists()
    assert main(["admin", "backup", "--no-history", str(tmp_path / "b")]) == 0


def _sqlite_side_files(*dirs: Path) -> list[str]:
    return sorted(
        str(f) for d in dirs for f in d.iterdir() if f.name.endswith(("-wal", "-shm"))
    )


def test_backup_while_ingest_writes_restores_into_a_fresh_dir_without_side_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mosquitto: Mosquitto,
) -> None:
    """From the outside: `jitstock admin backup` of a running SQLite server that ingests
    readings, and of the stopped one; `restore` into a fresh data dir, and a server on it
    shows the level that was durable at backup time. Found so: the copies were left in
    WAL mode and opened read-only, so a backup of the stopped server left
    state.db-wal/-shm beside its database, and a restore left state.sqlite-wal/-shm and
    history.sqlite-wal/-shm inside the backup it read."""
    data = tmp_path / "data"
    data.mkdir()
    db_url = f"sqlite:///{data / 'state.db'}"
    seed_db(db_url, [bin_seed("LIVE", "pi-1")], [])

    def use(data_dir: Path) -> None:
        for name in list(os.environ):
            if name.startswith("JITSTOCK_"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("JITSTOCK_DB_URL", f"sqlite:///{data_dir / 'state.db'}")
        monkeypatch.setenv("JITSTOCK_DATA_DIR", str(data_dir))

    use(data)
    stop = threading.Event()
    sent = [0]
    with (
        mqtt_server(data, db_url, mosquitto.url) as (_app, base),
        publisher(mosquitto.url) as pub,
    ):

        def ingest() -> None:
            # one more part per reading (100 g tare, 10 g parts): levels only go up
            while not stop.is_set() and sent[0] < 5_000:
                sent[0] += 1
                grams = 100 + 10 * sent[0]
                payload = readings_payload("pi-1", sent[0], "LIVE", grams)
                pub.send(topic("pi-1", "readings"), payload)

        feeder = threading.Thread(target=ingest)
        feeder.start()
        try:
            wait_until(lambda: (on_hand(base, "LIVE") or 0) >= 20, WAIT_S)
            durable_before = on_hand(base, "LIVE") or 0
            admin(capsys, "backup", str(tmp_path / "live"))
            durable_after = on_hand(base, "LIVE") or 0
        finally:
            stop.set()
            feeder.join(WAIT_S)
    assert durable_before < durable_after  # the backup was taken while readings applied
    admin(capsys, "backup", str(tmp_path / "stopped"))
    assert _sqlite_side_files(tmp_path / "live", tmp_path / "stopped", data) == []

    fresh = tmp_path / "fresh"
    use(fresh)
    out = admin(capsys, "restore", str(tmp_path / "live"))
    assert "restore complete" in out
    assert _sqlite_side_files(tmp_path / "live") == []
    fresh_url = f"sqlite:///{fresh / 'state.db'}"
    # a client id of its own: the broker must not hand it the first server's session
    with mqtt_server(
        fresh, fresh_url, mosquitto.url, mqtt_client_id="restored-server"
    ) as (_app, base):
        restored = on_hand(base, "LIVE")
        assert restored is not None
        assert durable_before <= restored <= durable_after
        with httpx.Client(base_url=base, timeout=WAIT_S) as c:
            assert c.get("/api/v1/bins/LIVE").status_code == 200
