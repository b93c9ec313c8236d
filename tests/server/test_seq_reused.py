"""A device whose seq counter went back is named, not silently ignored.

The server applies each (agent, seq) once, so a batch at or below the last seq is a
repeat and is dropped (docs/protocol.md).  A real re-send carries its old payload; a
batch with newer readings under an old seq means the counter went back (a PLC script
restarted at a stale value), and everything the device sends is lost until its counter
passes the old one.  That is counted (``jitstock_seq_reused_total``) and logged with
the fix; the level is still not moved by it (exactly once stays exactly once).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from jitstock.server.db.models import Bin
from jitstock.server.db.session import transaction
from jitstock.server.ingest import Ingest
from tests.factories import Plant, grams_for
from tests.server.test_ingest import readings

REUSED = "jitstock_seq_reused_total"
DUPLICATES = "jitstock_duplicate_batches_total"


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    yield plant
    plant.close()


def _on_hand(plant: Plant) -> int | None:
    with transaction(plant.session_factory, readonly=True) as s:
        return s.scalar(select(Bin.on_hand).where(Bin.id == "B1"))


def test_a_counter_that_went_back_is_counted_and_logged_and_moves_nothing(
    plant: Plant, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = time.time_ns() // 1_000_000 - 20 * 60_000
    sent = {
        seq: readings("pi-1", seq, [("B1", grams_for(31 - seq), True)], ts=t0 + seq)
        for seq in (1, 2, 3)
    }
    for seq in (1, 2, 3):
        plant.ingest.process([sent[seq]])
    assert _on_hand(plant) == 28

    # a re-send (same payload, as after a reconnect) is a plain repeat
    plant.ingest.process([sent[2]])
    assert plant.metric(DUPLICATES) == 1
    assert plant.metric(REUSED) == 0

    # a repeat newer than its bin's last-seen time, but within the clock skew a
    # re-send may carry (a device clock up to 5 min fast): still a plain repeat
    plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(12), True)], ts=t0 + 4 * 60_000)]
    )
    assert plant.metric(REUSED) == 0

    # the device's counter went back to 2, with a new reading: dropped, but named
    caplog.set_level(logging.WARNING, logger="jitstock.server.ingest")
    plant.ingest.process(
        [readings("pi-1", 2, [("B1", grams_for(12), True)], ts=t0 + 10 * 60_000)]
    )
    assert _on_hand(plant) == 28  # not applied: the cursor decides, as documented
    assert plant.metric(DUPLICATES) == 3
    assert plant.metric(REUSED) == 1
    warned = [
        r.getMessage()
        for r in caplog.records
        if "seq counter went back" in r.getMessage()
    ]
    assert len(warned) == 1
    assert "restart its seq at 1" in warned[0]

    # after a restart (the bins' last-seen times read back from the state DB) the same
    # holds
    plant.registry.reload()
    restarted = Ingest(plant.tsdb, plant.state, plant.registry, plant.metrics)
    try:
        restarted.process([sent[3]])  # a re-send: a repeat only
        assert plant.metric(REUSED) == 1
        restarted.process(
            [readings("pi-1", 3, [("B1", grams_for(10), True)], ts=t0 + 15 * 60_000)]
        )
        assert plant.metric(REUSED) == 2
        assert _on_hand(plant) == 28
        # the device restarts its counter at 1, as the warning says: applied again
        _, orders = restarted.process(
            [readings("pi-1", 1, [("B1", grams_for(10), True)], ts=t0 + 16 * 60_000)]
        )
        assert _on_hand(plant) == 10
        assert len(orders) == 1  # 10 <= reorder point 20
    finally:
        restarted.stop()


def test_a_broker_redelivery_is_never_called_a_counter_gone_back(
    plant: Plant,
) -> None:
    now = time.time_ns() // 1_000_000
    plant.ingest.process(
        [readings("pi-1", 5, [("B1", grams_for(30), True)], ts=now - 20 * 60_000)]
    )
    # newer than anything applied by far more than any clock skew: only the broker's
    # DUP flag says it is a redelivery, and that is believed
    newer = readings("pi-1", 4, [("B1", grams_for(29), True)], ts=now)
    plant.ingest.process([dataclasses.replace(newer, dup=True)])
    assert plant.metric(REUSED) == 0
    # the same batch without the flag is a counter gone back
    plant.ingest.process([newer])
    assert plant.metric(REUSED) == 1
    assert _on_hand(plant) == 30
