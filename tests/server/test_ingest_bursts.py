"""Readings that reach the server together (an outbox re-sent after a reconnect, the
broker's backlog after a server restart) make the events the same readings make one at a
time: a delivery inside a burst is a refill the order is received by, not netted away
against the picks after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from jitstock.server.db.models import BinEvent, Order
from jitstock.server.db.session import transaction
from tests.factories import NOW_MS, Plant, grams_for
from tests.server.test_ingest import readings


@pytest.fixture
def plant(tmp_path: Path, db_url: str) -> Iterator[Plant]:
    plant = Plant(tmp_path, db_url=db_url)
    yield plant
    plant.close()


def _events(plant: Plant, bin_id: str) -> list[tuple[str, int, int]]:
    with transaction(plant.session_factory, readonly=True) as s:
        rows = s.scalars(
            select(BinEvent)
            .where(BinEvent.bin_id == bin_id)
            .order_by(BinEvent.ts_ms, BinEvent.id)
        )
        return [(e.kind, e.delta, e.on_hand_after) for e in rows]


def _orders(plant: Plant) -> list[Order]:
    with transaction(plant.session_factory, readonly=True) as s:
        return list(s.scalars(select(Order).order_by(Order.created_ms, Order.id)))


def _burst(plant: Plant, first_seq: int, counts: list[int], t0: int) -> None:
    """One flush of one batch per reading, a second apart in reading time."""
    plant.ingest.process(
        [
            readings(
                "pi-1", first_seq + k, [("B1", grams_for(n), True)], ts=t0 + k * 1000
            )
            for k, n in enumerate(counts)
        ]
    )


def test_a_delivery_inside_a_resent_burst_is_received_and_the_bin_reorders(
    plant: Plant,
) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(10), True)])])
    (first,) = _orders(plant)  # at 10, under its reorder point of 20: 50 ordered
    assert first.qty == 50
    # the agent re-sends its outbox after a reconnect: the delivery (10 -> 60), then
    # picks to 12 — all in one flush
    _burst(plant, 2, [60, 55, 50, 45, 12], NOW_MS + 60_000)
    assert _events(plant, "B1") == [("refill", 50, 60), ("consumption", -48, 12)]
    orders = {o.id: o for o in _orders(plant)}
    assert orders[first.id].delivered_qty == 50
    assert orders[first.id].state in ("received", "closed")
    # at 12 with nothing on order: the next order, one
    later = [o for o in orders.values() if o.id != first.id]
    assert [(o.qty, o.state) for o in later] == [(50, "created")]


def test_events_do_not_depend_on_how_readings_were_batched(
    plant: Plant, tmp_path: Path, db_url: str
) -> None:
    path = [30, 28, 28, 40, 41, 41, 35, 35, 36, 20]
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(path[0]), True)])])
    _burst(plant, 2, path[1:], NOW_MS + 1000)
    together = _events(plant, "B1")
    # direction changes are events; steps in one direction within a flush are one event
    assert together == [
        ("consumption", -2, 28),
        ("refill", 13, 41),
        ("consumption", -6, 35),
        ("refill", 1, 36),
        ("consumption", -16, 20),
    ]
    assert sum(d for _, d, _ in together) == path[-1] - path[0]


def test_a_late_reading_inside_a_burst_moves_nothing(plant: Plant) -> None:
    plant.ingest.process(
        [readings("pi-1", 1, [("B1", grams_for(40), True)], ts=NOW_MS + 10_000)]
    )
    # in one flush: a reading older than the one applied (ignored), then a newer one
    plant.ingest.process(
        [
            readings("pi-1", 2, [("B1", grams_for(70), True)], ts=NOW_MS),
            readings("pi-1", 3, [("B1", grams_for(39), True)], ts=NOW_MS + 11_000),
        ]
    )
    assert _events(plant, "B1") == [("consumption", -1, 39)]
