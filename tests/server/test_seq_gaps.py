"""jitstock_seq_gaps_total counts the sequence numbers that never arrived, once each, even
when the bin registry is reloaded under a flush (the flush is redone, its gaps are not
counted again): directly through Ingest, and through a real Mosquitto to a real server
whose registry reloads all the time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from sqlalchemy import select

import jitstock.server.app as server_app
from jitstock.server.db.models import AgentCursor
from jitstock.server.db.session import transaction
from tests.factories import Plant, grams_for
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
from tests.server.server_support import seed, wait_until
from tests.server.test_ingest import readings

# seqs sent, with holes: 3 | 5 6 | 9 10 11 | 13..19 are never sent
SENT = [1, 2, 4, 7, 8, 12, 20, 21]
HOLES = 1 + 2 + 3 + 7


class ReloadingLock:
    """The registry's own lock, which reloads the registry when ingest next takes it to
    commit a flush: the bins change between a flush's decoding and its commit."""

    def __init__(self, plant: Plant) -> None:
        self._registry = plant.registry
        self._lock = plant.registry.lock
        self.armed = 0

    def __enter__(self) -> bool:
        if self.armed:
            self.armed -= 1
            self._registry.reload()  # a real reload from the state DB: a new snapshot
        return self._lock.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.__exit__(exc_type, exc, tb)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    yield plant
    plant.close()


def cursor_gaps(sessions: Any, agent: str) -> int:
    with transaction(sessions, readonly=True) as s:
        row = s.scalars(select(AgentCursor).where(AgentCursor.agent_id == agent)).one()
        return row.gaps


def test_gaps_counted_once_when_a_reload_redoes_the_flush(plant: Plant) -> None:
    lock = ReloadingLock(plant)
    plant.registry.lock = lock  # type: ignore[assignment]
    batches = [
        readings("pi-1", seq, [("B1", grams_for(100 - seq), True)]) for seq in SENT
    ]
    for group in (batches[:3], batches[3:5], batches[5:]):
        lock.armed = 1
        left = plant.ingest.apply_group(group)
        while left:  # what the worker does with messages it must redo
            left = plant.ingest.apply_group(left)
    assert lock.armed == 0
    assert plant.metric("jitstock_seq_gaps_total") == HOLES
    assert cursor_gaps(plant.session_factory, "pi-1") == HOLES


def test_gaps_through_mqtt_while_the_registry_reloads(
    tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a reload every few milliseconds: flushes keep meeting one
    monkeypatch.setattr(server_app, "REGISTRY_REFRESH_S", 0.003)
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, [bin_seed("G1", "gap-pi")], [])
    rounds = 40
    with (
        server(tmp_path, db_url, mosquitto.url) as (app, base),
        publisher(mosquitto.url) as pub,
    ):
        offset = 0
        for _ in range(rounds):
            for seq in SENT:
                pub.send(
                    topic("gap-pi", "readings"),
                    readings_payload(
                        "gap-pi", offset + seq, "G1", TARE_G + (offset + seq) * UNIT_G
                    ),
                    wait=False,
                )
            offset += SENT[-1]
        pub.flush()
        wait_count(base, "G1", offset, "the last batch")
        expected = (
            rounds * HOLES
        )  # each round goes on from the last seq of the one before
        wait_until(
            lambda: cursor_gaps(app.session_factory, "gap-pi") >= expected,
            what="the cursor's gaps",
        )
        assert metric(app, "jitstock_seq_gaps_total") == expected
        assert cursor_gaps(app.session_factory, "gap-pi") == expected
