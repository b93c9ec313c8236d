"""The largest batch payload the broker takes: the configured cap
(``mqtt_max_payload_bytes``), lowered by what the broker says (MQTT 5 Maximum Packet
Size) or does (refusing or dropping an oversized batch), and remembered in the outbox
so a restarted agent does not learn it again by losing a connection."""

from __future__ import annotations

import logging
from collections.abc import Callable

from jitstock.edge.outbox import Outbox, OutboxError
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Smallest payload limit the agent works with: the longest scan (256 four-byte
# characters) in its envelope fits; a broker advertising less is logged as misconfigured.
MIN_PAYLOAD_LIMIT = 2048
_REMEMBERED = "broker_payload_limit"


class PayloadLimit:
    """``value`` is the limit now; :meth:`set` lowers or raises it within the cap."""

    def __init__(
        self,
        outbox: Outbox,
        cap: int,
        rlog: RateLimitedLog,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._outbox = outbox
        self.cap = max(MIN_PAYLOAD_LIMIT, cap)
        self._rlog = rlog
        self._on_change = on_change
        self.value = self.cap
        try:
            remembered = outbox.recall(_REMEMBERED)
        except OutboxError:
            remembered = None
        if remembered is not None and remembered.isdigit():
            self.value = max(MIN_PAYLOAD_LIMIT, min(self.cap, int(remembered)))

    def set(self, limit: int, why: str) -> None:
        """A new limit (at most the cap, at least MIN_PAYLOAD_LIMIT), remembered."""
        limit = min(self.cap, limit)
        if limit < MIN_PAYLOAD_LIMIT:
            self._rlog.log(
                logging.ERROR,
                "tiny-limit",
                "broker packet limit leaves %d bytes per batch; the agent needs %d "
                "(raise max_packet_size / message_size_limit on the broker)",
                limit,
                MIN_PAYLOAD_LIMIT,
            )
            limit = MIN_PAYLOAD_LIMIT
        if limit == self.value:
            return
        log.warning("batch payload limit now %d bytes (%s)", limit, why)
        self.value = limit
        try:
            self._outbox.remember(_REMEMBERED, str(limit))
        except OutboxError as exc:
            self._rlog.log(logging.ERROR, "outbox", "%s", exc)
        if self._on_change is not None:
            self._on_change(limit)
