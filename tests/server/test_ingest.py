"""Ingest on real SQLite state and time series files: levels, events, dedup, bad input, reorder.

These drive Ingest.process() directly with the bytes a broker would deliver;
tests/server/test_pipeline.py runs the same path through a real Mosquitto.
"""

from __future__ import annotations

import logging
import re

import orjson
import pytest
from sqlalchemy import func, select

from jitstock import protocol as p
from jitstock.server.db.models import AgentCursor, Bin, BinEvent, Order
from jitstock.server.db.session import transaction
from jitstock.server.mqtt import Incoming
from tests.factories import NOW_MS, TARE_G, UNIT_G, Plant, grams_for


def msg(topic: str, payload: bytes, mid: int = 1) -> Incoming:
    return Incoming(topic, payload, mid, 1, 0, 0.0)


def readings(
    agent: str, seq: int, items: list[tuple[str, float, bool]], ts: int = NOW_MS
) -> Incoming:
    batch = p.ReadingsBatch(
        agent,
        seq,
        ts,
        tuple(p.Reading(b, ts + i, g, st) for i, (b, g, st) in enumerate(items)),
    )
    return msg(
        p.agent_topic("plant1", agent, "readings"), p.encode_readings(batch), seq
    )


@pytest.fixture
def plant(tmp_path, db_url: str) -> Plant:
    """The same suite on SQLite and on PostgreSQL (db_url is parametrised)."""
    plant = Plant(tmp_path, db_url=db_url)
    yield plant
    plant.close()


def bin_row(plant: Plant, bin_id: str) -> Bin:
    with transaction(plant.session_factory) as s:
        row = s.get(Bin, bin_id)
        s.expunge(row)
        return row


def test_stable_reading_sets_count_and_writes_history(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(80), True)])])
    row = bin_row(plant, "B1")
    assert row.on_hand == 80
    assert row.on_hand_confidence > 0.95
    history = plant.tsdb.query_raw(
        "bin_level", {"bin": "B1"}, NOW_MS - 1000, NOW_MS + 1000
    )
    assert [(h["count"], h["grams"]) for h in history] == [(80, grams_for(80))]


def test_pick_makes_one_consumption_event_and_resend_is_ignored(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(80), True)])])
    pick = readings("pi-1", 2, [("B1", grams_for(77) + 0.4, True)], ts=NOW_MS + 5000)
    plant.ingest.process([pick])
    plant.ingest.process([pick])  # the broker redelivers after a server crash
    with transaction(plant.session_factory) as s:
        events = s.scalars(select(BinEvent).where(BinEvent.bin_id == "B1")).all()
        cursor = s.get(AgentCursor, "pi-1")
        assert [(e.kind, e.delta, e.on_hand_after) for e in events] == [
            ("consumption", -3, 77)
        ]
        assert (cursor.last_seq, cursor.duplicates, cursor.gaps) == (2, 1, 0)
    assert bin_row(plant, "B1").on_hand == 77


def test_unstable_readings_do_not_change_the_count(plant: Plant) -> None:
    plant.ingest.process(
        [
            readings(
                "pi-1", 1, [("B1", grams_for(80), True), ("B1", grams_for(60), False)]
            )
        ]
    )
    row = bin_row(plant, "B1")
    assert row.on_hand == 80
    assert row.last_grams == pytest.approx(grams_for(60))


def test_sequence_gaps_are_counted(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(80), True)])])
    plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(80), True)], ts=NOW_MS + 10)]
    )
    with transaction(plant.session_factory) as s:
        assert s.get(AgentCursor, "pi-1").gaps == 3
    assert plant.metric("jitstock_seq_gaps_total") == 3


def test_bad_input_is_counted_and_changes_nothing(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(80), True)])])
    topic = p.agent_topic("plant1", "pi-1", "readings")
    bad = [
        msg(topic, b"{not json"),
        msg(topic, b'{"agent":"pi-1","seq":"x","sent_ms":1,"readings":[]}'),
        msg(
            p.agent_topic("plant1", "pi-9", "readings"),
            p.encode_readings(p.ReadingsBatch("pi-9", 1, NOW_MS, ())),
        ),
        msg(topic, b'{"agent":"pi-2","seq":9,"sent_ms":1,"readings":[]}'),
        msg("jit/v1/plant1/pi 1/readings", b"{}"),
        msg(topic, b"x" * (p.MAX_PAYLOAD_BYTES + 1)),
    ]
    plant.ingest.process(bad)
    assert bin_row(plant, "B1").on_hand == 80
    for reason, n in [
        ("malformed_json", 1),
        ("wrong_type", 1),
        ("unknown_agent", 1),
        ("agent_mismatch", 1),
        ("bad_topic", 1),
        ("oversized", 1),
    ]:
        assert plant.metric("jitstock_rejected_batches_total", reason=reason) == n, (
            reason
        )


def test_good_readings_of_a_partly_bad_batch_still_apply(plant: Plant) -> None:
    doc = {
        "agent": "pi-1",
        "seq": 1,
        "sent_ms": NOW_MS,
        "readings": [
            {"bin": "B1", "ts_ms": NOW_MS, "grams": grams_for(70), "stable": True},
            {"bin": "B2", "ts_ms": NOW_MS, "grams": -40.0, "stable": True},
            {"bin": "NOPE", "ts_ms": NOW_MS, "grams": 900.0, "stable": True},
            {
                "bin": "B2",
                "ts_ms": NOW_MS + 10**9,
                "grams": grams_for(10),
                "stable": True,
            },
        ],
    }
    plant.ingest.process(
        [msg(p.agent_topic("plant1", "pi-1", "readings"), orjson.dumps(doc))]
    )
    assert bin_row(plant, "B1").on_hand == 70
    assert bin_row(plant, "B2").last_seen_ms is None
    assert plant.metric("jitstock_rejected_items_total", reason="bad_weight") == 1
    assert plant.metric("jitstock_rejected_items_total", reason="unknown_bin") == 1
    assert plant.metric("jitstock_rejected_items_total", reason="bad_timestamp") == 1


def test_a_bin_of_another_agent_is_rejected(plant: Plant) -> None:
    # pi-2 may not report for pi-1's bin: devices are confined to their own bins
    plant.ingest.process([readings("pi-2", 1, [("B1", grams_for(5), True)])])
    assert bin_row(plant, "B1").last_seen_ms is None
    assert (
        plant.metric("jitstock_rejected_items_total", reason="bin_of_other_agent") == 1
    )
    assert plant.metric("jitstock_rejected_items_total", reason="unknown_bin") == 0


def test_falling_to_reorder_point_creates_exactly_one_order(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(40), True)])])
    created = []
    for seq, count in enumerate([30, 20, 19, 18, 17], start=2):
        _, orders = plant.ingest.process(
            [
                readings(
                    "pi-1",
                    seq,
                    [("B1", grams_for(count), True)],
                    ts=NOW_MS + seq * 1000,
                )
            ]
        )
        created += orders
    with transaction(plant.session_factory) as s:
        orders = s.scalars(select(Order)).all()
        assert len(orders) == 1
        assert created == [orders[0].id]
        assert orders[0].qty >= 50
        assert (orders[0].bin_id, orders[0].state) == ("B1", "created")
        assert s.scalar(select(func.count()).select_from(BinEvent)) == 5


def test_status_marks_agent_offline_and_sensor_faults(plant: Plant) -> None:
    topic = p.agent_topic("plant1", "pi-1", "status")
    status = p.Status(
        "online", "1.2.3", NOW_MS, (p.SensorStatus("B2", False, "no_data"),)
    )
    plant.ingest.process([msg(topic, p.encode_status(status))])
    assert bin_row(plant, "B2").sensor_fault == "no_data"
    assert bin_row(plant, "B1").sensor_ok
    plant.ingest.process(
        [msg(topic, p.encode_status(p.Status("offline", "1.2.3", NOW_MS + 1)))]
    )
    from jitstock.server.db.models import Agent

    with transaction(plant.session_factory) as s:
        assert s.get(Agent, "pi-1").online is False
    assert bin_row(plant, "B2").sensor_ok


FORGED = "x\n2026-12-01 01:40:00,000 WARNING jitstock.server.api.auth: FORGED admin key"


@pytest.mark.parametrize(
    ("sensor_fault", "version"),
    [(FORGED, "plc-1"), ("no_data", "plc\x001"), ("\x1b[2Jno_data", "plc-1")],
)
def test_a_status_with_control_characters_is_rejected_counted_and_logged_on_one_line(
    plant: Plant, caplog: pytest.LogCaptureFixture, sensor_fault: str, version: str
) -> None:
    topic = p.agent_topic("plant1", "pi-1", "status")
    doc = {
        "state": "online",
        "version": version,
        "ts_ms": NOW_MS,
        "sensors": [{"bin": "B2", "ok": False, "fault": sensor_fault}],
    }
    with caplog.at_level(logging.DEBUG):
        plant.ingest.process([msg(topic, orjson.dumps(doc))])
    assert plant.metric("jitstock_rejected_batches_total", reason="wrong_type") == 1
    row = bin_row(plant, "B2")
    assert (row.sensor_ok, row.sensor_fault) == (True, None)
    assert caplog.records  # the rejection is logged ...
    for record in caplog.records:  # ... and no device text breaks a log line
        assert not re.search(r"[\x00-\x1f\x7f]", record.getMessage()), record


def test_tare_and_unit_weight_belong_to_the_server(plant: Plant) -> None:
    """A recalibration re-derives counts without touching the Pi."""
    plant.ingest.process([readings("pi-1", 1, [("B1", TARE_G + 50 * UNIT_G, True)])])
    assert bin_row(plant, "B1").on_hand == 50
    with transaction(plant.session_factory) as s:
        s.get(Bin, "B1").unit_weight_g = UNIT_G * 2
    plant.registry.reload()
    plant.ingest.process(
        [readings("pi-1", 2, [("B1", TARE_G + 50 * UNIT_G, True)], ts=NOW_MS + 10)]
    )
    assert bin_row(plant, "B1").on_hand == 25


def test_agent_with_a_new_outbox_starts_a_new_sequence(plant: Plant) -> None:
    """A rebuilt Pi starts again at seq 1: its readings apply instead of being dropped as re-sends."""
    for seq in range(1, 6):
        plant.ingest.process(
            [
                readings(
                    "pi-1", seq, [("B1", grams_for(90 - seq), True)], ts=NOW_MS + seq
                )
            ]
        )
    plant.ingest.process(
        [readings("pi-1", 1, [("B1", grams_for(60), True)], ts=NOW_MS + 100)]
    )
    plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(59), True)], ts=NOW_MS + 200)]
    )
    plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(10), True)], ts=NOW_MS + 300)]
    )  # a real re-send
    assert bin_row(plant, "B1").on_hand == 59
    with transaction(plant.session_factory) as s:
        assert s.get(AgentCursor, "pi-1").last_seq == 2
    assert plant.metric("jitstock_seq_resets_total") == 1
