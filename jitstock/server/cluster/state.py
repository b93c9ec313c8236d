"""The state side of an ingest flush in cluster mode (PostgreSQL only).

Several server nodes take batches from one MQTT 5 shared subscription, so a batch
may reach any node, twice (a node died between its commit and its acknowledgement),
and out of order.  Three things make that exact, all inside the flush's transaction:

- **(agent, seq) once**: every batch is inserted into ``applied_batches`` (primary
  key) with ``ON CONFLICT DO NOTHING RETURNING``; a batch that is not returned, or
  that lies at or below the agent's low-water mark (``agent_cursors.last_seq``, moved
  up by the leader's pruning, :mod:`jitstock.server.cluster.prune`), was applied
  before.  Then the transaction is rolled back and :class:`AlreadyApplied` names
  those batches; ingest drops them and redoes the flush.
- **level = the newest measurement**: one ``UPDATE … FROM unnest(…)`` writes every bin
  the flush saw, guarded by ``last_seen_ms <= reading time`` (an older reading
  processed later changes nothing), with the rows locked in bin order first (two
  nodes never deadlock on bins) and their previous count returned.
- **events and decisions from the database's previous count**, not from the node's
  memory (another node may have moved the count since): a consumption or refill is
  the change against the row, and a count that moved to or below the reorder point
  is decided under the row lock (one open order per bin: the unique index).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Connection, update

from jitstock.server.db.models import Agent
from jitstock.server.db.session import transaction
from jitstock.server.flush import Flush, RetryFlush
from jitstock.server.ingest import MAX_SEQ_JUMP
from jitstock.server.state import _MAX_COUNTER, SqlState

log = logging.getLogger(__name__)

# Claim the flush's batches; sorted, so two nodes inserting the same keys wait on one
# another in one order (no deadlock).
_CLAIM = """
INSERT INTO applied_batches (agent_id, seq, applied_ms)
SELECT a, s, %(now)s FROM unnest(%(agents)s::text[], %(seqs)s::bigint[]) AS v(a, s)
ORDER BY a, s
ON CONFLICT DO NOTHING
RETURNING agent_id, seq
"""
_MARKS = "SELECT agent_id, last_seq FROM agent_cursors WHERE agent_id = ANY(%(agents)s)"
# A new outbox (the agent started again at seq 1): forget its applied batches.
_RESET_ROWS = "DELETE FROM applied_batches WHERE agent_id = ANY(%(agents)s)"
_RESET_MARK = """
INSERT INTO agent_cursors (agent_id, last_seq, gaps, duplicates, updated_ms)
SELECT a, 0, 0, 0, %(now)s FROM unnest(%(agents)s::text[]) AS v(a)
ON CONFLICT (agent_id) DO UPDATE SET last_seq = 0, updated_ms = excluded.updated_ms
"""
_DUPLICATES = f"""
INSERT INTO agent_cursors (agent_id, last_seq, gaps, duplicates, updated_ms)
SELECT a, 0, 0, n, %(now)s FROM unnest(%(agents)s::text[], %(counts)s::bigint[]) AS v(a, n)
ON CONFLICT (agent_id) DO UPDATE SET
duplicates = agent_cursors.duplicates
  + LEAST(excluded.duplicates, {_MAX_COUNTER} - agent_cursors.duplicates),
updated_ms = excluded.updated_ms
"""
# Every bin the flush saw, newest reading wins; rows locked in bin order first.
_BINS = """
WITH v AS (
  SELECT * FROM unnest(%(ids)s::text[], %(grams)s::float8[], %(ts)s::bigint[],
                       %(cnt)s::bigint[], %(conf)s::float8[]) AS v(id, grams, ts, cnt, conf)
), old AS (
  SELECT b.id, b.on_hand, b.last_seen_ms FROM bins b JOIN v ON v.id = b.id
  ORDER BY b.id FOR UPDATE OF b
)
UPDATE bins AS b SET
  last_grams = v.grams,
  last_seen_ms = v.ts,
  on_hand = COALESCE(v.cnt, b.on_hand),
  on_hand_confidence = CASE WHEN v.cnt IS NULL THEN b.on_hand_confidence ELSE v.conf END
FROM v JOIN old ON old.id = v.id
WHERE b.id = v.id AND (old.last_seen_ms IS NULL OR old.last_seen_ms <= v.ts)
RETURNING b.id, old.on_hand, old.last_seen_ms, v.cnt, v.ts, b.reorder_point
"""


# One lock order for every flush, on every node: bins (by id), then agents (by id).
# A status touches its agent and its agent's bins (sensor health), a reading its bin
# and its agent (last seen): both take the bins first, so two flushes never wait on
# each other in opposite orders.
_LOCK_BINS = """
SELECT id FROM bins WHERE id = ANY(%(ids)s) OR agent_id = ANY(%(agents)s)
ORDER BY id FOR UPDATE
"""
_LOCK_AGENTS = (
    "SELECT id FROM agents WHERE id = ANY(%(agents)s) ORDER BY id FOR NO KEY UPDATE"
)


class AlreadyApplied(RetryFlush):
    """Batches of the flush were applied before (by this node or another): nothing of
    the flush was committed; redo it without them."""

    def __init__(self, batches: set[tuple[str, int]]) -> None:
        super().__init__(f"{len(batches)} batch(es) already applied")
        self.batches = batches


class ClusterState(SqlState):
    """Applies flushes so that any node may apply any batch, in any order, once."""

    def apply(self, flush: Flush) -> list[str]:
        """Apply a flush in one transaction; return ids of orders it created."""
        now = flush.now_ms
        agents = sorted({a for a, _ in flush.batches})
        alive = self._alive(agents, now)
        with transaction(self.session_factory) as s:
            conn = s.connection()
            if flush.resets:
                flush.resets = _new_sequences(conn, flush, now)
            if flush.batches:
                _claim(conn, flush.batches, now)
            reporting = sorted({a for _, a, _ in flush.statuses})
            if reporting:  # their bins with the flush's, in one order (above)
                seen = sorted({b for b, _, _ in flush.seen})
                conn.exec_driver_sql(_LOCK_BINS, {"ids": seen, "agents": reporting})
            events, decide = self._bins(conn, flush)
            if reporting or alive:
                locked = sorted(set(reporting) | set(alive))
                conn.exec_driver_sql(_LOCK_AGENTS, {"agents": locked})
            if alive:
                conn.execute(
                    update(Agent)
                    .where(Agent.id.in_(alive))
                    .values(last_seen_ms=now, online=True)
                )
            flush.events = events
            created = self._events_and_decisions(s, flush, decide)
        self._committed(flush, alive)
        return created

    def count_duplicates(self, batches: set[tuple[str, int]], now_ms: int) -> None:
        """Add batches found already applied to their agents' duplicate counters."""
        per: dict[str, int] = {}
        for a, _ in batches:
            per[a] = per.get(a, 0) + 1
        agents = sorted(per)
        with self._engine.begin() as conn:
            conn.exec_driver_sql(
                _DUPLICATES,
                {"agents": agents, "counts": [per[a] for a in agents], "now": now_ms},
            )

    def _bins(
        self, conn: Connection, flush: Flush
    ) -> tuple[list[tuple[str, int, str, int, int]], set[str]]:
        """Write every seen bin (newest reading wins); events and low bins from the rows."""
        if not flush.seen:
            return [], set()
        counted = {b: (c, f) for b, c, f in flush.counts}
        rows = sorted(flush.seen)
        params: dict[str, Any] = {
            "ids": [b for b, _, _ in rows],
            "grams": [g for _, g, _ in rows],
            "ts": [t for _, _, t in rows],
            "cnt": [counted[b][0] if b in counted else None for b, _, _ in rows],
            "conf": [counted[b][1] if b in counted else None for b, _, _ in rows],
        }
        events: list[tuple[str, int, str, int, int]] = []
        low: set[str] = set()
        for bin_id, old, old_seen, cnt, ts, rop in conn.exec_driver_sql(_BINS, params):
            if cnt is None:
                continue
            first = old_seen is None
            # the readings newer than the row's: each change of direction is an event
            path = [
                (t, n) for t, n in flush.paths.get(bin_id, []) if first or t >= old_seen
            ]
            path.append((ts, cnt))  # the newest reading, which the row now holds
            made = _along(bin_id, None if first else old, path)
            events += made
            if cnt <= rop and (first or made):
                low.add(bin_id)
        events.sort()
        return events, low


def _along(
    bin_id: str, old: int | None, path: list[tuple[int, int]]
) -> list[tuple[str, int, str, int, int]]:
    """Events of a bin from its count ``old`` (None: it has none yet) along ``path``
    ((time, count) in time order): steps the same way are one event."""
    events: list[tuple[str, int, str, int, int]] = []
    level = old
    for ts, n in path:
        if level is not None and n != level:
            kind = "consumption" if n < level else "refill"
            if events and events[-1][2] == kind:
                events[-1] = (bin_id, ts, kind, events[-1][3] + n - level, n)
            else:
                events.append((bin_id, ts, kind, n - level, n))
        level = n
    return events


def _new_sequences(conn: Connection, flush: Flush, now: int) -> list[str]:
    """Of the agents whose batch may start a new outbox, those that do: their seq 1, or
    one far below, was applied before.  Their applied batches are forgotten."""
    firsts = {a: min(s for b, s in flush.batches if b == a) for a in flush.resets}
    agents = sorted(firsts)
    marks: dict[str, int] = dict(conn.exec_driver_sql(_MARKS, {"agents": agents}).all())
    ones = {
        a
        for (a,) in conn.exec_driver_sql(
            "SELECT agent_id FROM applied_batches WHERE agent_id = ANY(%(agents)s) "
            "AND seq = 1",
            {"agents": agents},
        )
    }
    new = [
        a
        for a in agents
        if (firsts[a] == 1 and (a in ones or marks.get(a, 0) >= 1))
        or marks.get(a, 0) - firsts[a] > MAX_SEQ_JUMP
    ]
    if new:
        for a in new:
            log.warning(
                "agent %s started a new sequence at %d: new outbox", a, firsts[a]
            )
        params = {"agents": new, "now": now}
        conn.exec_driver_sql(_RESET_ROWS, params)
        conn.exec_driver_sql(_RESET_MARK, params)
    return new


def _claim(conn: Connection, batches: list[tuple[str, int]], now: int) -> None:
    """Insert the flush's (agent, seq) rows; AlreadyApplied names those applied before."""
    keys = sorted(set(batches))
    agents = [a for a, _ in keys]
    got = {
        (a, int(s))
        for a, s in conn.exec_driver_sql(
            _CLAIM, {"agents": agents, "seqs": [s for _, s in keys], "now": now}
        )
    }
    marks: dict[str, int] = dict(
        conn.exec_driver_sql(_MARKS, {"agents": sorted(set(agents))}).all()
    )
    old = {k for k in keys if k not in got or k[1] <= marks.get(k[0], 0)}
    if len(keys) < len(batches):
        seen: set[tuple[str, int]] = set()
        for k in batches:
            if k in seen:
                old.add(
                    k
                )  # the same batch twice in one flush (ingest drops those first)
            seen.add(k)
    if old:
        raise AlreadyApplied(old)
