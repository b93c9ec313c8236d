"""Publisher against a real Mosquitto: order, acks, outages, backlog, status, config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock import protocol as p
from jitstock.edge.broker_config import BrokerConfig
from jitstock.edge.outbox import Outbox
from jitstock.edge.publisher import Publisher
from tests.edge.mqtt_support import (
    WAIT_S,
    Collector,
    assert_complete_in_order,
    publish_retained,
)
from tests.services import Mosquitto
from tests.waits import PROGRESS_CAP_S, wait_progress, wait_until

SITE, AGENT = "plant1", "pi-7"


def readings_builder(grams: float = 1000.0):
    def build(seq: int) -> bytes:
        return p.encode_readings(
            p.ReadingsBatch(
                AGENT, seq, p.now_ms(), (p.Reading("B1", p.now_ms(), grams, True),)
            )
        )

    return build


def scans_builder(code: str = "4006381333931"):
    def build(seq: int) -> bytes:
        return p.encode_scans(
            p.ScansBatch(AGENT, seq, p.now_ms(), (p.Scan("S1", p.now_ms(), code),))
        )

    return build


def make_publisher(outbox: Outbox, broker: Mosquitto, **kwargs) -> Publisher:
    kwargs.setdefault("reconnect_min_s", 0.05)
    kwargs.setdefault("reconnect_max_s", 0.5)
    return Publisher(
        outbox,
        BrokerConfig.from_url(broker.url),
        site=SITE,
        agent=AGENT,
        **kwargs,
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", agent=AGENT)
    yield box
    box.close()


def test_batches_arrive_in_seq_order_and_leave_the_outbox(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    pub = make_publisher(outbox, mosquitto)
    try:
        for i in range(40):
            outbox.append(
                "scans" if i % 4 == 0 else "readings",
                scans_builder() if i % 4 == 0 else readings_builder(),
            )
        pub.start()
        sub.wait_seqs(40)
        for _ in range(40, 60):
            outbox.append("readings", readings_builder())
        sub.wait_seqs(60)
        wait_until(lambda: outbox.depth == 0, what="outbox drained")
        assert_complete_in_order(sub.seqs(), range(1, 61), max_duplicates=0)
        scans = sub.snapshot("/scans")
        assert [m.doc["seq"] for m in scans] == list(range(1, 41, 4))
        p.decode_scans(scans[0].payload, expected_agent=AGENT)
        readings = sub.snapshot("/readings")
        batch, rejects = p.decode_readings(readings[0].payload, expected_agent=AGENT)
        assert batch.readings[0].grams == 1000.0
        assert rejects == []
    finally:
        pub.stop()
        sub.close()


def test_status_online_with_sensor_health_then_offline_on_stop(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    pub = make_publisher(outbox, mosquitto, version="9.9.9")
    pub.set_sensors(
        [p.SensorStatus("B1", True), p.SensorStatus("B2", False, "no_data")]
    )
    pub.start()
    assert pub.wait_connected(WAIT_S)
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    try:
        sub.wait_for(lambda: sub.snapshot(), what="retained status")
        status = p.decode_status(sub.snapshot()[-1].payload)
        assert status.state == "online"
        assert status.version == "9.9.9"
        assert status.sensors == (
            p.SensorStatus("B1", True),
            p.SensorStatus("B2", False, "no_data"),
        )
        pub.set_sensors([p.SensorStatus("B1", True), p.SensorStatus("B2", True)])
        sub.wait_for(
            lambda: p.decode_status(sub.snapshot()[-1].payload).sensors[1].ok,
            what="recovered sensor",
        )
        pub.stop()
        sub.wait_for(
            lambda: p.decode_status(sub.snapshot()[-1].payload).state == "offline",
            what="offline",
        )
    finally:
        pub.stop()
        sub.close()
    # a newcomer still learns the agent is offline (retained)
    late = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    try:
        late.wait_for(lambda: late.snapshot(), what="retained status")
        assert late.snapshot()[0].retain
        assert p.decode_status(late.snapshot()[0].payload).state == "offline"
    finally:
        late.close()


def test_retained_config_is_handed_over_and_bad_config_ignored(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    topic = p.agent_topic(SITE, AGENT, "config")
    good = p.AgentConfig(bins=(p.BinMapping("/dev/ttyUSB0", "B9"),), step_g=5.0)
    publish_retained(mosquitto.port, topic, p.encode_config(good))
    got: list[p.AgentConfig] = []
    pub = make_publisher(outbox, mosquitto, on_config=got.append)
    pub.start()
    try:
        wait_until(lambda: got, what="config")
        assert got[0].bins[0].bin == "B9"
        assert got[0].step_g == 5.0
        publish_retained(mosquitto.port, topic, b'{"bins": "not a list"}')
        wait_until(lambda: pub.stats["config_rejected"] == 1, what="rejected config")
        publish_retained(mosquitto.port, topic, b"\xff garbage")
        wait_until(lambda: pub.stats["config_rejected"] == 2, what="rejected garbage")
        # still alive and publishing
        outbox.append("readings", readings_builder())
        wait_until(lambda: outbox.depth == 0, what="publish after bad config")
        newer = p.AgentConfig(bins=(p.BinMapping("/dev/ttyUSB0", "B10"),))
        publish_retained(mosquitto.port, topic, p.encode_config(newer))
        wait_until(lambda: len(got) == 2, what="second config")
        assert got[1].bins[0].bin == "B10"
    finally:
        pub.stop()


def test_broker_outage_loses_nothing_and_keeps_order(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    sub = Collector(
        mosquitto.port,
        [f"jit/v1/{SITE}/{AGENT}/+"],
        client_id="outage-sub",
        persistent=True,
    )
    pub = make_publisher(outbox, mosquitto, window=50)
    pub.start()
    try:
        for _ in range(300):
            outbox.append("readings", readings_builder())
        mosquitto.stop()  # mid-drain: some batches are in flight
        for _ in range(200):
            outbox.append("readings", readings_builder())
        wait_until(lambda: not pub.connected, what="publisher noticed the outage")
        assert outbox.depth > 0
        mosquitto.start()
        sub.wait_seqs(500)
        wait_until(lambda: outbox.depth == 0, what="outbox drained")
        assert_complete_in_order(sub.seqs(), range(1, 501), max_duplicates=2 * 50)
        assert pub.stats["connects"] >= 2
    finally:
        pub.stop()
        sub.close()


def test_publisher_survives_broker_that_is_down_at_start(
    tmp_path: Path, outbox: Outbox
) -> None:
    (tmp_path / "late").mkdir()
    broker = Mosquitto(tmp_path / "late")
    outbox.append("readings", readings_builder())
    pub = make_publisher(outbox, broker)
    pub.start()
    try:
        wait_until(lambda: pub.stats["connect_failures"] >= 2, what="connect failures")
        broker.start()
        wait_until(lambda: outbox.depth == 0, what="drained after late broker")
    finally:
        pub.stop()
        broker.stop()


@pytest.mark.slow
@pytest.mark.timeout(PROGRESS_CAP_S)
def test_200k_backlog_drains_completely_without_mid_wrap_loss(
    mosquitto: Mosquitto, outbox: Outbox
) -> None:
    total = 200_000
    build = readings_builder()
    outbox.append_many([("readings", build)] * total)
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/readings"])
    pub = make_publisher(outbox, mosquitto)
    pub.start()
    try:
        # as long as batches keep arriving, a loaded machine only makes this slower
        wait_progress(
            lambda: len(sub.messages),
            lambda n: n >= total,
            interval=0.5,
            what="200k batches",
        )
        wait_progress(
            lambda: outbox.depth, lambda d: d == 0, interval=0.5, what="outbox drained"
        )
        # more than 3x the 65,535 mids went through: every seq exactly once, in order
        assert_complete_in_order(sub.seqs(), range(1, total + 1), max_duplicates=0)
        assert pub.stats["acked"] == total
    finally:
        pub.stop()
        sub.close()
