"""Cluster dedup and newest-level logic, as a hypothesis state machine.

Two nodes — each its own engine, bin registry, ``ClusterState`` and ``ClusterIngest`` —
apply batches of three agents' numbered streams to one PostgreSQL database: any
batch on any node, in any order, replayed, several in one flush (duplicates within a
flush too), with the leader's pruning in between.  The model is the test's own: the
set of batches delivered, and per bin the newest reading among them.

Invariants after every step:

1. exactly once: the readings both nodes applied (their ``jitstock_readings`` counters)
   = the readings of the distinct batches delivered;
2. per agent, ``applied_batches`` ∪ (1 … ``agent_cursors.last_seq``) = the seqs delivered,
   and the mark never passes a seq not delivered (the gap wait is long);
3. each bin's count = the count of the newest reading delivered (not the last processed);
4. each bin's consumption/refill events add up to its count minus the count it first had
   (events come from the database's previous count, whichever node wrote it, and the
   readings of the flush newer than it);
5. at most one order per bin waiting for its first delivery (a part-received order
   does not block the next one, as the database's own index says).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from sqlalchemy import Engine

from jitstock import protocol as p
from jitstock.server.cluster.prune import prune
from jitstock.server.db.session import make_engine
from jitstock.server.mqtt import Incoming
from tests.cluster.nodes import Node
from tests.factories import NOW_MS, Plant, grams_for
from tests.server.conftest import _postgres_database

AGENT_BINS = {"pi-1": ("B1", "B2"), "pi-2": ("B3",)}
MAX_SEQ = 10
NEVER_MS = 10**12  # the gap wait: the mark moves over contiguous seqs only


def count_of(agent: str, seq: int, bin_id: str) -> int:
    """The count a batch shows for a bin: 0–59, crossing the reorder point (20) often."""
    h = hashlib.sha256(f"{agent}/{seq}/{bin_id}".encode()).digest()
    return h[0] % 60


def ts_of(seq: int, k: int) -> int:
    return NOW_MS - 600_000 + seq * 1000 + k


def batch(agent: str, seq: int, *, dup: bool = False) -> Incoming:
    """The batch; ``dup``: sent before (a broker sets DUP on a redelivery)."""
    readings = tuple(
        p.Reading(b, ts_of(seq, k), grams_for(count_of(agent, seq, b)), True)
        for k, b in enumerate(AGENT_BINS[agent])
    )
    payload = p.encode_readings(p.ReadingsBatch(agent, seq, ts_of(seq, 9), readings))
    return Incoming(
        p.agent_topic("plant1", agent, "readings"), payload, seq, 1, 0, 0.0, dup=dup
    )


@pytest.fixture(scope="module")
def cluster_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("cluster-sm")
    gen = _postgres_database()
    url = next(gen)
    plant = Plant(tmp, db_url=url)
    plant.close()
    yield url, tmp
    gen.close()


def _clear(engine: Engine) -> None:
    """The plant as seeded: no batches, cursors, events or orders; bins never read."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE applied_batches, agent_cursors, bin_events, orders CASCADE"
        )
        conn.exec_driver_sql(
            "UPDATE bins SET on_hand = 0, last_seen_ms = NULL, last_grams = NULL"
        )


KEYS = st.tuples(st.sampled_from(sorted(AGENT_BINS)), st.integers(1, MAX_SEQ))


class ClusterMachine(RuleBasedStateMachine):
    db: tuple[str, Path]

    @initialize()
    def reset(self) -> None:
        url, tmp = self.db
        engine = make_engine(url)
        _clear(engine)
        self.admin = engine
        for i in range(2):
            (tmp / f"n{i}").mkdir(exist_ok=True)
        self.nodes = [Node(url, tmp / f"n{i}") for i in range(2)]
        self.delivered: set[tuple[str, int]] = set()
        self.first: dict[str, int] = {}

    def teardown(self) -> None:
        for n in getattr(self, "nodes", []):
            n.close()
        if hasattr(self, "admin"):
            self.admin.dispose()

    @rule(node=st.integers(0, 1), key=KEYS)
    def deliver(self, node: int, key: tuple[str, int]) -> None:
        fresh = key not in self.delivered
        self.nodes[node].apply([batch(*key, dup=not fresh)])
        if fresh:
            self._note_first_flush([key])

    @rule(node=st.integers(0, 1), keys=st.lists(KEYS, min_size=1, max_size=6))
    def deliver_group(self, node: int, keys: list[tuple[str, int]]) -> None:
        fresh = [k for k in dict.fromkeys(keys) if k not in self.delivered]
        self.nodes[node].apply([batch(*k, dup=k in self.delivered) for k in keys])
        self._note_first_flush(fresh)

    def _note_first_flush(self, fresh: list[tuple[str, int]]) -> None:
        # within one flush, the oldest reading of a bin is its first count: the
        # readings after it are events (each change of direction), like readings
        # that came one flush at a time
        for b in {b for a, _ in fresh for b in AGENT_BINS[a]} - set(self.first):
            oldest = min(
                (
                    (ts_of(s, AGENT_BINS[a].index(b)), count_of(a, s, b))
                    for a, s in fresh
                    if b in AGENT_BINS[a]
                ),
            )
            self.first[b] = oldest[1]
        self.delivered |= set(fresh)

    @rule()
    def leader_prunes(self) -> None:
        prune(self.admin, NOW_MS, NEVER_MS)

    @invariant()
    def exactly_once(self) -> None:
        if not hasattr(self, "nodes"):
            return
        expected = sum(len(AGENT_BINS[a]) for a, _ in self.delivered)
        assert sum(n.readings() for n in self.nodes) == expected

    @invariant()
    def dedup_rows_match_the_batches_delivered(self) -> None:
        if not hasattr(self, "nodes"):
            return
        with self.admin.begin() as conn:
            marks = dict(
                conn.exec_driver_sql(
                    "SELECT agent_id, last_seq FROM agent_cursors"
                ).all()
            )
            rows = conn.exec_driver_sql(
                "SELECT agent_id, seq FROM applied_batches"
            ).all()
        for agent in AGENT_BINS:
            mark = marks.get(agent, 0)
            held = {s for a, s in rows if a == agent}
            assert held | set(range(1, mark + 1)) == {
                s for a, s in self.delivered if a == agent
            }
            assert not held & set(range(1, mark + 1))

    @invariant()
    def level_is_the_newest_reading(self) -> None:
        if not hasattr(self, "nodes"):
            return
        with self.admin.begin() as conn:
            rows = {
                b: (c, seen)
                for b, c, seen in conn.exec_driver_sql(
                    "SELECT id, on_hand, last_seen_ms FROM bins"
                )
            }
            sums = dict(
                conn.exec_driver_sql(
                    "SELECT bin_id, SUM(delta) FROM bin_events GROUP BY bin_id"
                ).all()
            )
            open_orders = conn.exec_driver_sql(
                # a part-received order does not block the bin's next order (its
                # remainder may be too small to lift the position: migration 0017)
                "SELECT bin_id, COUNT(*) FROM orders WHERE state IN "
                "('created','sent','acknowledged','shipped') GROUP BY bin_id"
            ).all()
        for agent, bins in AGENT_BINS.items():
            seqs = [s for a, s in self.delivered if a == agent]
            for k, b in enumerate(bins):
                if not seqs:
                    assert rows[b][1] is None
                    continue
                newest = max(seqs)
                assert rows[b] == (count_of(agent, newest, b), ts_of(newest, k))
                assert int(sums.get(b) or 0) == rows[b][0] - self.first[b]
        assert all(n <= 1 for _, n in open_orders)


@pytest.mark.timeout(600)
def test_cluster_dedup_and_newest_level(cluster_db: tuple[str, Path]) -> None:
    ClusterMachine.db = cluster_db
    run = ClusterMachine.TestCase
    run.settings = settings(
        max_examples=12,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    run().runTest()


HOSTILE = [
    b'{"agent":"pi-1","seq":9223372036854775808,"sent_ms":1,"readings":[]}',
    b'{"agent":"pi-1","seq":18446744073709551616,"sent_ms":1,"readings":[]}',
    b'{"agent":"pi-1","seq":0,"sent_ms":1,"readings":[]}',
    b'{"agent":"pi-1","seq":"7","sent_ms":1,"readings":[]}',
    b'{"agent":"pi-1","seq":5e-324,"sent_ms":1,"readings":[]}',
    b'{"agent":"pi-1","seq":NaN,"sent_ms":1,"readings":[]}',
    b"",
    b"[]",
    b"{" * 100_000,
]


def test_hostile_batches_are_refused_and_good_ones_flow(
    cluster_db: tuple[str, Path],
) -> None:
    url, tmp = cluster_db
    machine = ClusterMachine()
    ClusterMachine.db = (url, tmp)
    machine.reset()
    try:
        node = machine.nodes[0]
        topic = p.agent_topic("plant1", "pi-1", "readings")
        node.apply([Incoming(topic, h, i, 1, 0, 0.0) for i, h in enumerate(HOSTILE)])
        rejected = sum(
            sample.value
            for m in node.metrics.registry.collect()
            for sample in m.samples
            if sample.name == "jitstock_rejected_batches_total"
        )
        assert rejected == len(HOSTILE)
        with machine.admin.begin() as conn:
            assert (
                conn.exec_driver_sql("SELECT count(*) FROM applied_batches").scalar()
                == 0
            )
        node.apply([batch("pi-1", 1)])
        machine._note_first_flush([("pi-1", 1)])
        machine.level_is_the_newest_reading()
        machine.exactly_once()
    finally:
        machine.teardown()


def test_a_burst_makes_an_event_per_change_of_direction_on_either_node(
    cluster_db: tuple[str, Path],
) -> None:
    """A delivery inside a burst (an outbox re-sent after a reconnect) is a refill, not
    netted against the picks after it — also when another node wrote the count before."""
    url, tmp = cluster_db
    engine = make_engine(url)
    _clear(engine)
    (tmp / "b0").mkdir(exist_ok=True)
    (tmp / "b1").mkdir(exist_ok=True)
    nodes = [Node(url, tmp / "b0"), Node(url, tmp / "b1")]

    def one(seq: int, n: int) -> Incoming:
        reading = p.Reading("B3", NOW_MS + seq * 1000, grams_for(n), True)
        payload = p.encode_readings(
            p.ReadingsBatch("pi-2", seq, NOW_MS + seq * 1000, (reading,))
        )
        return Incoming(
            p.agent_topic("plant1", "pi-2", "readings"), payload, seq, 1, 0, 0.0
        )

    try:
        nodes[0].apply([one(1, 30)])
        nodes[1].apply([one(k, n) for k, n in enumerate([80, 70, 60, 12], start=2)])
        with engine.begin() as conn:
            rows = conn.exec_driver_sql(
                "SELECT kind, delta, on_hand_after FROM bin_events "
                "WHERE bin_id = 'B3' ORDER BY ts_ms, id"
            ).all()
        assert [tuple(r) for r in rows] == [
            ("refill", 50, 80),
            ("consumption", -68, 12),
        ]
    finally:
        for n in nodes:
            n.close()
        engine.dispose()
