"""Acknowledged batches leave the outbox in groups: one SQLite transaction (and fsync)
for many PUBACKs.  A crash loses at most the last group's progress, and a batch not
deleted is re-sent later: a duplicate the server drops, never a loss."""

from __future__ import annotations

import logging

from jitstock.clock import Clock
from jitstock.edge.outbox import Outbox, OutboxError
from jitstock.ratelog import RateLimitedLog

# Acknowledged seqs are deleted from the outbox in groups (one fsync each) ...
ACK_FLUSH_COUNT = 500
# ... or after this long; a crash loses at most this much ack progress (harmless re-sends).
ACK_FLUSH_S = 0.2


class AckBatch:
    """The seqs the broker acknowledged and the outbox has not yet deleted.

    Publisher thread only.  ``stats`` is the publisher's counter dict (``outbox_errors``).
    """

    def __init__(
        self, outbox: Outbox, stats: dict[str, int], clock: Clock, rlog: RateLimitedLog
    ) -> None:
        self._outbox = outbox
        self._stats = stats
        self._clock = clock
        self._rlog = rlog
        self._seqs: list[int] = []
        self._last_flush = 0.0

    def add(self, seq: int) -> None:
        """The broker acknowledged ``seq``."""
        self._seqs.append(seq)

    def flush(self, force: bool = False) -> None:
        """Delete the acknowledged batches when enough of them or enough time has gathered."""
        if not self._seqs:
            return
        now = self._clock.monotonic()
        if (
            not force
            and len(self._seqs) < ACK_FLUSH_COUNT
            and now - self._last_flush < ACK_FLUSH_S
        ):
            return
        seqs, self._seqs = self._seqs, []
        try:
            self._outbox.ack_many(seqs)
        except OutboxError as exc:
            self._stats["outbox_errors"] += 1
            self._rlog.log(logging.ERROR, "outbox", "%s", exc)
        self._last_flush = now
