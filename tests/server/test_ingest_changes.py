"""Ingest work grows with what changed (issue 12): a re-sent unchanged reading makes no
event and evaluates no reorder rule; a low bin is decided when its count moves, and once
more after each registry reload (so a reorder point or supplier edited by hand counts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from jitstock.server import ingest_levels
from jitstock.server.db.models import AgentCursor, Bin, BinEvent, Order
from jitstock.server.db.session import transaction
from tests.factories import NOW_MS, Plant, grams_for
from tests.server.mqtt_support import (
    TARE_G,
    UNIT_G,
    bin_seed,
    metric,
    publisher,
    readings_payload,
    server,
    topic,
    wait_count,
)
from tests.server.server_support import seed
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


# readings of the past (the server dates a reading from the future at its own now)
T0 = NOW_MS - 3_600_000


def test_a_late_reading_after_a_crash_does_not_bring_back_a_level_the_scale_left(
    plant: Plant,
) -> None:
    """An agent back from an outage replays its outbox: the bin went to 10, then the
    scale kept showing 10 for twenty minutes.  The unchanged reading twenty minutes on is
    written with its flush (not held back as a re-send's time is), so after a crash a
    late reading from in between is still older than what the state DB has."""
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)], ts=T0)])
    plant.ingest.process(
        [
            readings("pi-1", 2, [("B1", grams_for(10), True)], ts=T0 + 60_000),
            readings("pi-1", 3, [("B1", grams_for(10), True)], ts=T0 + 1_200_000),
        ]
    )
    plant.ingest.process(
        [readings("pi-1", 4, [("B1", grams_for(10), True)], ts=T0 + 1_300_000)]
    )
    assert _seen(plant, "B1") == (T0 + 1_300_000, grams_for(10))
    plant.start_ingest()  # the server crashed and started again
    flush, _ = plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(25), True)], ts=T0 + 1_270_000)]
    )
    assert flush.counts == []
    assert flush.events == []
    assert plant.registry.on_hand("B1") == 10
    with transaction(plant.session_factory, readonly=True) as s:
        assert s.get(Bin, "B1").on_hand == 10  # type: ignore[union-attr]


def test_an_unchanged_reading_within_seconds_of_the_written_one_waits(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batching of re-sends' times holds for a live agent: a reading a few seconds
    after the written one costs no row of its own."""
    monkeypatch.setattr(ingest_levels, "SEEN_WRITE_S", 3600.0)
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)], ts=T0)])
    step = ingest_levels.SEEN_DEFER_MAX_MS // 2
    flush, _ = plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(30), True)], ts=T0 + step)]
    )
    assert flush.seen == []
    flush, _ = plant.ingest.process(
        [readings("pi-1", 3, [("B1", grams_for(30), True)], ts=T0 + 3 * step)]
    )
    assert [b for b, _g, _t in flush.seen] == ["B1"]  # too far from the written one
    assert _seen(plant, "B1")[0] == T0 + 3 * step


def test_history_keeps_changes_a_keepalive_point_and_every_late_reading(
    plant: Plant,
) -> None:
    # the readings are dated in the past (a reading is never newer than the flush that
    # applies it: see test_a_reading_dated_ahead_of_the_server_does_not_freeze_its_bin)
    t0 = NOW_MS - 300_000

    def points() -> list[tuple[int, int]]:
        rows = plant.tsdb.query_raw("bin_level", {"bin": "B1"}, t0, t0 + 600_000)
        return [(h["ts_ms"] - t0, h["count"]) for h in rows]

    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)], ts=t0)])
    for seq in range(2, 5):  # re-sent unchanged within the minute: no point
        plant.ingest.process(
            [readings("pi-1", seq, [("B1", grams_for(30), True)], ts=t0 + seq)]
        )
    plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(29), True)], ts=t0 + 5)]
    )
    # a quiet bin still gets a point a minute
    plant.ingest.process(
        [readings("pi-1", 6, [("B1", grams_for(29), True)], ts=t0 + 70_000)]
    )
    assert points() == [(0, 30), (5, 29), (70_000, 29)]
    # an outbox replayed after an outage: older than what was applied, all kept
    plant.ingest.process(
        [
            readings("pi-1", 7, [("B1", grams_for(29), True)], ts=t0 + 30_000),
            readings("pi-1", 8, [("B1", grams_for(29), True)], ts=t0 + 31_000),
        ]
    )
    assert points() == [(0, 30), (5, 29), (30_000, 29), (31_000, 29), (70_000, 29)]


def test_a_reading_dated_ahead_of_the_server_does_not_freeze_its_bin(
    plant: Plant,
) -> None:
    """A device clock minutes fast (accepted: up to 5 min, docs/protocol.md) sends one
    reading, then its clock is corrected.  The readings after it are newer in fact and
    must count: a pick that takes the bin below its reorder point orders at once, not
    once the server's clock has caught up with the fast one."""
    now = time.time_ns() // 1_000_000
    plant.ingest.process([readings("pi-1", 1, [("B1", grams_for(30), True)], ts=now)])
    ahead = now + 4 * 60_000  # inside MAX_FUTURE_MS: accepted
    flush, _ = plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(29), True)], ts=ahead)]
    )
    assert [e[3] for e in flush.events] == [-1]  # applied: a pick of one
    later = time.time_ns() // 1_000_000
    assert later < ahead
    flush, orders = plant.ingest.process(
        [readings("pi-1", 3, [("B1", grams_for(12), True)], ts=later)]
    )
    assert [e[3] for e in flush.events] == [-17]
    assert len(orders) == 1  # 12 <= reorder point 20: ordered now
    with transaction(plant.session_factory, readonly=True) as s:
        b = s.get(Bin, "B1")
        assert b is not None
        assert b.on_hand == 12
        # "last seen" is never in the future of the server that applied the reading
        assert b.last_seen_ms is not None
        assert b.last_seen_ms <= time.time_ns() // 1_000_000
        times = [e.ts_ms for e in s.scalars(select(BinEvent).order_by(BinEvent.id))]
    assert all(t <= time.time_ns() // 1_000_000 for t in times)
    # an outbox batch replayed late (older than what was applied) still moves nothing
    flush, orders = plant.ingest.process(
        [readings("pi-1", 4, [("B1", grams_for(40), True)], ts=now - 60_000)]
    )
    assert flush.events == []
    assert orders == []


def _cursor(app: Any, agent: str) -> tuple[int, int, int] | None:
    with transaction(app.session_factory, readonly=True) as s:
        row = s.get(AgentCursor, agent)
        return None if row is None else (row.last_seq, row.gaps, row.duplicates)


def test_held_resends_commit_when_idle_and_are_never_redelivered(
    tmp_path: Path, mosquitto: Any
) -> None:
    """Re-sent unchanged readings change only cursors: their flushes wait for the next
    commit (here the idle worker's), and their messages are acknowledged with it — the
    broker has none of them to deliver again to the next server on the same session."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, [bin_seed("H1", "hold-pi")], [])
    same = TARE_G + 5 * UNIT_G
    with (
        server(tmp_path, db_url, mosquitto.url) as (app, _base),
        publisher(mosquitto.url) as pub,
    ):
        for seq in range(1, 31):
            pub.send(
                topic("hold-pi", "readings"),
                readings_payload("hold-pi", seq, "H1", same),
                wait=False,
            )
        pub.flush()
        wait_until(
            lambda: _cursor(app, "hold-pi") == (30, 0, 0),
            what="the held cursors committed",
        )
    with (
        server(tmp_path, db_url, mosquitto.url) as (app, base),
        publisher(mosquitto.url) as pub,
    ):
        pub.send(
            topic("hold-pi", "readings"),
            readings_payload("hold-pi", 31, "H1", TARE_G + 4 * UNIT_G),
        )
        wait_count(base, "H1", 4, "the pick after the restart")
        assert _cursor(app, "hold-pi") == (31, 0, 0)  # nothing redelivered, no gap
        assert metric(app, "jitstock_duplicate_batches_total") == 0
