"""Ingest work grows with what changed (issue 12): a re-sent unchanged reading makes no
event and evaluates no reorder rule; a low bin is decided when its count moves, and once
more after each registry reload (so a reorder point or supplier edited by hand counts)."""

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
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    yield plant
    plant.close()


def test_unchanged_resends_decide_nothing_until_the_count_moves(plant: Plant) -> None:
    flush, orders = plant.ingest.process(
        [readings("pi-1", 1, [("B1", grams_for(10), True)])]
    )
    assert flush.decide == ["B1"]  # first count, at or below the reorder point (20)
    assert flush.count_changed == ["B1"]
    assert len(orders) == 1

    for seq in range(2, 6):  # the agent re-sends the same level every tick
        flush, orders = plant.ingest.process(
            [readings("pi-1", seq, [("B1", grams_for(10), True)], ts=NOW_MS + seq)]
        )
        assert flush.decide == []
        assert flush.count_changed == []
        assert flush.events == []
        assert orders == []

    flush, _ = plant.ingest.process(
        [readings("pi-1", 6, [("B1", grams_for(9), True)], ts=NOW_MS + 6)]
    )
    assert flush.decide == ["B1"]  # a pick: the count moved
    assert flush.count_changed == ["B1"]
    with transaction(plant.session_factory, readonly=True) as s:
        assert len(s.scalars(select(Order)).all()) == 1  # still one trigger, one order
        assert [e.delta for e in s.scalars(select(BinEvent))] == [-1]


def test_a_low_bin_is_decided_once_more_after_a_registry_reload(plant: Plant) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(10), True)])])
    flush, _ = plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(10), True)], ts=NOW_MS + 2)]
    )
    assert flush.decide == []
    plant.registry.reload()  # what the app does every 10 s (or after a policy change)
    flush, _ = plant.ingest.process(
        [readings("pi-1", 3, [("B1", grams_for(10), True)], ts=NOW_MS + 3)]
    )
    assert flush.decide == ["B1"]
    flush, _ = plant.ingest.process(
        [readings("pi-1", 4, [("B1", grams_for(10), True)], ts=NOW_MS + 4)]
    )
    assert flush.decide == []
