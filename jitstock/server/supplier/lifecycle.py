"""The order lifecycle as an explicit state machine; every transition is audited.

::

    created ─▶ sent ─▶ acknowledged ─▶ shipped ─▶ part_received ─▶ received ─▶ closed
       │         │           │            │               │
       └─────────┴───────────┴────────────┴───────────────┴──▶ cancelled | failed

Goods may arrive without an acknowledgement or ship notice (a dock scan or a
matching refill receives any open order), and a supplier answering inside its
webhook handler may acknowledge a still-'created' order.  'delivered' is the
one-step manager shortcut of issue 3 (``POST /orders/{id}/deliver``).

Each move reads the order row locked (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite
serialises writers anyway), then makes a compare-and-set UPDATE on the state (a
concurrent change loses cleanly), writes one ``order_transitions`` row (who, when, why) and, for the
changes a supplier cares about, one ``supplier_events`` row that the
:mod:`~jitstock.server.supplier.events` sender delivers as a signed webhook (and on
the MQTT order topic of an ``mqtt_orders`` supplier) in the
envelope of :mod:`jitstock.server.webhooks` (``EVENT_TYPES`` is the catalogue; the
OpenAPI document publishes a schema per type).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jitstock.server.db.models import OPEN_ORDER_STATES, Order
from jitstock.server.db.session import is_postgresql
from jitstock.server.db.supplier_models import OrderTransition, SupplierEvent
from jitstock.server.supplier import IllegalTransition, OrderNotFound
from jitstock.server.webhooks import ORDER_CREATED, envelope, order_data

_OPEN_TARGETS = {"part_received", "received", "delivered", "cancelled", "failed"}
TRANSITIONS: dict[str, frozenset[str]] = {
    "created": frozenset({"sent", "acknowledged", "shipped", *_OPEN_TARGETS}),
    "sent": frozenset({"acknowledged", "shipped", *_OPEN_TARGETS}),
    "acknowledged": frozenset({"shipped", *_OPEN_TARGETS}),
    "shipped": frozenset(_OPEN_TARGETS),
    "part_received": frozenset(_OPEN_TARGETS),
    "received": frozenset({"closed"}),
    "closed": frozenset(),
    "delivered": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
assert set(TRANSITIONS) >= set(OPEN_ORDER_STATES)
# States an order ends in: ``closed_ms`` records when.
FINAL_STATES = frozenset({"closed", "cancelled", "failed", "delivered"})
# Changes the supplier hears about by webhook ('created' is the order webhook itself).
SUPPLIER_EVENTS = frozenset(
    {
        "acknowledged",
        "shipped",
        "part_received",
        "received",
        "closed",
        "cancelled",
        "delivered",
    }
)
# Every delivery type a supplier receives (the OpenAPI ``webhooks`` has one per type).
EVENT_TYPES = (
    ORDER_CREATED,  # the new order itself, sent by the dispatcher
    *(f"order.{state}" for state in sorted(SUPPLIER_EVENTS)),
    "order.promise_changed",  # a second acknowledgement with another promise
    "order.reduced",  # part of the order moved to another supplier (escalation)
    "receipt.inspected",  # a quality inspection of goods received on the order
)
# The escalation thread's actor name (escalation.ACTOR; that module imports this one).
_ESCALATION_ACTOR = "escalation"
_ESCALATED = re.compile(r"escalated \((\w+)\)")


def order_lock(session: Session, lock: bool) -> dict[str, bool] | None:
    """``with_for_update`` of an order read that the caller will change (None: a plain
    read).  On PostgreSQL ``FOR NO KEY UPDATE``, the lock the UPDATE takes anyway, now
    from the read on: it queues a second change of the order behind this transaction
    but not the insert of a row that merely references the order (a receipt, an
    event), so it waits for no more than the UPDATE did.  SQLite: None (its writing
    transactions are serialised from their first statement)."""
    return {"key_share": True} if lock and is_postgresql(session) else None


def load_order(
    session: Session,
    order_id: str,
    supplier_id: str | None = None,
    *,
    lock: bool = False,
) -> Order:
    """A fresh copy of an order; OrderNotFound also when it belongs to another supplier.

    ``lock``: the caller will change the order from what it reads here (a previous
    promise, a received total, whether inspections are open), so on PostgreSQL the
    row is read locked (:func:`order_lock`): a concurrent change of the same order waits for this
    transaction and then reads what it committed, instead of both reading the same
    old values (the compare-and-set on the state alone lets a promise change or a
    part receipt beside another one through).  SQLite serialises writing
    transactions from their first statement, so there it reads as before.
    """
    order = session.get(
        Order,
        order_id,
        populate_existing=True,
        with_for_update=order_lock(session, lock),
    )
    if order is None or (supplier_id is not None and order.supplier_id != supplier_id):
        raise OrderNotFound(order_id)
    return order


def record_transition(
    session: Session,
    order_id: str,
    from_state: str | None,
    to_state: str,
    *,
    actor: str,
    at_ms: int,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add the audit row of one transition (also used by the dispatcher and reorder rule)."""
    session.add(
        OrderTransition(
            order_id=order_id,
            at_ms=at_ms,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            reason=reason,
            detail=detail,
        )
    )


def order_event_data(session: Session, order: Order) -> dict[str, Any]:
    """The order as a supplier event carries it (the public order object)."""
    return order_data(session, order)


def public_note(actor: str, reason: str | None) -> str | None:
    """The transition's reason as its supplier may read it: an escalation names no
    other supplier (the internal reason does, for the audit trail)."""
    if reason is None or actor != _ESCALATION_ACTOR:
        return reason
    found = _ESCALATED.search(reason)
    why = found.group(1) if found else "escalation"
    # "reduced by 12: escalated (late) to B" keeps its "reduced by 12: "
    before = reason[: found.start()] if found else ""
    return f"{before}escalated ({why}): another supplier covers the demand"


def public_transition(
    actor: str, reason: str | None, detail: dict[str, Any] | None
) -> tuple[str | None, dict[str, Any] | None]:
    """A transition's reason and detail as its supplier may read them: an escalation's
    names no other supplier and carries none of the plant's figures (stock-out
    projection, demand rate) in its detail."""
    if actor != _ESCALATION_ACTOR:
        return reason, detail
    return public_note(actor, reason), None


def event_stamp(session: Session, order: Order, now_ms: int) -> int:
    """The ``timestamp_ms`` of the order's next event: ``now_ms``, but at least a
    millisecond after the order's ``order.created`` and its previous event.

    Suppliers order one order's deliveries by ``timestamp_ms`` (they may arrive out of
    order).  ``now_ms`` is read when a request or flush starts, before its transaction
    waits for the write lock, so two changes to one order (two promise changes sent
    together, a ship notice beside a scale receipt) can commit in one order with times
    in the other, or in the same millisecond; a wall clock stepped back does the same.
    This runs after the caller's change to the order row, inside its transaction (the
    SQLite write lock, or the row lock on PostgreSQL), so the previous event read here
    is the one committed before this one.
    """
    last = session.scalar(
        select(func.max(SupplierEvent.created_ms)).where(
            SupplierEvent.order_id == order.id
        )
    )
    floor = max(order.created_ms, last if last is not None else order.created_ms)
    return max(now_ms, floor + 1)


def enqueue_event(
    session: Session,
    order: Order,
    event_type: str,
    now_ms: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue a signed webhook event to the order's supplier (skipped if it never got the order).

    ``extra`` are the type's own fields beside ``order``; its ``reason`` becomes the
    event's ``note`` (the order's own ``reason`` says why it was placed).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"{event_type!r} is not a published event type")
    if order.sent_ms is None and order.acked_ms is None:
        return  # the supplier never saw this order: nothing to tell it
    event_id = f"evt_{uuid.uuid4().hex}"
    fields = dict(extra or {})
    note = fields.pop("reason", None)
    at_ms = event_stamp(session, order, now_ms)
    payload = envelope(
        event_type,
        event_id,
        at_ms,
        {"order": order_event_data(session, order), "note": note, **fields},
    )
    session.add(
        SupplierEvent(
            supplier_id=order.supplier_id,
            order_id=order.id,
            type=event_type,
            payload=payload,
            created_ms=at_ms,
            state="pending",
            attempts=0,
            next_attempt_ms=now_ms,
        )
    )


def transition(
    session: Session,
    order_id: str,
    to_state: str,
    *,
    actor: str,
    now_ms: int,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
    supplier_id: str | None = None,
    allowed_from: frozenset[str] | None = None,
) -> Order:
    """Move an order to ``to_state`` (setting ``values`` too); IllegalTransition if not allowed.

    ``allowed_from`` narrows the legal source states (e.g. a supplier may cancel
    only before shipping); ``supplier_id`` scopes the order to one supplier.
    """
    order = load_order(session, order_id, supplier_id, lock=True)
    current = order.state
    legal = {s for s, targets in TRANSITIONS.items() if to_state in targets}
    if allowed_from is not None:
        legal &= allowed_from
    if current not in legal:
        raise IllegalTransition(
            f"order {order_id} is {current}; it cannot become {to_state} "
            f"(allowed from: {', '.join(sorted(legal)) or 'nothing'})"
        )
    values = dict(values or {})
    if to_state in FINAL_STATES:
        values.setdefault("closed_ms", now_ms)  # when it ended, whichever way
    moved = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.state == current)
        .values(state=to_state, **values)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        now_state = load_order(session, order_id).state
        raise IllegalTransition(
            f"order {order_id} changed to {now_state} meanwhile; {to_state} refused"
        )
    record_transition(
        session,
        order_id,
        current,
        to_state,
        actor=actor,
        at_ms=now_ms,
        reason=reason,
        detail=detail,
    )
    order = load_order(session, order_id)
    if to_state in SUPPLIER_EVENTS:
        enqueue_event(
            session,
            order,
            f"order.{to_state}",
            now_ms,
            {"reason": public_note(actor, reason)},
        )
    return order
