"""Defects an outside try of cluster mode found (issue 16), each on a real PostgreSQL.

- a batch a node once refused as a duplicate is not refused again, unchecked, when the
  agent starts a new outbox and the new stream reaches that seq (it is the database's
  call, not the node's memory);
- a refused duplicate's readings never reach the history store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from jitstock import protocol as p
from jitstock.server.cluster import changes
from jitstock.server.cluster.leader import libpq_url
from jitstock.server.cluster.prune import prune
from jitstock.server.db.session import make_engine
from jitstock.server.ingest_worker import short_error
from jitstock.server.mqtt import Incoming
from tests.cluster.nodes import Node
from tests.factories import NOW_MS, Plant, grams_for
from tests.server.conftest import _postgres_database
from tests.waits import wait_until

AGENT = "pi-1"
BINS = ("B1", "B2")


def batch(
    seq: int, count: int, *, at: int, dup: bool = False, bins: tuple[str, ...] = BINS
) -> Incoming:
    """A batch of ``AGENT`` showing ``count`` on its bins, read at ``at`` ms."""
    readings = tuple(
        p.Reading(b, NOW_MS - 600_000 + at + k, grams_for(count), True)
        for k, b in enumerate(bins)
    )
    payload = p.encode_readings(
        p.ReadingsBatch(AGENT, seq, NOW_MS - 600_000 + at + 9, readings)
    )
    return Incoming(
        p.agent_topic("plant1", AGENT, "readings"), payload, seq, 1, 0, 0.0, dup=dup
    )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[list[Node], str]]:
    gen = cast(Generator[str, None, None], _postgres_database())
    url = next(gen)
    Plant(tmp_path, db_url=url).close()
    made = [Node(url, tmp_path / f"n{i}") for i in range(3)]
    try:
        yield made, url
    finally:
        for n in made:
            n.close()
        gen.close()


def _db(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def test_a_seq_refused_before_is_applied_from_a_new_outbox(
    nodes: tuple[list[Node], str],
) -> None:
    ns, url = nodes
    for seq in range(1, 6):  # the old outbox
        ns[seq % 3].apply([batch(seq, 40, at=seq * 1000)])
    for n in ns:  # a replay of seq 3 reaches every node: each refuses it
        n.apply([batch(3, 40, at=3000, dup=True)])
        assert n.metric("jitstock_duplicate_batches_total") == 1
    # the agent lost its outbox: a new stream from 1, newer readings; seq 3 comes last
    ns[0].apply([batch(1, 30, at=100_000)])
    ns[1].apply([batch(2, 25, at=101_000)])
    ns[2].apply([batch(3, 11, at=102_000)])
    seqs = _db(url, f"SELECT seq FROM applied_batches WHERE agent_id = '{AGENT}'")
    assert sorted(s for (s,) in seqs) == [1, 2, 3]
    counts = _db(url, "SELECT id, on_hand FROM bins WHERE id IN ('B1', 'B2')")
    assert dict(counts) == {"B1": 11, "B2": 11}  # the new seq 3 is the level
    assert ns[2].metric("jitstock_duplicate_batches_total") == 1  # not counted again


def test_a_refused_replay_with_new_content_stays_out_of_history(
    nodes: tuple[list[Node], str],
) -> None:
    ns, url = nodes
    ns[0].apply([batch(1, 40, at=1000)])
    ns[0].apply([batch(2, 35, at=2000)])
    before = ns[1].history("B1")
    # the same seq again with other readings (a broken agent), on another node
    ns[1].apply([batch(2, 5, at=50_000, dup=True)])
    assert ns[1].metric("jitstock_duplicate_batches_total") == 1
    assert ns[1].history("B1") == before == []
    assert ns[0].history("B1") == sorted([grams_for(40), grams_for(35)])
    # and on the node that applied it first
    ns[0].apply([batch(2, 5, at=60_000)])
    assert ns[0].history("B1") == sorted([grams_for(40), grams_for(35)])
    counts = _db(url, "SELECT id, on_hand FROM bins WHERE id = 'B1'")
    assert dict(counts) == {"B1": 35}
    # good input keeps flowing
    ns[1].apply([batch(3, 30, at=70_000)])
    assert ns[1].history("B1") == [grams_for(30)]


def status(state: str = "online") -> Incoming:
    payload = p.encode_status(
        p.Status(state, "1.0", NOW_MS, (p.SensorStatus("B1", False, "overload"),))  # type: ignore[arg-type]
    )
    return Incoming(p.agent_topic("plant1", AGENT, "status"), payload, 0, 1, 0, 0.0)


@pytest.mark.parametrize("kind", ["readings", "status"])
def test_a_flush_locks_the_bins_before_the_agent(
    nodes: tuple[list[Node], str], kind: str
) -> None:
    """Readings and statuses take the bin rows first, then the agent's row: two nodes'
    flushes never hold one each and wait for the other (a deadlock, then a retry)."""
    ns, url = nodes
    engine = make_engine(url)
    holder = engine.connect()
    done = threading.Event()
    failed: list[BaseException] = []

    def flush() -> None:
        try:
            ns[0].apply([batch(1, 40, at=1000)] if kind == "readings" else [status()])
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)
        finally:
            done.set()

    try:
        tx = holder.begin()
        # what another node's flush holds while it updates the agent's row
        holder.exec_driver_sql(
            f"SELECT 1 FROM agents WHERE id = '{AGENT}' FOR NO KEY UPDATE"
        )
        worker = threading.Thread(target=flush, daemon=True)
        worker.start()
        wait_until(
            lambda: (
                _db(
                    url,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'",
                )[0][0]
                >= 1
            ),
            60,
            what="the flush waiting for the agent's row",
        )
        # while it waits for the agent, it already holds its bin
        with pytest.raises(sa_exc.OperationalError, match="lock"):
            _db(url, "SELECT 1 FROM bins WHERE id = 'B1' FOR UPDATE NOWAIT")
        tx.rollback()
        wait_until(done.is_set, 60, what="the flush")
        assert not failed, failed
    finally:
        holder.close()
        engine.dispose()


def test_a_retried_flush_logs_the_database_error_not_the_autoflush_note() -> None:
    err = sa_exc.OperationalError(
        "UPDATE agents SET …", {}, psycopg.errors.DeadlockDetected("deadlock detected")
    )
    err.add_detail(
        "raised as a result of Query-invoked autoflush; consider using a "
        "session.no_autoflush block if this flush is occurring prematurely"
    )
    assert str(err).startswith("(raised as a result of Query-invoked autoflush")
    assert short_error(err) == "deadlock detected"


def _add_bin(url: str, bin_id: str) -> None:
    """A bin added on another node (a copy of B1 on another channel of pi-1)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TEMP TABLE nb AS SELECT * FROM bins WHERE id = 'B1';"
                f"UPDATE nb SET id = '{bin_id}', channel = 9, on_hand = 0,"
                " last_seen_ms = NULL; INSERT INTO bins SELECT * FROM nb"
            )
    finally:
        engine.dispose()


def test_a_reading_for_a_bin_another_node_just_added_is_applied(
    nodes: tuple[list[Node], str],
) -> None:
    ns, url = nodes
    ns[0].apply([batch(1, 40, at=1000)])
    _add_bin(url, "B9")  # no change listener here: this node's snapshot lacks B9
    ns[0].apply([batch(2, 12, at=2000, bins=("B1", "B9"))])
    counts = dict(_db(url, "SELECT id, on_hand FROM bins WHERE id IN ('B1', 'B9')"))
    assert counts == {"B1": 12, "B9": 12}
    assert unknown_bins(ns[0]) == 0
    # a bin that does not exist is still refused (one reload for it), good input flows
    ns[0].apply([batch(3, 11, at=3000, bins=("B1", "NOPE"))])
    ns[0].apply([batch(4, 10, at=4000, bins=("B1", "NOPE"))])
    counts = dict(_db(url, "SELECT id, on_hand FROM bins WHERE id IN ('B1', 'B9')"))
    assert counts == {"B1": 10, "B9": 12}
    assert unknown_bins(ns[0]) == 2


def unknown_bins(node: Node) -> float:
    got = node.metrics.registry.get_sample_value(
        "jitstock_rejected_items_total", {"reason": "unknown_bin"}
    )
    return got or 0.0


def test_the_listener_reacts_to_the_first_notification_without_its_window(
    nodes: tuple[list[Node], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change reaches the node when it is notified, not when the listener's read
    window ends (here 10 minutes: the old listener reacted only then)."""
    _, url = nodes
    monkeypatch.setattr(changes, "LISTEN_POLL_S", 600.0)
    reloads: list[int] = []
    listener = changes.ChangeListener(url, lambda: reloads.append(1), lambda: None)
    listener.start()
    try:
        wait_until(lambda: reloads, 60, what="the reload on connect")
        _add_bin(url, "B8")
        wait_until(lambda: len(reloads) >= 2, 60, what="the reload for the new bin")
        assert listener.received == 1
    finally:
        listener._stop.set()
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("NOTIFY jitstock_changes, 'stop'")  # wakes the listener
        listener.stop()


def test_readings_from_a_fast_device_clock_keep_their_order_across_nodes(
    nodes: tuple[list[Node], str],
) -> None:
    """Found from the outside (two nodes, an agent 3 s fast, batches back to back): a
    reading dated ahead of a node was dated at that node's now, so which of two batches
    was newer depended on when each node applied it. The older measurement, applied a
    moment later by the other node, overwrote the newer: a phantom refill, and a level
    the bin no longer had."""
    import time

    ns, url = nodes
    ahead = int(time.time() * 1000) + 60_000 - (NOW_MS - 600_000)  # a minute fast
    ns[0].apply([batch(1, 40, at=ahead - 2000)])
    ns[1].apply([batch(3, 11, at=ahead)])  # measured last, applied first
    time.sleep(0.01)
    ns[2].apply([batch(2, 30, at=ahead - 1000)])  # measured before it, applied after
    counts = _db(url, "SELECT id, on_hand FROM bins WHERE id IN ('B1', 'B2')")
    assert dict(counts) == {"B1": 11, "B2": 11}
    events = _db(
        url,
        "SELECT kind, sum(delta) FROM bin_events WHERE bin_id IN ('B1', 'B2') "
        "GROUP BY kind",
    )
    assert dict(events) == {"consumption": -58}  # 40 → 11 on each bin, no refill


def test_a_repeat_is_logged_once_and_a_redelivery_not_at_all(
    nodes: tuple[list[Node], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A single node logs a device's repeated seq; so does a cluster node, whichever
    node applied it first (before: counted only)."""
    ns, _url = nodes
    ns[0].apply([batch(1, 40, at=1000)])
    ns[0].apply([batch(2, 35, at=2000)])
    with caplog.at_level(logging.INFO, logger="jitstock.server.ingest"):
        ns[1].apply([batch(2, 35, at=2000, dup=True)])  # a broker's redelivery
        assert not [r for r in caplog.records if "repeat" in r.getMessage()]
        ns[1].apply([batch(2, 5, at=50_000)])  # a device that reused seq 2
        ns[2].apply([batch(3, 30, at=3000), batch(3, 30, at=3000)])  # twice in one
    repeats = [r.getMessage() for r in caplog.records if "repeat" in r.getMessage()]
    assert len(repeats) == 2, repeats
    assert "agent pi-1: batch seq 2 dropped as a repeat" in repeats[0]
    assert "agent pi-1: batch seq 3 dropped as a repeat" in repeats[1]
    assert ns[1].metric("jitstock_duplicate_batches_total") == 2
    assert ns[2].metric("jitstock_duplicate_batches_total") == 1


def test_a_very_large_gap_is_logged_when_the_leader_passes_it_over(
    nodes: tuple[list[Node], str], caplog: pytest.LogCaptureFixture
) -> None:
    ns, url = nodes
    ns[0].apply([batch(1, 40, at=1000)])
    ns[1].apply([batch(20_002, 35, at=2000)])  # 20,000 missing: a corrupt counter
    engine = make_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="jitstock.server.cluster.prune"):
            prune(engine, NOW_MS + 10**9, 5_000)
    finally:
        engine.dispose()
    assert _db(
        url, f"SELECT last_seq, gaps FROM agent_cursors WHERE agent_id = '{AGENT}'"
    ) == [(20_002, 20_000)]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "agent pi-1: 20000 batches missing below seq 20002, passed over" in warning
