"""The reorder rule: when a bin's inventory position falls to its reorder point, create one order.

Runs inside the caller's transaction, right after the bin's on-hand count
changed, so the decision and the order commit together (transactional outbox);
the dispatcher sends the order afterwards.  "One trigger, one order" holds at
three levels:

1. the inventory position (:mod:`jitstock.server.position`) counts open orders,
   so a bin with an order in flight does not order again;
2. decisions for one bin are serialised: ``SELECT … FOR UPDATE`` of the bin row
   on PostgreSQL, the database-wide write lock on SQLite (``BEGIN IMMEDIATE``);
3. the partial unique index ``uq_orders_one_open_per_bin`` refuses a second open
   order waiting for its first delivery (a part-received order whose remainder
   leaves the position at the reorder point gets a new order beside it) whatever
   happens above (e.g. a caller at REPEATABLE READ with a stale
   snapshot); the losing insert is rolled back to a savepoint and reported as
   "no order", leaving the caller's transaction intact.

Who gets the order: the bin's own ``supplier_id`` when set (an explicit per-bin
choice wins), else the SKU's supplier items by priority — skipping a supplier
that failed or cancelled an order for this bin in the last hour.  Position
changes that come without a reading (a cancel, a failed order, a receipt, an
expired put-away) call :func:`recheck`, so a bin at its reorder point always has
an open order or an alert (``reorder_blocked``) that says why not.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.ratelog import RateLimitedLog
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    ONE_OPEN_ORDER_INDEX,
    Bin,
    Order,
    new_order_id,
)
from jitstock.server.db.supplier_models import SupplierItem, supplier_items_for
from jitstock.server.position import position_of
from jitstock.server.replenish.policy import MAX_ORDER_QTY
from jitstock.server.supplier.lifecycle import record_transition

log = logging.getLogger(__name__)
_blocked_log = RateLimitedLog(log, interval_s=60.0)

ACTOR = "reorder"
# A supplier that failed (webhook 4xx, gave up) or cancelled an order for a bin is not
# asked again for that bin this long: re-ordering at once would loop order → refusal.
REFUSAL_WINDOW_MS = 3_600_000
# ``orders.last_error`` of an order its supplier cancelled starts so.
SUPPLIER_CANCEL_PREFIX = "cancelled by supplier"


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
    return position_of(session, bin_id).on_order


def inventory_position(session: Session, bin: Bin) -> int:
    """On hand + on order + received but not yet put away (see jitstock.server.position)."""
    return position_of(session, bin.id).total


def refused_recently(session: Session, bin_id: str, now_ms: int) -> set[str]:
    """Suppliers that failed or cancelled an order for this bin within REFUSAL_WINDOW_MS."""
    rows = session.execute(
        select(Order.supplier_id, Order.state, Order.last_error).where(
            Order.bin_id == bin_id,
            Order.state.in_(("failed", "cancelled")),
            func.coalesce(Order.closed_ms, Order.created_ms)
            >= now_ms - REFUSAL_WINDOW_MS,
        )
    ).all()
    return {supplier for supplier, state, error in rows if is_refusal(state, error)}


def is_refusal(state: str, last_error: str | None) -> bool:
    """A closed order that counts as its supplier refusing the bin: failed, or
    cancelled by the supplier (not by the plant)."""
    return state == "failed" or (last_error or "").startswith(SUPPLIER_CANCEL_PREFIX)


def supplier_candidates(session: Session, bin: Bin) -> list[str]:
    """Who may supply a bin, in order: the bin's own supplier (an explicit per-bin
    choice), then the SKU's active supplier items by priority."""
    out: list[str] = []
    if bin.supplier_id is not None:
        out.append(bin.supplier_id)
    for item in supplier_items_for(session, bin.sku_id):
        if item.supplier_id not in out:
            out.append(item.supplier_id)
    return out


def choose_supplier(
    session: Session,
    bin: Bin,
    now_ms: int,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> tuple[str | None, str | None]:
    """The supplier for a new order of this bin, or (None, why not)."""
    candidates = supplier_candidates(session, bin)
    if not candidates:
        return pick_supplier(candidates, set())
    return pick_supplier(
        candidates, refused_recently(session, bin.id, now_ms) | set(exclude)
    )


def pick_supplier(
    candidates: list[str], refused: set[str] | frozenset[str]
) -> tuple[str | None, str | None]:
    """The first candidate that has not refused the bin, or (None, why not)."""
    if not candidates:
        return None, "no supplier is set for the bin or its SKU"
    for supplier in candidates:
        if supplier not in refused:
            return supplier, None
    return None, (
        "every supplier of the bin failed or cancelled an order for it in the last "
        f"{REFUSAL_WINDOW_MS // 60000} min: " + ", ".join(candidates)
    )


def switched_off_only(session: Session, bin: Bin) -> bool:
    """The bin has no supplier only because every supplier item of its SKU is
    switched off (``active: false``): a supplier it had, not a bin never replenished."""
    if bin.supplier_id is not None:
        return False
    return session.scalar(
        select(SupplierItem.supplier_id)
        .where(SupplierItem.sku_id == bin.sku_id)
        .limit(1)
    ) is not None and not supplier_items_for(session, bin.sku_id)


def blocked_reason(session: Session, bin: Bin, now_ms: int) -> str | None:
    """Why the reorder rule cannot order for this bin (None: it can)."""
    if bin.order_qty <= 0:
        return "order quantity is 0"
    if switched_off_only(session, bin):
        return f"every supplier item of SKU {bin.sku_id} is switched off"
    return choose_supplier(session, bin, now_ms)[1]


def recheck(session: Session, bin_ids: list[str], now_ms: int, cause: str) -> list[str]:
    """Run the reorder rule for bins whose position changed without a reading
    (a cancel, a failed order, a receipt, an expired put-away); returns new order ids."""
    created = []
    for bin_id in sorted(set(bin_ids)):
        row = lock_bin(session, bin_id)
        if row is None:
            continue
        order = maybe_reorder(
            session, row, now_ms, {"cause": cause, "on_hand": row.on_hand}
        )
        if order is not None:
            created.append(order.id)
    return created


def order_quantity(
    position: int, reorder_point: int, order_qty: int, capacity: int | None
) -> int:
    """Smallest multiple of ``order_qty`` that lifts the position above the reorder point.

    A single large pick can drop the position more than one order quantity below
    the reorder point; since a bin has at most one open order, that order must
    cover the gap.  ``capacity`` (when set) caps the multiple, and so does
    MAX_ORDER_QTY (an order one receipt can carry), never below one.
    """
    shortfall = reorder_point - position + 1
    n = max(1, -(-shortfall // order_qty))
    n = max(1, min(n, MAX_ORDER_QTY // order_qty))
    if capacity is not None:
        while n > 1 and position + n * order_qty > capacity:
            n -= 1
    return n * order_qty


def is_one_open_order_violation(exc: IntegrityError) -> bool:
    """The partial unique index refused a second open order for a bin."""
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names the column of a unique index.
    return ONE_OPEN_ORDER_INDEX in text or "orders.bin_id" in text


def log_blocked(bin_id: str, why_not: str | None) -> None:
    """Log (rate-limited per bin) that a bin at its reorder point cannot order."""
    _blocked_log.log(
        logging.INFO,
        bin_id,
        "bin %s at its reorder point but cannot order: %s",
        bin_id,
        why_not,
    )


def maybe_reorder(
    session: Session, bin: Bin, now_ms: int, trigger: dict[str, Any]
) -> Order | None:
    """Create the bin's replenishment order if its position is at or below the reorder point.

    Call inside the transaction that changed ``bin.on_hand``; the order (state
    'created', due now) and its audit row commit with it.  Returns None when no
    order is needed or another transaction already ordered.
    """
    if bin.paused or bin.order_qty <= 0:
        return None
    if bin.agent_id is not None and bin.last_seen_ms is None:
        # its scale has not reported: a level of 0 is "unknown", not "empty"
        return None
    # Flush the caller's change, then serialise per bin (PostgreSQL row lock).
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Bin.id).where(Bin.id == bin.id).with_for_update())
    pos = position_of(session, bin.id)
    position = pos.total
    if position > bin.reorder_point:
        return None
    supplier_id, why_not = choose_supplier(session, bin, now_ms)
    if supplier_id is None:
        # The alert monitor's reorder_blocked rule says why (it re-checks the same condition).
        log_blocked(bin.id, why_not)
        return None
    qty = order_quantity(position, bin.reorder_point, bin.order_qty, bin.capacity)
    fired = {
        **trigger,
        "position": {
            "on_hand": pos.on_hand,
            "pending_delivery": pos.pending,
            "on_order": pos.on_order,
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
        if not is_one_open_order_violation(exc):
            raise
        log.info("bin %s: another transaction already has an open order", bin.id)
        return None
    return order
