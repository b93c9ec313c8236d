"""Rejected Sparkplug input, counted and logged exactly like ingest's bad MQTT input.

Counted in ``jitstock_rejected_batches_total`` (a whole message) or
``jitstock_rejected_items_total`` (one metric) under the labels of
:data:`~.topics.REJECT_REASONS`; logged at most once a minute per source, reason and
kind of problem (the message with its values blanked), as ingest does.
"""

from __future__ import annotations

import logging

from jitstock.ratelog import RateLimitedLog, message_kind
from jitstock.server.metrics import Metrics

log = logging.getLogger("jitstock.server.sparkplug")

# Same pace as ingest's bad-input log: a flood does not flood, a second problem still shows.
BAD_INPUT_LOG_INTERVAL_S = 60.0


class Rejects:
    """Counts and logs refused messages and metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = RateLimitedLog(log, interval_s=BAD_INPUT_LOG_INTERVAL_S)

    def batch(
        self, source: str, reason: str, message: str, level: int = logging.WARNING
    ) -> None:
        """A whole message refused."""
        self.metrics.rejected_batches.labels(reason).inc()
        self._log.log(
            level,
            f"{source}:{reason}:{message_kind(message)}",
            "Sparkplug %s: %s: %s",
            source,
            reason,
            message,
        )

    def item(
        self, source: str, reason: str, message: str, level: int = logging.WARNING
    ) -> None:
        """One metric of a message refused."""
        self.metrics.rejected_items.labels(reason).inc()
        self._log.log(
            level,
            f"{source}:{reason}:{message_kind(message)}",
            "Sparkplug %s: %s: %s",
            source,
            reason,
            message,
        )
