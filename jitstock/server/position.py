"""The inventory position: one definition, one implementation.

::

    position = on hand                      what the bin's scale counts
             + on order                     per open order: ordered − received (never < 0)
             + pending put-away             per dock receipt not yet put away:
                                            received (or accepted) − what the scale saw

The reorder rule, ``GET /levels``, the dashboard, escalation and the KPIs all
read it from here.  Nothing is kept as a running balance that could drift:
"on order" is derived from the open orders, "pending put-away" from the
receipts still waiting for their bin's scale (``bins.pending_delivery_qty`` is
only a copy of it, refreshed whenever a receipt changes, for readers that list
bins).  A receipt leaves "pending" when the scale confirms it or when its
put-away window passes — what did not match is then a recorded receiving
discrepancy, never stock that lives forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from jitstock.server.db.models import OPEN_ORDER_STATES, Bin, Order
from jitstock.server.db.supplier_models import Receipt

# Dock receipts whose units are in the position but not yet on the scale.
PENDING_RECEIPT_STATUSES = ("awaiting_inspection", "awaiting_putaway")


@dataclass(frozen=True, slots=True)
class Position:
    """One bin's inventory position and its parts."""

    on_hand: int
    on_order: int
    pending: int

    @property
    def total(self) -> int:
        """On hand + on order + pending put-away."""
        return self.on_hand + self.on_order + self.pending


def outstanding_expr() -> ColumnElement[int]:
    """SQL expression: what is still to come on an order (ordered − received, never < 0)."""
    left = Order.qty - func.coalesce(Order.delivered_qty, 0)
    return case((left > 0, left), else_=0)


def outstanding(order: Order) -> int:
    """What is still to come on one order (0 once it is no longer open)."""
    if order.state not in OPEN_ORDER_STATES:
        return 0
    return max(0, order.qty - (order.delivered_qty or 0))


def receipt_pending(receipt: Receipt) -> int:
    """Units of one receipt counted in the position but not yet seen by the scale."""
    if receipt.status not in PENDING_RECEIPT_STATUSES:
        return 0
    expected = receipt.accepted_qty if receipt.accepted_qty is not None else receipt.qty
    return max(0, expected - (receipt.scale_qty or 0))


def _pending_expr() -> ColumnElement[int]:
    expected = func.coalesce(Receipt.accepted_qty, Receipt.qty)
    left = expected - func.coalesce(Receipt.scale_qty, 0)
    return case((left > 0, left), else_=0)


def on_order_by_bin(session: Session, bin_ids: Iterable[str] | None) -> dict[str, int]:
    """Outstanding quantity of the open orders, per bin."""
    stmt = (
        select(Order.bin_id, func.sum(outstanding_expr()))
        .where(Order.state.in_(OPEN_ORDER_STATES))
        .group_by(Order.bin_id)
    )
    if bin_ids is not None:
        stmt = stmt.where(Order.bin_id.in_(list(bin_ids)))
    return {b: int(q or 0) for b, q in session.execute(stmt)}


def pending_by_bin(session: Session, bin_ids: Iterable[str] | None) -> dict[str, int]:
    """Units received at the dock and not yet put away, per bin."""
    stmt = (
        select(Receipt.bin_id, func.sum(_pending_expr()))
        .where(Receipt.status.in_(PENDING_RECEIPT_STATUSES))
        .group_by(Receipt.bin_id)
    )
    if bin_ids is not None:
        stmt = stmt.where(Receipt.bin_id.in_(list(bin_ids)))
    return {b: int(q or 0) for b, q in session.execute(stmt)}


def positions(
    session: Session, bin_ids: Iterable[str] | None = None
) -> dict[str, Position]:
    """The position of each bin (all bins when ``bin_ids`` is None)."""
    ids = list(bin_ids) if bin_ids is not None else None
    stmt = select(Bin.id, Bin.on_hand)
    if ids is not None:
        stmt = stmt.where(Bin.id.in_(ids))
    on_order = on_order_by_bin(session, ids)
    pending = pending_by_bin(session, ids)
    return {
        b: Position(int(h), on_order.get(b, 0), pending.get(b, 0))
        for b, h in session.execute(stmt)
    }


def position_of(session: Session, bin_id: str) -> Position:
    """One bin's position (fresh from the database)."""
    session.flush()
    return positions(session, [bin_id]).get(bin_id, Position(0, 0, 0))


def refresh_pending(session: Session, bin_ids: Iterable[str]) -> None:
    """Copy the derived pending put-away into ``bins.pending_delivery_qty``."""
    ids = sorted(set(bin_ids))
    if not ids:
        return
    session.flush()
    pending = pending_by_bin(session, ids)
    for b in ids:
        session.execute(
            update(Bin)
            .where(Bin.id == b, Bin.pending_delivery_qty != pending.get(b, 0))
            .values(pending_delivery_qty=pending.get(b, 0))
            .execution_options(synchronize_session=False)
        )
