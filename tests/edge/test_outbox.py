"""Disk outbox: durable seq, FIFO order, ack deletes, cap policy."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jitstock.edge.outbox import Outbox, OutboxError


def payload(seq: int) -> bytes:
    return f'{{"seq":{seq}}}'.encode()


def test_seq_survives_reopen_and_is_shared_by_readings_and_scans(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        assert box.append("readings", payload) == 1
        assert box.append("scans", payload) == 2
        box.ack_many([1, 2])
        assert box.depth == 0
    with Outbox(path) as box:
        # every batch was acknowledged and deleted, yet seq must never restart
        assert box.append("readings", payload) == 3
        assert box.last_seq == 3


def test_unacked_batches_come_back_in_seq_order_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as box:
        seqs = box.append_many(
            [("readings", payload), ("scans", payload), ("readings", payload)]
        )
        assert seqs == [1, 2, 3]
        box.ack(2)
    with Outbox(path) as box:
        items = box.pending(0, 10)
        assert [(i.seq, i.kind) for i in items] == [(1, "readings"), (3, "readings")]
        assert items[0].payload == payload(1)
        assert [i.seq for i in box.pending(1, 10)] == [3]
        assert box.depth == 2


def test_builder_sees_the_seq_it_gets(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        seq = box.append("readings", payload)
        assert box.pending(0, 1)[0].payload == payload(seq)


def test_full_outbox_thins_oldest_readings_and_never_drops_scans(
    tmp_path: Path,
) -> None:
    with Outbox(tmp_path / "o.db", max_batches=100) as box:
        for i in range(300):
            box.append("scans" if i % 10 == 0 else "readings", payload)
        items = box.pending(0, 1000)
        assert box.depth == len(items) <= 100
        scans = [i.seq for i in items if i.kind == "scans"]
        assert scans == list(range(1, 301, 10))  # all 30 scans kept
        assert box.stats["thinned_readings_batches"] == 300 - len(items)
        # the newest data is dense: the last 10 batches are all there
        assert [i.seq for i in items[-10:]] == list(range(291, 301))
        # the thinned span keeps coverage in time: no hole longer than a few batches at the old end
        readings = [i.seq for i in items if i.kind == "readings"]
        assert readings[0] <= 20


def test_scans_alone_may_exceed_the_cap_and_are_counted(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_batches=5) as box:
        for _ in range(8):
            box.append("scans", payload)
        assert box.depth == 8
        assert box.stats["over_cap_appends"] == 3
        assert box.stats["thinned_readings_batches"] == 0


def test_file_is_wal_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.append("readings", payload)
        mode = box._db.execute("PRAGMA journal_mode").fetchone()[0]
        sync = box._db.execute("PRAGMA synchronous").fetchone()[0]
    assert mode == "wal"
    assert sync == 2  # FULL


def test_outbox_of_another_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    Outbox(path, agent="pi-1").close()
    with pytest.raises(OutboxError, match="belongs to agent 'pi-1'"):
        Outbox(path, agent="pi-2")


def test_corrupt_file_raises_outbox_error(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError):
        Outbox(path)


def test_ack_of_a_thinned_batch_is_harmless(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        box.append("readings", payload)
        box.ack(1)
        box.ack(1)
        assert box.depth == 0
        assert box.stats["acked"] == 1


def test_committed_appends_are_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as box:
        box.append("readings", payload)
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 1
        finally:
            other.close()
