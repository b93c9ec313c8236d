"""Ingest work grows with what changed (issue 12): a re-sent unchanged reading makes no
event and evaluates no reorder rule; a low bin is decided when its count moves, and once
more after each registry reload (so a reorder point or supplier edited by hand counts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from jitstock.server import ingest_levels
from jitstock.server.db.models import Bin, BinEvent, Order
from jitstock.server.db.session import transaction
from tests.factories import NOW_MS, Plant, grams_for
from tests.server.test_ingest import readings
from tests.waits import wait_until


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


def _seen(plant: Plant, bin_id: str) -> tuple[int | None, float | None]:
    with transaction(plant.session_factory, readonly=True) as s:
        row = s.get(Bin, bin_id)
        assert row is not None
        return row.last_seen_ms, row.last_grams


def test_an_unchanged_resend_reaches_last_seen_in_a_batch_not_a_row_each(
    plant: Plant,
) -> None:
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)])])
    assert _seen(plant, "B1") == (NOW_MS, grams_for(30))
    flush, _ = plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(30), True)], ts=NOW_MS + 500)]
    )
    assert flush.count_changed == []
    assert flush.events == []

    def written() -> bool:
        # the batch of unchanged bins' times goes out with a later flush (at most a
        # second later), or from an idle ingest: here an empty flush, as the worker makes
        plant.ingest.process([])
        return _seen(plant, "B1")[0] == NOW_MS + 500

    wait_until(written, interval=0.1, what="B1's last_seen_ms written")
    assert _seen(plant, "B1") == (NOW_MS + 500, grams_for(30))


def test_a_late_reading_after_an_unwritten_resend_and_a_reload_moves_nothing(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        ingest_levels, "SEEN_WRITE_S", 3600.0
    )  # B1's time stays unwritten
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)])])
    flush, _ = plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(30), True)], ts=NOW_MS + 2000)]
    )
    assert _seen(plant, "B1")[0] == NOW_MS
    plant.registry.reload()  # reads the state DB, whose last_seen_ms is older
    # an outbox replays a reading from before the newest one: late, whatever it says
    flush, _ = plant.ingest.process(
        [readings("pi-1", 3, [("B1", grams_for(25), True)], ts=NOW_MS + 1000)]
    )
    assert flush.counts == []
    assert flush.events == []
    assert plant.registry.on_hand("B1") == 30
    with transaction(plant.session_factory, readonly=True) as s:
        assert s.scalars(select(BinEvent)).all() == []


def test_history_keeps_changes_a_keepalive_point_and_every_late_reading(
    plant: Plant,
) -> None:
    def points() -> list[tuple[int, int]]:
        rows = plant.tsdb.query_raw(
            "bin_level", {"bin": "B1"}, NOW_MS, NOW_MS + 600_000
        )
        return [(h["ts_ms"] - NOW_MS, h["count"]) for h in rows]

    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)])])
    for seq in range(2, 5):  # re-sent unchanged within the minute: no point
        plant.ingest.process(
            [readings("pi-1", seq, [("B1", grams_for(30), True)], ts=NOW_MS + seq)]
        )
    plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(29), True)], ts=NOW_MS + 5)]
    )
    # a quiet bin still gets a point a minute
    plant.ingest.process(
        [readings("pi-1", 6, [("B1", grams_for(29), True)], ts=NOW_MS + 70_000)]
    )
    assert points() == [(0, 30), (5, 29), (70_000, 29)]
    # an outbox replayed after an outage: older than what was applied, all kept
    plant.ingest.process(
        [
            readings("pi-1", 7, [("B1", grams_for(29), True)], ts=NOW_MS + 30_000),
            readings("pi-1", 8, [("B1", grams_for(29), True)], ts=NOW_MS + 31_000),
        ]
    )
    assert points() == [(0, 30), (5, 29), (30_000, 29), (31_000, 29), (70_000, 29)]
