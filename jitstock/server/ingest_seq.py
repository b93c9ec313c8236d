"""The seq rules of ingest (docs/protocol.md, "seq rules"): each (agent, seq) applied
once, a 1 after a higher seq a new sequence, absurd jumps rejected, and what a device
gets wrong about its seq counted and logged rate-limited."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from jitstock import protocol
from jitstock.ratelog import RateLimitedLog
from jitstock.server.flush import CursorUpdate, Flush
from jitstock.server.metrics import Metrics
from jitstock.server.registry import UNKNOWN, BinRegistry, Snapshot

# A seq this far beyond the agent's last one is not a gap but a broken device: an outbox
# holds 500,000 batches by default, so no real gap comes near it.  Such a batch is rejected
# (reason seq_jump) and the cursor stays; a seq this far *below* it is a new sequence.
MAX_SEQ_JUMP = 100_000_000
# A gap wider than this is still counted and applied, but warned about: jitstock-edge
# thins a full outbox by every second batch (gaps of 1), so thousands of consecutive
# batches missing at once is almost always a corrupt counter, whose later batches would
# all be dropped as repeats.
SEQ_GAP_WARN = 10_000


class SeqRules:
    """The seq check of :class:`jitstock.server.ingest.Ingest` (a mixin: it counts and
    logs through the ingest's deferred calls, so a redone flush counts once)."""

    if TYPE_CHECKING:
        metrics: Metrics
        registry: BinRegistry
        _bad: RateLimitedLog

        def _later(self, fn: Callable[..., object], *args: object) -> None: ...

        def _reject(
            self, source: str, reason: str, message: str, *, kind: str | None = None
        ) -> None: ...

    def _advance(
        self,
        cursors: dict[str, int],
        flush: Flush,
        agent: str,
        seq: int,
        *,
        dup: bool = False,
    ) -> bool:
        """Apply each (agent, seq) once: False for a batch already applied.

        ``dup``: the broker redelivers a message it sent us before (after a crash
        between our commit and our acknowledgement): a seq 1 then is a repeat, never
        the start of a new outbox.
        """
        last = cursors.get(agent, 0)
        update = flush.cursors.get(agent)
        if last and seq - last > MAX_SEQ_JUMP:
            # A broken counter, not lost batches: counting it as a gap would add up to 9e18,
            # and moving the cursor there would drop every later normal batch as a repeat.
            self._reject(
                agent,
                "seq_jump",
                f"seq {seq} is more than {MAX_SEQ_JUMP} beyond the last applied {last}",
            )
            return False
        if not dup and ((seq == 1 and last > 1) or last - seq > MAX_SEQ_JUMP):
            # An agent only starts again at 1 when its outbox is new (a rebuilt Pi, a lost
            # SD card): a fresh stream, not a re-send — anything older was acknowledged.
            self._later(
                self._bad.log,
                logging.WARNING,
                f"{agent}:seq_reset",
                "agent %s started a new sequence at %d (was %d): new outbox",
                agent,
                seq,
                last,
            )
            self._later(self.metrics.seq_resets.inc)
            update = flush.cursors[agent] = CursorUpdate(agent, seq, reset=True)
            cursors[agent] = seq
            return True
        if seq <= last:
            self._later(self.metrics.duplicates.inc)
            if not dup:  # a broker's redelivery is no news
                self._later(
                    self._bad.log,
                    logging.INFO,
                    f"{agent}:repeat",
                    "agent %s: batch seq %d dropped as a repeat (last applied %d); a "
                    "device must publish in seq order and never reuse a seq "
                    "(docs/protocol.md, seq rules)",
                    agent,
                    seq,
                    last,
                )
            if update is None:
                update = flush.cursors[agent] = CursorUpdate(agent, last)
            update.duplicates += 1
            return False
        gap = seq - last - 1 if last else 0
        if update is None:
            update = flush.cursors[agent] = CursorUpdate(agent, seq)
        update.last_seq = seq
        if gap > 0:
            update.gaps += gap
            self._later(self.metrics.seq_gaps.inc, gap)
        if gap > SEQ_GAP_WARN:
            self._later(
                self._bad.log,
                logging.WARNING,
                f"{agent}:seq_gap_large",
                "agent %s sent seq %d after seq %d: %d batches missing at once, almost "
                "always a corrupt seq counter; its batches below seq %d are now dropped "
                "as repeats; if its counter is broken, restart its seq at 1 "
                "(docs/protocol.md, seq rules)",
                agent,
                seq,
                last,
                gap,
                seq,
            )
        cursors[agent] = seq
        return True

    def _repeat(
        self,
        snap: Snapshot,
        agent: str,
        seq: int,
        last: int,
        batch: protocol.ReadingColumns,
    ) -> None:
        """A readings batch at or below its agent's last seq was dropped as a repeat.  A
        real re-send carries the payload it had: each reading is at most the clock skew
        the protocol allows newer than its bin's last-seen time (the server's time when
        it was applied).  One newer than that means the device's counter went back (a
        restored config, a PLC script restarted at a stale value), and every batch it
        sends is lost until the counter passes ``last``: say so, counted and logged.
        Costs a look-up per reading of a repeated batch only."""
        seen = self.registry.seen_ms
        times = [
            int(seen[i])
            for i in map(snap.index.get, batch.bins)
            if i is not None and i < len(seen) and seen[i] != UNKNOWN
        ]
        if not times or not batch.ts_ms:
            return
        if min(batch.ts_ms) <= max(times) + protocol.MAX_FUTURE_MS:
            return
        self._later(self.metrics.seq_reused.inc)
        self._later(
            self._bad.log,
            logging.WARNING,
            f"{agent}:seq_reused",
            "agent %s sent seq %d with readings dated more than the allowed clock skew "
            "after its bins were last seen, but its last applied seq is %d: not a "
            "re-send; its seq counter went back, and its batches are "
            "dropped as repeats until the counter passes %d; restart its seq at 1 "
            "(docs/protocol.md, seq rules)",
            agent,
            seq,
            last,
            last,
        )
