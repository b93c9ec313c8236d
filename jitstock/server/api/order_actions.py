"""What a supplier or the plant may do to an order: acknowledge it, record its delivery.

Order state machine (the dispatcher owns created -> sent/failed)::

    (the full lifecycle, with shipping and receiving, is jitstock.server.supplier.lifecycle)

    created ──send──▶ sent ──ack──▶ acknowledged ──deliver──▶ delivered
       │  └───────────ack─────────────▲   ▲                     ▲
       └──deliver / sent ──deliver────┴───┼─────────────────────┘
    failed, cancelled, delivered: final (ack/deliver -> Conflict)

An ack may arrive while the order is still 'created' (a supplier answering
inside its webhook handler, before the dispatcher records the 200), so ack is
legal from created and sent.  Acking an acknowledged order again with no
promise or the same one changes nothing (idempotent); with another promise it is
an explicit promise change: the new promise replaces the old, the state stays,
and the supplier hears ``order.promise_changed``.  Once shipped it is too late to
acknowledge (409); the ship notice's ``expected_ms`` is then the promise.
Acknowledging is optional: a ship notice from 'sent' is accepted and stands for it.
Transitions are compare-and-set UPDATEs on the state, so a concurrent
dispatcher record or a second delivery loses cleanly instead of overwriting.  The
order is read locked first (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite serialises
writers): two promise changes sent together then replace one another in turn,
each naming the promise it really replaced.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from jitstock.server.api.errors import Conflict, FieldInvalid, supply_errors
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import OPEN_ORDER_STATES, Bin, BinEvent, Order
from jitstock.server.db.supplier_models import Receipt
from jitstock.server.position import refresh_pending
from jitstock.server.supplier import InvalidRequest
from jitstock.server.supplier.lifecycle import (
    enqueue_event,
    load_order,
    record_transition,
)
from jitstock.server.supplier.receiving import (
    check_received_qty,
    count_in_without_scale,
)

ACKABLE_STATES = ("created", "sent")
# Acknowledged already, not shipped: a new promise here is a promise change.
PROMISE_CHANGE_STATES = ("acknowledged",)
DELIVERABLE_STATES = OPEN_ORDER_STATES


def _load(
    session: Session,
    order_id: str,
    supplier_id: str | None = None,
    *,
    lock: bool = False,
) -> Order:
    # Another supplier's order is "not found": ids must not leak across suppliers.
    # lock: the order is changed from what is read here (see lifecycle.load_order)
    with supply_errors():
        return load_order(session, order_id, supplier_id, lock=lock)


def ack_order(
    session: Session,
    order_id: str,
    promised_ms: int | None,
    actor: str,
    now_ms: int,
    supplier_id: str | None = None,
) -> Order:
    """Acknowledge an order (optionally with a promise), or change the promise of one
    acknowledged before; see the module docstring."""
    order = _load(session, order_id, supplier_id, lock=True)
    if promised_ms is not None and promised_ms < order.created_ms:
        raise FieldInvalid(
            "promised_ms",
            f"{promised_ms} is before the order was created ({order.created_ms})",
        )
    if order.state in PROMISE_CHANGE_STATES:
        if promised_ms is None or promised_ms == order.promised_ms:
            return order  # a repeated acknowledgement: nothing changes
        return change_promise(session, order, promised_ms, actor, now_ms)
    if order.state not in ACKABLE_STATES:
        raise Conflict(
            f"order {order_id} is {order.state}; only a created or sent order can be "
            "acknowledged (an acknowledged one can have its promise changed)"
        )
    moved = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state.in_(ACKABLE_STATES))
        .values(
            state="acknowledged",
            acked_ms=now_ms,
            promised_ms=promised_ms,
            # The supplier has it: there is nothing left to send.
            next_attempt_ms=None,
            sent_ms=order.sent_ms if order.sent_ms is not None else now_ms,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        state = _load(session, order_id).state
        raise Conflict(
            f"order {order_id} changed to {state} meanwhile; acknowledge refused"
        )
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="order.acknowledged",
        entity="order",
        entity_id=order_id,
        detail={"from": order.state, "promised_ms": promised_ms},
    )
    record_transition(
        session,
        order_id,
        order.state,
        "acknowledged",
        actor=actor,
        at_ms=now_ms,
        reason="supplier acknowledged",
        detail={"promised_ms": promised_ms},
    )
    fresh = _load(session, order_id)
    enqueue_event(session, fresh, "order.acknowledged", now_ms)
    return fresh


def change_promise(
    session: Session, order: Order, promised_ms: int, actor: str, now_ms: int
) -> Order:
    """Replace an open order's promised delivery time; the supplier hears order.promise_changed.

    ``order`` must have been read locked in this transaction (``lock=True``): the
    promise it holds is then the one this change replaces, named in the audit row and
    the event, not an older copy beside a promise change committed meanwhile."""
    previous = order.promised_ms
    moved = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.state == order.state)
        .values(promised_ms=promised_ms)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        state = _load(session, order.id).state
        raise Conflict(
            f"order {order.id} changed to {state} meanwhile; promise change refused"
        )
    change = {"from": previous, "to": promised_ms}
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="order.promise",
        entity="order",
        entity_id=order.id,
        detail=change,
    )
    record_transition(
        session,
        order.id,
        order.state,
        order.state,
        actor=actor,
        at_ms=now_ms,
        reason="promise changed",
        detail=change,
    )
    fresh = _load(session, order.id)
    enqueue_event(
        session,
        fresh,
        "order.promise_changed",
        now_ms,
        {"previous_promised_ms": previous},
    )
    return fresh


def deliver_order(
    session: Session, order_id: str, qty: int, actor: str, now_ms: int
) -> Order:
    """Record goods received: the order is delivered and the bin counts them until the scale confirms."""
    order = _load(session, order_id, lock=True)
    if order.state not in DELIVERABLE_STATES:
        raise Conflict(
            f"order {order_id} is {order.state}; only an open order ({', '.join(DELIVERABLE_STATES)}) can be delivered"
        )
    try:
        check_received_qty(order, qty)
    except InvalidRequest as exc:
        raise FieldInvalid("qty", exc.message) from exc
    moved = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state.in_(DELIVERABLE_STATES))
        .values(
            state="delivered",
            delivered_ms=now_ms,
            delivered_qty=qty,
            next_attempt_ms=None,
            closed_ms=now_ms,
        )
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        state = _load(session, order_id).state
        raise Conflict(
            f"order {order_id} changed to {state} meanwhile; delivery refused"
        )
    bin_row = session.get(Bin, order.bin_id, populate_existing=True)
    assert bin_row is not None  # orders.bin_id is a foreign key
    # The goods are at the bin, not yet on its scale: a receipt waiting for put-away
    # (pending in the position until the scale confirms it or the window expires).
    session.add(
        Receipt(
            order_id=order_id,
            bin_id=order.bin_id,
            supplier_id=order.supplier_id,
            at_ms=now_ms,
            method="api",
            qty=qty,
            counted_qty=0,
            inspection_required=False,
            status="awaiting_putaway" if bin_row.agent_id is not None else "done",
            actor=actor,
        )
    )
    count_in_without_scale(bin_row, qty)
    session.flush()
    refresh_pending(session, [order.bin_id])
    session.refresh(bin_row)
    session.add(
        BinEvent(
            bin_id=bin_row.id,
            ts_ms=now_ms,
            kind="delivery",
            delta=qty,
            # the effective count: on the scale plus received-but-not-put-away
            on_hand_after=bin_row.on_hand + bin_row.pending_delivery_qty,
        )
    )
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="order.delivered",
        entity="order",
        entity_id=order_id,
        detail={
            "from": order.state,
            "qty": qty,
            "ordered": order.qty,
            "bin": bin_row.id,
            "pending_delivery_qty": bin_row.pending_delivery_qty,
        },
    )
    record_transition(
        session,
        order_id,
        order.state,
        "delivered",
        actor=actor,
        at_ms=now_ms,
        reason="goods received (one-step delivery)",
        detail={"qty": qty},
    )
    fresh = _load(session, order_id)
    enqueue_event(session, fresh, "order.delivered", now_ms)
    return fresh
