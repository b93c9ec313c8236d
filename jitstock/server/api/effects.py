"""What must happen after a commit that changed bins, agents or orders: the in-memory views
catch up, the senders wake."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jitstock.server.api.context import ApiContext

log = logging.getLogger(__name__)


def bins_changed(ctx: ApiContext, new_order_ids: Sequence[str]) -> None:
    """Reload the bin registry (ingest's calibrations) and wake the dispatcher for new orders."""
    try:
        ctx.registry.reload()
    except Exception:
        # Committed already; the periodic refresh will catch up, so the client still gets its answer.
        log.exception("registry reload after a bin change failed")
    if new_order_ids:
        ctx.metrics.orders_created.inc(len(new_order_ids))
        ctx.dispatcher.wake()


def agents_changed(ctx: ApiContext) -> None:
    """Reload the registry: ingest accepts traffic only from agents it knows."""
    try:
        ctx.registry.reload()
    except Exception:
        log.exception("registry reload after an agent change failed")


def supply_changed(ctx: ApiContext, new_orders: bool = False) -> None:
    """Wake the supplier-event relay (its events go out now, not at its next poll) and, when
    the change made orders, the dispatcher."""
    events = getattr(ctx, "supplier_events", None)
    if events is not None:
        events.wake()
    if new_orders:
        ctx.dispatcher.wake()
