"""InfluxDB-specific behaviour: outages and the spool, batching, gzip, authentication."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jitstock.server.tsdb import Point, TsdbQueryError
from jitstock.server.tsdb.influx import InfluxStore
from tests.server.tsdb.conftest import make_influx_store
from tests.services import InfluxDB
from tests.waits import wait_progress

T0 = 1_700_000_000_000
# Shrunk timings so outages are noticed and recovered from quickly (the defaults suit production).
FAST = {"retry_min_s": 0.1, "retry_max_s": 0.5, "timeout_s": 2.0}
# How long the outage test keeps InfluxDB stopped while writes continue.
OUTAGE_S = 12.0


def wait_drained(store: InfluxStore) -> None:
    """Until the spool is empty: fails only when it stops shrinking (a busy machine is slow)."""
    wait_progress(
        lambda: store.stats()["spool_points"],
        lambda left: left == 0,
        interval=0.1,
        what="the spool to drain",
    )


def count(server: InfluxDB, db: str, measurement: str, field: str) -> int:
    """Points in a measurement, by a raw InfluxQL count."""
    result = server.query(f'SELECT count("{field}") FROM "{measurement}"', db=db)
    return int(result["series"][0]["values"][0][1]) if "series" in result else 0


@pytest.mark.slow
def test_outage_spools_and_replays_every_point_once_in_order(
    influxdb_private: InfluxDB, tmp_path: Path
) -> None:
    store = make_influx_store(influxdb_private, tmp_path, **FAST)
    seq = 0
    batches = 0
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        nonlocal seq, batches
        try:
            while not stop.is_set():
                pts = [
                    Point(
                        "lvl",
                        (("bin", f"B{i % 7}"),),
                        (("seq", seq + i),),
                        T0 + seq + i,
                    )
                    for i in range(200)
                ]
                # the same series and timestamp every batch: the value left at the end shows the replay order
                pts.append(Point("probe", (), (("batch", batches),), T0))
                store.write(pts)
                seq += 200
                batches += 1
                stop.wait(0.05)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    try:
        stop.wait(1.5)
        influxdb_private.stop()
        stop.wait(OUTAGE_S)
        during = store.stats()
        influxdb_private.start()
        stop.wait(1.5)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert during["spool_points"] > 0
    assert during["spool_oldest_age_s"] > OUTAGE_S / 2
    wait_drained(store)
    stats = store.stats()
    store.close()

    assert stats["spool_points"] == 0
    assert stats["spool_oldest_age_s"] == 0.0
    assert count(influxdb_private, store.db, "lvl", "seq") == seq
    result = influxdb_private.query('SELECT "seq" FROM "lvl"', db=store.db)
    assert [v[1] for v in result["series"][0]["values"]] == list(range(seq))
    probe = influxdb_private.query('SELECT "batch" FROM "probe"', db=store.db)
    assert probe["series"][0]["values"] == [[T0, batches - 1]]


def test_bad_batch_in_the_spool_is_dropped_not_wedged(
    influxdb_private: InfluxDB, tmp_path: Path
) -> None:
    store = make_influx_store(influxdb_private, tmp_path, **FAST)
    store.write([Point("m", (), (("v", 1.0),), T0)])
    influxdb_private.stop()
    store.write([Point("m", (), (("v", 2.0),), T0 + 1)])
    store.write(
        [Point("m", (), (("v", "not a float"),), T0 + 2)]
    )  # InfluxDB will refuse it: type conflict
    store.write([Point("m", (), (("v", 4.0),), T0 + 3)])
    assert store.stats()["spool_points"] == 3
    influxdb_private.start()
    wait_drained(store)
    assert [r["v"] for r in store.query_raw("m", {}, T0, T0 + 10)] == [1.0, 2.0, 4.0]
    assert store.stats()["points_rejected"] == 1
    store.close()


def test_spool_survives_a_store_restart(
    influxdb_private: InfluxDB, tmp_path: Path
) -> None:
    influxdb_private.stop()
    spool = tmp_path / "spool.db"
    store = InfluxStore(influxdb_private.url, "keep", spool_path=spool, **FAST)  # type: ignore[arg-type]
    store.write([Point("m", (), (("v", float(i)),), T0 + i) for i in range(5)])
    assert store.stats()["spool_points"] == 5
    store.close()
    influxdb_private.start()
    store = InfluxStore(influxdb_private.url, "keep", spool_path=spool, **FAST)  # type: ignore[arg-type]
    wait_drained(store)
    assert count(influxdb_private, "keep", "m", "v") == 5
    store.close()


def test_big_writes_are_split(influxdb: InfluxDB, tmp_path: Path) -> None:
    store = make_influx_store(influxdb, tmp_path, batch_points=1000)
    store.write(
        [Point("m", (("bin", f"B{i % 50}"),), (("v", i),), T0 + i) for i in range(4500)]
    )
    assert count(influxdb, store.db, "m", "v") == 4500
    assert store.stats()["points_written"] == 4500
    store.close()


@pytest.fixture
def influxdb_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    server = InfluxDB(Path(tmp_path_factory.mktemp("influxdb-auth")), auth=True)
    server.start()
    yield server
    server.stop()


def test_user_password_auth(influxdb_auth: InfluxDB, tmp_path: Path) -> None:
    creds = {"user": influxdb_auth.admin_user, "password": influxdb_auth.admin_password}
    store = InfluxStore(
        influxdb_auth.url, "secure", spool_path=tmp_path / "a.db", **creds, **FAST
    )  # type: ignore[arg-type]
    store.write([Point("m", (), (("v", 1.0),), T0)])
    assert store.query_raw("m", {}, T0, T0 + 1) == [{"ts_ms": T0, "v": 1.0}]
    assert count(influxdb_auth, "secure", "m", "v") == 1
    store.close()

    wrong = InfluxStore(
        influxdb_auth.url,
        "secure",
        spool_path=tmp_path / "b.db",
        user="admin",
        password="wrong",
        **FAST,
    )  # type: ignore[arg-type]
    wrong.write(
        [Point("m", (), (("v", 2.0),), T0 + 1)]
    )  # refused (401): kept, not lost
    stats = wrong.stats()
    assert stats["spool_points"] == 1
    assert stats["write_errors"] >= 1
    with pytest.raises(TsdbQueryError):
        wrong.query_raw("m", {}, T0, T0 + 10)
    wrong.close()
    assert count(influxdb_auth, "secure", "m", "v") == 1


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in for InfluxDB 2.x/3.x's v1 write endpoint that records what it is sent."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_token_auth_header_gzip_and_precision(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        store = InfluxStore(
            url, "jit/autogen", spool_path=tmp_path / "s.db", token="s3cret", **FAST
        )  # type: ignore[arg-type]
        store.write([Point("m", (("bin", "B 1"),), (("v", 1.5),), T0)])
        store.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    writes = [s for s in _Recorder.seen if s[1].startswith("/write")]
    assert len(writes) == 1
    _, path, headers, body = writes[0]
    assert path == "/write?db=jit%2Fautogen&precision=ms"
    assert headers["Authorization"] == "Token s3cret"
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == f"m,bin=B\\ 1 v=1.5 {T0}\n".encode()
