"""The reorder rule: when a bin's inventory position falls to its reorder point, create one order.

Runs inside the caller's transaction, right after the bin's on-hand count
changed, so the decision and the order commit together (transactional outbox);
the dispatcher sends the order afterwards.  "One trigger, one order" holds at
three levels:

1. the inventory position counts open orders, so a bin with an order in flight
   does not order again;
2. decisions for one bin are serialised: ``SELECT … FOR UPDATE`` of the bin row
   on PostgreSQL, the database-wide write lock on SQLite (``BEGIN IMMEDIATE``);
3. the partial unique index ``uq_orders_one_open_per_bin`` refuses a second open
   order whatever happens above (e.g. a caller at REPEATABLE READ with a stale
   snapshot); the losing insert is rolled back to a savepoint and reported as
   "no order", leaving the caller's transaction intact.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    ONE_OPEN_ORDER_INDEX,
    OPEN_ORDER_STATES,
    Bin,
    Order,
    new_order_id,
)
from jitstock.server.db.supplier_models import supplier_items_for
from jitstock.server.supplier.lifecycle import record_transition

log = logging.getLogger(__name__)

ACTOR = "reorder"


def lock_bin(session: Session, bin_id: str) -> Bin | None:
    """Load a bin for update: row-locked on PostgreSQL (a no-op clause on SQLite), fresh values."""
    stmt = (
        select(Bin)
        .where(Bin.id == bin_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one_or_none()


def on_order_qty(session: Session, bin_id: str) -> int:
    """Units still to come on open orders for a bin (ordered minus already received)."""
    outstanding = Order.qty - func.coalesce(Order.delivered_qty, 0)
    stmt = select(func.coalesce(func.sum(outstanding), 0)).where(
        Order.bin_id == bin_id, Order.state.in_(OPEN_ORDER_STATES)
    )
    return int(session.scalar(stmt) or 0)


def inventory_position(session: Session, bin: Bin) -> int:
    """On hand + delivered-but-unconfirmed + on order."""
    return bin.on_hand + bin.pending_delivery_qty + on_order_qty(session, bin.id)


def order_quantity(
    position: int, reorder_point: int, order_qty: int, capacity: int | None
) -> int:
    """Smallest multiple of ``order_qty`` that lifts the position above the reorder point.

    A single large pick can drop the position more than one order quantity below
    the reorder point; since a bin has at most one open order, that order must
    cover the gap.  ``capacity`` (when set) caps the multiple, never below one.
    """
    shortfall = reorder_point - position + 1
    n = max(1, -(-shortfall // order_qty))
    if capacity is not None:
        while n > 1 and position + n * order_qty > capacity:
            n -= 1
    return n * order_qty


def _is_one_open_order_violation(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names the column of a unique index.
    return ONE_OPEN_ORDER_INDEX in text or "orders.bin_id" in text


def maybe_reorder(
    session: Session, bin: Bin, now_ms: int, trigger: dict[str, Any]
) -> Order | None:
    """Create the bin's replenishment order if its position is at or below the reorder point.

    Call inside the transaction that changed ``bin.on_hand``; the order (state
    'created', due now) and its audit row commit with it.  Returns None when no
    order is needed or another transaction already ordered.
    """
    if bin.paused or bin.supplier_id is None or bin.order_qty <= 0:
        return None
    # Flush the caller's change, then serialise per bin (PostgreSQL row lock).
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Bin.id).where(Bin.id == bin.id).with_for_update())
    on_order = on_order_qty(session, bin.id)
    position = bin.on_hand + bin.pending_delivery_qty + on_order
    if position > bin.reorder_point:
        return None
    qty = order_quantity(position, bin.reorder_point, bin.order_qty, bin.capacity)
    # The SKU's preferred supplier item (priority 1) gets the order; the bin's supplier otherwise.
    items = supplier_items_for(session, bin.sku_id)
    supplier_id = items[0].supplier_id if items else bin.supplier_id
    fired = {
        **trigger,
        "position": {
            "on_hand": bin.on_hand,
            "pending_delivery": bin.pending_delivery_qty,
            "on_order": on_order,
            "inventory_position": position,
            "reorder_point": bin.reorder_point,
        },
    }
    order = Order(
        id=new_order_id(),
        bin_id=bin.id,
        sku_id=bin.sku_id,
        supplier_id=supplier_id,
        site_id=bin.site_id,
        qty=qty,
        state="created",
        created_ms=now_ms,
        attempts=0,
        next_attempt_ms=now_ms,
        trigger=fired,
    )
    try:
        with session.begin_nested():
            session.add(order)
            session.flush()
            record_audit(
                session,
                at_ms=now_ms,
                actor=ACTOR,
                action="order.created",
                entity="order",
                entity_id=order.id,
                detail={
                    "bin": bin.id,
                    "supplier": supplier_id,
                    "qty": qty,
                    **fired["position"],
                },
            )
            record_transition(
                session, order.id, None, "created", actor=ACTOR, at_ms=now_ms
            )
            session.flush()
    except IntegrityError as exc:
        if not _is_one_open_order_violation(exc):
            raise
        log.info("bin %s: another transaction already has an open order", bin.id)
        return None
    return order
