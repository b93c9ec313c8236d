"""The leader moves each agent's low-water mark over its applied batches.

``agent_cursors.last_seq`` is, in cluster mode, the seq up to which every batch of the
agent is settled (applied, or given up as a gap); ``applied_batches`` holds the
batches applied above it.  The mark moves over a contiguous run; a missing seq is
waited for ``gap_wait_ms`` (counted from when the batch above it was applied) and
then counted in ``agent_cursors.gaps`` and passed over.  A batch arriving after its
seq was passed over is refused as a duplicate (as in single-node mode, where a seq
below the cursor is one).  The rows at or below the mark are deleted.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from jitstock.ratelog import RateLimitedLog
from jitstock.server.ingest import BAD_INPUT_LOG_INTERVAL_S, MAX_SEQ_JUMP
from jitstock.server.ingest_seq import SEQ_GAP_WARN

log = logging.getLogger(__name__)
_bad = RateLimitedLog(log, interval_s=BAD_INPUT_LOG_INTERVAL_S)

# At most this many applied rows of one agent are looked at per pass.
PRUNE_ROWS = 100_000

_AGENTS = "SELECT DISTINCT agent_id FROM applied_batches"
_MARK = "SELECT last_seq FROM agent_cursors WHERE agent_id = %(a)s FOR UPDATE"
_ROWS = (
    "SELECT seq, applied_ms FROM applied_batches WHERE agent_id = %(a)s AND seq > %(m)s "
    f"ORDER BY seq LIMIT {PRUNE_ROWS}"
)
_MOVE = """
INSERT INTO agent_cursors (agent_id, last_seq, gaps, duplicates, updated_ms)
VALUES (%(a)s, %(m)s, %(g)s, 0, %(now)s)
ON CONFLICT (agent_id) DO UPDATE SET last_seq = excluded.last_seq,
gaps = agent_cursors.gaps + LEAST(excluded.gaps, 9223372036854775807 - agent_cursors.gaps),
updated_ms = excluded.updated_ms
"""
_DELETE = "DELETE FROM applied_batches WHERE agent_id = %(a)s AND seq <= %(m)s"


def next_mark(
    mark: int, rows: list[tuple[int, int]], now_ms: int, gap_wait_ms: int
) -> tuple[int, int]:
    """The new low-water mark and the gaps passed over, from the rows above ``mark``
    (seq, applied_ms) in seq order.  ``mark`` 0: the agent's first (or a new) sequence,
    which starts at its lowest seq once that is 1 or has waited ``gap_wait_ms``.  A gap
    wider than ``MAX_SEQ_JUMP`` is a broken counter, never passed over: the mark stays
    below that batch (one row), and the agent's normal seqs go on being applied."""
    gaps = 0
    if not rows:
        return mark, 0
    if mark == 0 and rows[0][0] != 1:
        if now_ms - rows[0][1] < gap_wait_ms:
            return mark, 0
        mark = rows[0][0] - 1  # the sequence's start before this server: not a gap
    for seq, applied_ms in rows:
        if seq == mark + 1:
            mark = seq
        elif now_ms - applied_ms >= gap_wait_ms and seq - mark - 1 <= MAX_SEQ_JUMP:
            gaps += seq - mark - 1
            mark = seq
        else:
            break
    return mark, gaps


def prune(engine: Engine, now_ms: int, gap_wait_ms: int) -> int:
    """Move every agent's mark (one transaction per agent); returns the rows deleted."""
    with engine.begin() as conn:
        agents = [a for (a,) in conn.exec_driver_sql(_AGENTS)]
    deleted = 0
    for agent in agents:
        with engine.begin() as conn:
            row = conn.exec_driver_sql(_MARK, {"a": agent}).first()
            mark = int(row[0]) if row is not None else 0
            rows = [
                (int(s), int(t))
                for s, t in conn.exec_driver_sql(_ROWS, {"a": agent, "m": mark})
            ]
            new, gaps = next_mark(mark, rows, now_ms, gap_wait_ms)
            if new == mark:
                continue
            conn.exec_driver_sql(
                _MOVE, {"a": agent, "m": new, "g": gaps, "now": now_ms}
            )
            deleted += conn.exec_driver_sql(_DELETE, {"a": agent, "m": new}).rowcount
        if gaps > SEQ_GAP_WARN:
            # as a single node says it (ingest_seq): a jump this wide is rarely lost batches
            _bad.log(
                logging.WARNING,
                f"{agent}:seq_gap_large",
                "agent %s: %d batches missing below seq %d, passed over as gaps; "
                "almost always a corrupt seq counter: its batches below seq %d are now "
                "dropped as repeats; if its counter is broken, restart its seq at 1 "
                "(docs/protocol.md, seq rules)",
                agent,
                gaps,
                new,
                new,
            )
    return deleted
