"""Issue 3 acceptance, end to end: simulated scale -> real edge agent -> real Mosquitto ->
server -> API, InfluxDB 1.6 and a real supplier webhook endpoint."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from jitstock import protocol as p
from jitstock.edge.agent import Agent
from jitstock.edge.settings import load_settings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.server.db.models import Order
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.order_attempt import MIN_CLAIM_LEASE_S
from jitstock.server.seed import BinSeed, SupplierSeed
from tests.server.server_support import (
    WAIT_S,
    ServerProcess,
    api_get,
    running_app,
    seed,
    wait_progress,
    wait_until,
)
from tests.server.webhook_receiver import WebhookReceiver

UNIT_G = 12.5
TARE_G = 500.0
# Short stability window so a pick is published ~1 s after it happens (the default is 1 s).
STABILITY_WINDOW_S = 0.4


@contextmanager
def edge_agent(
    tmp: Path, mqtt_url: str, scales: dict[str, SimulatedScale], agent: str = "pi-1"
) -> Iterator[Agent]:
    settings = load_settings(
        None,
        site="plant1",
        agent=agent,
        mqtt_url=mqtt_url,
        outbox_path=tmp / f"{agent}-outbox.db",
        tick_s=0.05,
        scales=[{"port": s.port, "bin": b} for b, s in scales.items()],
        signal={
            "stability_window_s": STABILITY_WINDOW_S,
            "keepalive_s": 30.0,
            "step_g": 2.0,
        },
    )
    a = Agent(settings)
    t = threading.Thread(target=a.run, daemon=True)
    t.start()
    try:
        yield a
    finally:
        a.stop()
        t.join(timeout=15)


@contextmanager
def scale(tmp: Path, bin_id: str, count: int) -> Iterator[SimulatedScale]:
    s = SimulatedScale(
        bin_id,
        unit_weight_g=UNIT_G,
        count=count,
        tare_g=TARE_G,
        workdir=tmp,
        settle_s=0.3,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def bins(rop: int, supplier: str | None = "S1") -> list[BinSeed]:
    return [BinSeed("B1", "pi-1", "SKU-1", UNIT_G, TARE_G, rop, 40, 200, supplier)]


def level(base_url: str, bin_id: str = "B1") -> dict | None:
    return api_get(base_url, f"/api/v1/levels/{bin_id}")


def test_pick_reaches_api_within_2s_and_is_in_influxdb(
    tmp_path: Path, mosquitto, influxdb
) -> None:
    db = f"jit_{secrets.token_hex(4)}"
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, bins(rop=5), [SupplierSeed("S1", "S1", None, new_webhook_secret())])
    with (
        running_app(
            data_dir=tmp_path,
            db_url=db_url,
            mqtt_url=mosquitto.url,
            influx_url=influxdb.url,
            influx_db=db,
        ) as (
            app,
            base,
        ),
        scale(tmp_path, "B1", 100) as sc,
        edge_agent(tmp_path, mosquitto.url, {"B1": sc}),
    ):
        wait_until(
            lambda: (level(base) or {}).get("on_hand") == 100,
            what="first level of 100",
        )
        sc.pick(3)
        picked = time.monotonic()
        wait_until(
            lambda: (level(base) or {}).get("on_hand") == 97,
            what="level 97 after the pick",
        )
        elapsed = time.monotonic() - picked
        assert elapsed < 2.0, f"pick took {elapsed:.2f}s to reach the API"

        # the same reading, in InfluxDB: through the store, and by a raw InfluxQL query
        now = time.time_ns() // 1_000_000
        rows = app.tsdb.query_raw("bin_level", {"bin": "B1"}, now - 60_000, now + 1000)
        assert rows[-1]["count"] == 97
        raw = influxdb.query(
            "SELECT last(\"count\"), last(grams) FROM bin_level WHERE bin = 'B1'",
            db=db,
        )
        _, last_count, last_grams = raw["series"][0]["values"][0]
        assert last_count == 97
        assert last_grams == pytest.approx(TARE_G + 97 * UNIT_G, abs=2.0)


def _capture_readings(mqtt_url: str, into: list[tuple[str, bytes]]) -> mqtt.Client:
    port = int(mqtt_url.rsplit(":", 1)[1])
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"spy-{secrets.token_hex(3)}"
    )
    c.on_message = lambda _c, _u, m: into.append((m.topic, bytes(m.payload)))
    c.connect("127.0.0.1", port)
    c.subscribe(p.subscription("readings"), qos=1)
    c.loop_start()
    return c


def test_one_trigger_one_signed_webhook_across_resend_and_sigkill(
    tmp_path: Path, mosquitto
) -> None:
    """Falling to the reorder point fires exactly one signed webhook, even while readings keep
    arriving, a batch is re-sent, and the server is SIGKILLed between decision and dispatch."""
    secret = new_webhook_secret()
    receiver = WebhookReceiver(secret)
    receiver.start()
    # The supplier is down (503) when the order is decided: it cannot be dispatched yet.
    receiver.script(*([503] * 1000))
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, bins(rop=90), [SupplierSeed("S1", "S1", receiver.url, secret)])
    server = ServerProcess(
        tmp_path,
        db_url=db_url,
        mqtt_url=mosquitto.url,
        webhook_backoff_base_s=0.2,
        webhook_backoff_cap_s=0.5,
    )
    captured: list[tuple[str, bytes]] = []
    spy = _capture_readings(mosquitto.url, captured)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)

    def orders() -> list[Order]:
        with transaction(sessions, readonly=True) as s:
            return list(s.scalars(select(Order)))

    try:
        server.start()
        with (
            scale(tmp_path, "B1", 100) as sc,
            edge_agent(tmp_path, mosquitto.url, {"B1": sc}),
        ):
            wait_until(
                lambda: (level(server.url) or {}).get("on_hand") == 100,
                what="first level",
            )
            sc.pick(12)  # 88 <= 90: the decision
            wait_until(orders, what="the order to be decided")
            wait_until(
                lambda: len(receiver.received) >= 2,
                what="dispatch attempts against the 503s",
            )
            server.kill()
            assert receiver.accepted() == []

            # readings keep arriving while the server is dead, and one batch is re-sent verbatim
            sc.pick(2)
            time.sleep(1.5)
            topic, payload = captured[-1]
            spy.publish(topic, payload, qos=1).wait_for_publish(5)

            receiver.clear_script()  # the supplier is back
            server.start()
            # a kill during a claimed attempt leaves its lease behind: the order waits it out
            wait_until(
                receiver.accepted,
                MIN_CLAIM_LEASE_S + WAIT_S,
                what="the webhook to be accepted",
            )
            sc.pick(1)
            wait_until(
                lambda: (level(server.url) or {}).get("on_hand") == 85,
                what="later picks applied",
            )
            time.sleep(1.0)  # room for a wrong second order to show up

        assert len(orders()) == 1
        accepted = receiver.accepted()
        assert len(accepted) == 1
        order = orders()[0]
        assert accepted[0].verified
        assert accepted[0].headers["webhook-id"] == order.id
        assert accepted[0].payload["id"] == order.id
        assert accepted[0].payload["type"] == "order.created"
        assert accepted[0].payload["data"]["order"]["bin"] == "B1"
        assert order.state == "sent"
        with transaction(sessions, readonly=True) as s:
            from jitstock.server.db.models import AgentCursor

            assert s.get(AgentCursor, "pi-1").duplicates >= 1
            assert s.scalar(select(func.count()).select_from(Order)) == 1
    finally:
        spy.loop_stop()
        spy.disconnect()
        server.stop()
        receiver.stop()
        engine.dispose()


def _publisher(mqtt_url: str) -> mqtt.Client:
    port = int(mqtt_url.rsplit(":", 1)[1])
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"fake-agent-{secrets.token_hex(3)}"
    )
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


# The outage length; the test's longest wait.
INFLUX_OUTAGE_S = 30.0


@pytest.mark.slow
def test_influxdb_outage_loses_nothing_and_doubles_nothing(
    tmp_path: Path, mosquitto, influxdb_private
) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed(f"B{i}", "pi-1", "SKU-1", UNIT_G, TARE_G, 0, 10, 500, None)
            for i in range(10)
        ],
        [],
    )
    pub = _publisher(mosquitto.url)
    published = 0
    seq = 0

    def send(n_batches: int, pause_s: float) -> None:
        nonlocal published, seq
        for _ in range(n_batches):
            seq += 1
            now = time.time_ns() // 1_000_000
            readings = tuple(
                p.Reading(f"B{i}", now, TARE_G + (seq % 50) * UNIT_G, True)
                for i in range(10)
            )
            info = pub.publish(
                p.agent_topic("plant1", "pi-1", "readings"),
                p.encode_readings(p.ReadingsBatch("pi-1", seq, now, readings)),
                qos=1,
            )
            info.wait_for_publish(WAIT_S)
            published += len(readings)
            time.sleep(pause_s)

    with running_app(
        data_dir=tmp_path,
        db_url=db_url,
        mqtt_url=mosquitto.url,
        influx_url=influxdb_private.url,
        influx_db="jit",
    ) as (app, _base):
        send(20, 0.02)
        influxdb_private.stop()
        outage_end = time.monotonic() + INFLUX_OUTAGE_S
        while time.monotonic() < outage_end:
            send(1, 0.1)
        assert app.tsdb.stats()["spool_points"] > 0, (
            "points should wait in the spool while InfluxDB is down"
        )
        influxdb_private.start()
        send(20, 0.02)
        wait_progress(
            lambda: app.tsdb.stats()["spool_points"],
            lambda left: left == 0,
            interval=0.2,
            what="the spool to drain",
        )

        def stored() -> int:
            res = influxdb_private.query("SELECT count(grams) FROM bin_level", db="jit")
            return res["series"][0]["values"][0][1] if "series" in res else 0

        wait_progress(
            stored,
            lambda n: n >= published,
            interval=0.2,
            what=f"{published} points in InfluxDB",
        )
        time.sleep(0.5)
        assert stored() == published
        per_bin = influxdb_private.query(
            "SELECT count(grams) FROM bin_level GROUP BY bin", db="jit"
        )
        assert {s["tags"]["bin"]: s["values"][0][1] for s in per_bin["series"]} == {
            f"B{i}": published // 10 for i in range(10)
        }
    pub.loop_stop()
    pub.disconnect()
