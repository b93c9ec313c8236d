"""What one ingest flush makes durable, and the interfaces it is made durable through.

Shared by the ingest worker (:mod:`jitstock.server.ingest`), which builds a flush
from MQTT messages, and the state writer (:mod:`jitstock.server.state`), which
applies it in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from jitstock import protocol


@dataclass(slots=True)
class CursorUpdate:
    agent_id: str
    last_seq: int
    gaps: int = 0
    duplicates: int = 0
    reset: bool = False  # the agent started a new sequence: last_seq may go down


@dataclass(slots=True)
class Flush:
    """Everything one flush must make durable in the state DB, in one transaction.

    Bin data is columnar, one entry per bin the flush touched (not per reading):
    that is what the state writer turns into executemany statements.
    """

    now_ms: int
    cursors: dict[str, CursorUpdate] = field(default_factory=dict)
    statuses: list[tuple[str, str, protocol.Status]] = field(
        default_factory=list
    )  # (site, agent, status)
    scans: list[tuple[str, str, protocol.Scan]] = field(
        default_factory=list
    )  # (site, agent, scan)
    readings: int = 0
    below_tare: int = 0  # readings clearly below their bin's tare: held, not counted
    tare_changed: list[tuple[str, float, bool]] = field(
        default_factory=list
    )  # (bin, grams, now below tare) for bins whose weight went below tare or came back
    seen: list[tuple[str, float, int]] = field(
        default_factory=list
    )  # (bin, last grams, last ts_ms)
    counts: list[tuple[str, int, float]] = field(
        default_factory=list
    )  # (bin, on hand, confidence)
    events: list[tuple[str, int, str, int, int]] = field(
        default_factory=list
    )  # (bin, ts, kind, delta, after)
    paths: dict[str, list[tuple[int, int]]] = field(
        default_factory=dict
    )  # cluster mode: (ts, count) where a bin's count changed within the flush
    decide: list[str] = field(
        default_factory=list
    )  # bins whose count moved to or below their reorder point
    count_changed: list[str] = field(
        default_factory=list
    )  # bins whose count this flush changed (or set for the first time)
    claimed: list[object] = field(
        default_factory=list
    )  # first attempts of its orders, claimed in its transaction (sent after the commit)
    # it changed nothing but cursors, which wait (in memory, its messages unacknowledged)
    # for the next flush that commits
    held: bool = False
    # cluster mode (jitstock.server.cluster): the (agent, seq) of every batch applied, and
    # the agents that started a new sequence; the state writer claims them in the database
    batches: list[tuple[str, int]] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)
    # what became of each dock scan (dock_scans.SCAN_OUTCOMES), counted once it is durable
    scan_outcomes: list[str] = field(default_factory=list)
    # agents whose status the state DB had no record for, counted once durable
    unknown_status_agents: list[str] = field(default_factory=list)

    @property
    def changed_bins(self) -> list[str]:
        """Bins this flush reported on."""
        return [b for b, _, _ in self.seen]


def merge_cursors(
    first: dict[str, CursorUpdate], then: dict[str, CursorUpdate]
) -> dict[str, CursorUpdate]:
    """Cursor updates of two flushes (``then`` the later) as those of one."""
    out = dict(first)
    for agent, b in then.items():
        a = out.get(agent)
        if a is None:
            out[agent] = b
            continue
        reset = a.reset or b.reset
        last = b.last_seq if b.reset else max(a.last_seq, b.last_seq)
        out[agent] = CursorUpdate(
            agent, last, a.gaps + b.gaps, a.duplicates + b.duplicates, reset
        )
    return out


class RetryFlush(Exception):
    """The flush must be redone from its messages (nothing of it was made durable)."""


class DeadLetterSink(Protocol):
    """Where ingest puts messages it cannot apply (jitstock.server.deadletters.DeadLetterStore)."""

    def add(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        error: str,
        agent_id: str | None,
    ) -> int:
        """Store one dead letter durably; returns its id."""
        ...


class StateWriter:
    """The state side of a flush (implemented over SQLAlchemy in jitstock.server.state)."""

    def apply(self, flush: Flush) -> list[str]:
        """Apply a flush in one transaction; return ids of orders it created."""
        raise NotImplementedError

    def load_cursors(self) -> dict[str, int]:
        """Last applied seq per agent."""
        raise NotImplementedError
