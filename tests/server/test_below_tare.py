"""A weight clearly below a bin's tare is a scale not weighing, not an empty bin.

A Modbus indicator reads 0 g while it restarts; a load cell lifted or unplugged reads
less than the empty bin.  Counted, such a reading was an empty bin: a consumption, a
stockout alert and an order for parts still in the bin (then a "refill" when the scale
came back).  Now it is held like a reading the scale did not call stable: the level,
its events, history and the reorder rule keep the last weighed count, and the bin shows
a ``scale_fault`` (alert, /api/v1/levels ``sensor_ok: false``, a fault tile) until the
scale weighs again.  A drifted zero a few grams under the tare is still an empty bin.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from jitstock.server.alert_rules import bin_rules
from jitstock.server.db.models import BinEvent, Order
from jitstock.server.db.session import transaction
from jitstock.server.floor import tiles
from jitstock.server.levels import below_tare, tare_fault
from jitstock.server.seed import BinSeed, SupplierSeed
from tests.factories import NOW_MS, TARE_G, UNIT_G, Plant, grams_for
from tests.server.mqtt_support import (
    DEADLINE_S,
    metric,
    publisher,
    readings_payload,
    server,
    topic,
)
from tests.server.server_support import seed, wait_until
from tests.server.test_ingest import bin_row, readings


@pytest.mark.parametrize(
    ("grams", "tare", "unit", "below"),
    [
        (0.0, 500.0, 12.5, True),  # an indicator restarting: 0 g under a 500 g bin
        (490.0, 500.0, 12.5, False),  # 10 g under: within 2 % of the tare (10 g)
        (489.0, 500.0, 12.5, True),
        (96.0, 100.0, 2.0, False),  # a drifted zero, 4 g: within 5 g
        (94.0, 100.0, 2.0, True),
        (500.0, 500.0, 12.5, False),  # the empty bin itself
        (0.0, 0.0, 12.5, False),  # tare 0: 0 g is an empty bin (nothing to tell)
        (1260.0, 2000.0, 1500.0, False),  # heavy parts: half a part (750 g) of slack
        (1240.0, 2000.0, 1500.0, True),
        (math.nan, 500.0, 12.5, False),
        (0.0, math.nan, 12.5, False),
        (0.0, 500.0, math.nan, True),  # no unit weight: 2 % and 5 g still hold
        (491.0, 1000.0, math.nan, True),  # 2 % of 1000 g: 20 g of slack, unit or not
        (981.0, 1000.0, math.nan, False),
        (5e-324, 500.0, 12.5, True),
        (float(2**63), 500.0, 12.5, False),
        (0.0, float(2**63), 12.5, True),
        (0.0, 500.0, 5e-324, True),
    ],
)
def test_below_tare_cases(grams: float, tare: float, unit: float, below: bool) -> None:
    got = below_tare(np.array([grams]), np.array([tare]), np.array([unit]))
    assert bool(got[0]) is below
    fault = tare_fault(grams, tare, unit)
    assert (fault is not None) is below
    if below:
        assert "below the empty bin's tare" in fault


def test_tare_fault_without_a_weight_is_none() -> None:
    assert tare_fault(None, 500.0, 12.5) is None
    assert tare_fault(0.0, None, 12.5) is None


@pytest.fixture
def plant(tmp_path: Path) -> Plant:
    p = Plant(tmp_path)
    yield p
    p.close()


def _events(plant: Plant, bin_id: str) -> list[tuple[str, int, int]]:
    with transaction(plant.session_factory) as s:
        rows = s.scalars(
            select(BinEvent).where(BinEvent.bin_id == bin_id).order_by(BinEvent.id)
        ).all()
        return [(e.kind, e.delta, e.on_hand_after) for e in rows]


def _orders(plant: Plant, bin_id: str) -> int:
    with transaction(plant.session_factory) as s:
        return len(s.scalars(select(Order).where(Order.bin_id == bin_id)).all())


def _faults(plant: Plant, bin_id: str) -> list[str]:
    with transaction(plant.session_factory) as s:
        verdict = bin_rules(s, [bin_id])
        return [a.kind for a in verdict.holding]


def _tile(plant: Plant, bin_id: str) -> dict[str, Any]:
    with transaction(plant.session_factory) as s:
        (tile,) = tiles(s, bin_ids=[bin_id], now_ms=NOW_MS, silent_ms=10**9)
        return tile


def test_zero_grams_holds_the_level_and_raises_a_scale_fault(plant: Plant) -> None:
    # B1: reorder point 20, tare 500 g, 12.5 g parts; 30 in the bin
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)])])
    assert (bin_row(plant, "B1").on_hand, _faults(plant, "B1")) == (30, [])
    # the indicator restarts: two stable readings of 0 g
    for seq in (2, 3):
        _, orders = plant.ingest.process(
            [readings("pi-1", seq, [("B1", 0.0, True)], ts=NOW_MS + seq * 1000)]
        )
        assert orders == []
    row = bin_row(plant, "B1")
    assert (row.on_hand, row.last_grams) == (30, 0.0)
    assert _events(plant, "B1") == []
    assert _orders(plant, "B1") == 0
    assert _faults(plant, "B1") == ["scale_fault"]
    tile = _tile(plant, "B1")
    assert (tile["status"], tile["count"]) == ("fault", 30)
    assert "below the empty bin's tare" in tile["fault"]
    assert plant.metric("jitstock_readings_below_tare_total") == 2
    # it weighs again: the fault clears, the level never moved
    plant.ingest.process(
        [readings("pi-1", 4, [("B1", grams_for(30), True)], ts=NOW_MS + 4000)]
    )
    assert (bin_row(plant, "B1").on_hand, _faults(plant, "B1")) == (30, [])
    assert _events(plant, "B1") == []
    # a real pick below the reorder point orders once
    _, orders = plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(15), True)], ts=NOW_MS + 5000)]
    )
    assert len(orders) == 1
    assert _events(plant, "B1") == [("consumption", -15, 15)]
    history = plant.tsdb.query_raw(
        "bin_level", {"bin": "B1"}, NOW_MS - 1000, NOW_MS + 10_000
    )
    # the chart never shows the restart's zeros as a level
    assert [h["count"] for h in history] == [30, 15]


def test_a_drifted_zero_is_still_an_empty_bin(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)])])
    _, orders = plant.ingest.process(
        [readings("pi-1", 2, [("B1", TARE_G - 3.0, True)], ts=NOW_MS + 1000)]
    )
    assert bin_row(plant, "B1").on_hand == 0
    assert len(orders) == 1
    assert _faults(plant, "B1") == ["stockout"]
    assert plant.metric("jitstock_readings_below_tare_total") == 0


def test_below_tare_in_a_batch_with_good_readings(plant: Plant) -> None:
    # B1 and B2 in one batch: B2's scale restarts, B1's pick still counts
    plant.ingest.process(
        [
            readings(
                "pi-1", 1, [("B1", grams_for(40), True), ("B2", grams_for(40), True)]
            )
        ]
    )
    plant.ingest.process(
        [
            readings(
                "pi-1",
                2,
                [("B1", grams_for(35), True), ("B2", 0.0, True)],
                ts=NOW_MS + 1000,
            )
        ]
    )
    assert (bin_row(plant, "B1").on_hand, bin_row(plant, "B2").on_hand) == (35, 40)
    assert _events(plant, "B1") == [("consumption", -5, 35)]
    assert _events(plant, "B2") == []


def test_a_scale_restarting_over_mqtt_orders_nothing(
    tmp_path: Path, mosquitto: Any
) -> None:
    """From the outside: raw MQTT in, the API and /metrics out."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    unit, tare = UNIT_G, TARE_G
    seed(
        db_url,
        [BinSeed("R1", "plc-1", "SKU-R1", unit, tare, 5, 20, 100, "S1")],
        [SupplierSeed("S1", "Supplier One", None, None)],
    )
    agent = "plc-1"
    seq = 0

    def send(pub: Any, grams: float) -> None:
        nonlocal seq
        seq += 1
        pub.send(topic(agent, "readings"), readings_payload(agent, seq, "R1", grams))

    def level(base: str) -> dict[str, Any]:
        return httpx.get(f"{base}/api/v1/levels/R1", timeout=10).json()

    def scale_alerts(base: str, state: str) -> list[dict[str, Any]]:
        got = httpx.get(
            f"{base}/api/v1/alerts",
            params={"kind": "scale_fault", "state": state},
            timeout=10,
        ).json()
        return [a for a in got if a["entity"] == "bin:R1"]

    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url) as (
            app,
            base,
        ),
    ):
        send(pub, tare + 20 * unit)
        wait_until(lambda: level(base)["on_hand"] == 20, DEADLINE_S, what="20 in R1")
        send(pub, 0.0)  # the indicator restarts
        wait_until(
            lambda: scale_alerts(base, "unresolved"), DEADLINE_S, what="scale_fault"
        )
        got = level(base)
        assert (got["on_hand"], got["last_grams"], got["sensor_ok"]) == (20, 0.0, False)
        assert "tare" in got["sensor_fault"]
        assert metric(app, "jitstock_readings_below_tare_total") == 1
        assert httpx.get(f"{base}/api/v1/orders", timeout=10).json() == []
        scrape = httpx.get(f"{base}/metrics", timeout=10).text
        assert "jitstock_readings_below_tare_total 1.0" in scrape
        send(pub, tare + 20 * unit)  # back
        wait_until(
            lambda: not scale_alerts(base, "unresolved"),
            DEADLINE_S,
            what="the scale_fault resolved",
        )
        assert level(base)["sensor_ok"] is True
        send(pub, tare + 4 * unit)  # a real pick below the reorder point
        orders = wait_until(
            lambda: httpx.get(f"{base}/api/v1/orders", timeout=10).json(),
            DEADLINE_S,
            what="the order",
        )
        assert [(o["bin_id"], o["qty"] >= 1) for o in orders] == [("R1", True)]
