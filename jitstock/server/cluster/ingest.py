"""Ingest in cluster mode: the (agent, seq) check moves from memory to the database.

A node sees only the batches the shared subscription gives it, so it cannot know
whether a batch is new: it records every batch's (agent, seq) in the flush, and the
state writer (:class:`jitstock.server.cluster.state.ClusterState`) claims them in the
flush's transaction.  A batch applied before (by any node) makes the state writer
refuse the whole flush with :class:`AlreadyApplied`; this node remembers those
batches and redoes the flush without them (a redelivery is rare: a node died between
its commit and its acknowledgement).  The memory serves that redo only: once a flush
that dropped a remembered batch commits, the batch is forgotten, so the database
decides about the next batch with that (agent, seq) — after a new outbox (seq 1 again,
possibly taken by another node) it is a new batch.

Gaps cannot be counted here (the batch "before" may be on another node): the leader
counts them when it moves each agent's low-water mark (:mod:`jitstock.server.cluster.prune`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from jitstock.server.cluster.state import AlreadyApplied, ClusterState
from jitstock.server.flush import Flush, RetryFlush
from jitstock.server.ingest import MAX_SEQ_JUMP, Ingest
from jitstock.server.ingest_levels import FlushLevels
from jitstock.server.mqtt import Incoming

log = logging.getLogger(__name__)

# A reading for a bin this node does not know may be for one another node just added
# (its notification not here yet): the registry is reloaded and the flush decoded again
# once per unknown bin per this long, and at most once per UNKNOWN_RELOAD_MIN_S.
UNKNOWN_RELOAD_S = 30.0
UNKNOWN_RELOAD_MIN_S = 1.0
UNKNOWN_REMEMBERED = 10_000

# Batches known applied (refused by the database) are remembered up to this many; past
# it the memory starts again (a forgotten one is refused by the database once more).
APPLIED_REMEMBERED = 100_000


class ClusterIngest(Ingest):
    """Ingest for one node of several: dedup and levels in the database."""

    state: ClusterState
    history_after_state = True  # a refused (already applied) batch writes no history

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._levels = FlushLevels(self.registry, self._later, cluster=True)
        self._applied: set[tuple[str, int]] = set()
        self._in_flush: set[tuple[str, int]] = set()
        self._redelivered: set[tuple[str, int]] = set()  # of this flush, dup flag set
        self._dropped: set[tuple[str, int]] = set()
        self._unknown: dict[str, float] = {}  # unknown bin's message -> reload time
        self._unknown_reload = -UNKNOWN_RELOAD_MIN_S

    def _reject_item(self, agent: str, reason: str, message: str) -> None:
        if reason == "unknown_bin" and self._reload_for(message):
            raise RetryFlush("a reading for an unknown bin: bin registry reloaded")
        super()._reject_item(agent, reason, message)

    def _reload_for(self, unknown: str) -> bool:
        """Reload the registry for an unknown bin, unless done for it (or any) lately."""
        now = time.monotonic()
        if now - self._unknown.get(unknown, -UNKNOWN_RELOAD_S) < UNKNOWN_RELOAD_S:
            return False
        if now - self._unknown_reload < UNKNOWN_RELOAD_MIN_S:
            return False
        if len(self._unknown) >= UNKNOWN_REMEMBERED:
            self._unknown = {}
        self._unknown[unknown] = self._unknown_reload = now
        self.registry.reload()
        return True

    def process(
        self, items: Sequence[Incoming], *, hold: bool = False
    ) -> tuple[Flush, list[str]]:
        """Make a group of messages durable (never held: the claims must commit)."""
        self._in_flush = set()
        self._redelivered = set()
        self._dropped = set()
        try:
            flush, orders = super().process(items, hold=False)
        except AlreadyApplied as exc:
            if len(self._applied) + len(exc.batches) > APPLIED_REMEMBERED:
                self._applied = set()
            self._applied |= exc.batches  # counted by the redone flush's _advance
            try:
                self.state.count_duplicates(exc.batches, self.clock.time_ms())
            except Exception:
                log.exception("duplicate counters not written")
            # as a single node says it (ingest_seq); a broker's redelivery is no news
            for agent, seq in sorted(exc.batches - self._redelivered):
                self._bad.log(
                    logging.INFO,
                    f"{agent}:repeat",
                    "agent %s: batch seq %d dropped as a repeat (applied before, by "
                    "this node or another); a device must publish in seq order and "
                    "never reuse a seq (docs/protocol.md, seq rules)",
                    agent,
                    seq,
                )
            raise
        # the redo is done: what it dropped is the database's call from now on
        self._applied -= self._dropped
        if flush.resets:
            self._applied = {k for k in self._applied if k[0] not in flush.resets}
            self.metrics.seq_resets.inc(len(flush.resets))
        for agent, seq in flush.batches:
            if seq > self._cursors.get(agent, 0) or agent in flush.resets:
                self._cursors[agent] = seq
        return flush, orders

    def _advance(
        self,
        cursors: dict[str, int],
        flush: Flush,
        agent: str,
        seq: int,
        *,
        dup: bool = False,
    ) -> bool:
        """Record the batch for the database's check; False only for one known applied."""
        key = (agent, seq)
        if key in self._applied or key in self._in_flush:
            if key in self._applied:
                self._dropped.add(key)  # logged when the database refused it
            elif not dup:  # the same batch twice in one flush: a device's re-send
                self._later(
                    self._bad.log,
                    logging.INFO,
                    f"{agent}:repeat",
                    "agent %s: batch seq %d dropped as a repeat (twice in one flush); a "
                    "device must never reuse a seq (docs/protocol.md, seq rules)",
                    agent,
                    seq,
                )
            self._later(self.metrics.duplicates.inc)
            return False
        # the newest seq this node knows of: a hint for the broken-counter checks only
        last = cursors.get(agent, 0)
        if last and seq - last > MAX_SEQ_JUMP:
            self._reject(
                agent,
                "seq_jump",
                f"seq {seq} is more than {MAX_SEQ_JUMP} beyond the last known {last}",
            )
            return False
        if not dup and (seq == 1 or last - seq > MAX_SEQ_JUMP):
            # maybe a new outbox: the state writer decides (a seq 1 applied before means
            # one; a first seq 1 that merely comes after later seqs does not)
            if agent not in flush.resets:
                flush.resets.append(agent)
            cursors[agent] = seq
        else:
            cursors[agent] = max(last, seq)
        self._in_flush.add(key)
        if dup:
            self._redelivered.add(key)
        flush.batches.append(key)
        return True
