"""The advance ship notice: a supplier says the goods are on their way.

One function for every way a supplier can say it (the REST API's ship route, the
signed link of an e-mailed purchase order), so the rules are the same for all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from jitstock.server.db.models import Order
from jitstock.server.supplier import IllegalTransition, InvalidRequest
from jitstock.server.supplier.lifecycle import TRANSITIONS, load_order, transition
from jitstock.server.supplier.receiving import tolerance


def outstanding(order: Order) -> int:
    """What is still to be delivered on an order."""
    return max(0, order.qty - (order.delivered_qty or 0))


def _repeated(
    order: Order, qty: int | None, expected_ms: int | None, carrier_ref: str | None
) -> bool:
    """The order is shipped with exactly this notice already."""
    return (
        order.state == "shipped"
        and (qty if qty is not None else outstanding(order)) == order.asn_qty
        and carrier_ref == order.carrier_ref
        and (expected_ms is None or expected_ms == order.promised_ms)
    )


def ship_order(
    session: Session,
    order_id: str,
    *,
    qty: int | None,
    expected_ms: int | None,
    carrier_ref: str | None,
    actor: str,
    now_ms: int,
    supplier_id: str | None = None,
) -> Order:
    """Record a ship notice (``qty`` None: everything outstanding); the caller commits.

    Allowed from created, sent or acknowledged: acknowledging first is optional, a
    ship notice without one stands for it (the order's ``acked_ms`` stays empty).
    Raises OrderNotFound, IllegalTransition or InvalidRequest.
    """
    order = load_order(session, order_id, supplier_id, lock=True)
    if _repeated(order, qty, expected_ms, carrier_ref):
        return order  # a retry of the notice on record (its answer was lost)
    if order.state == "shipped":
        # not a retry: say what differs, not only that shipped cannot become shipped
        on_record = (
            f"qty {order.asn_qty}, carrier_ref {order.carrier_ref!r}, "
            f"expected_ms {order.promised_ms}"
        )
        raise IllegalTransition(
            f"order {order_id} is already shipped with another notice ({on_record}); "
            "an order is shipped once: only the same notice again is accepted (a retry)"
        )
    if "shipped" not in TRANSITIONS[order.state]:
        # the state, not the quantity, is why: goods received leave nothing outstanding
        raise IllegalTransition(
            f"order {order_id} is {order.state}; a ship notice is accepted only while "
            "it is created, sent or acknowledged (or the same notice again while shipped)"
        )
    left = outstanding(order)
    shipped = qty if qty is not None else left
    # validated like an acknowledgement: a ship notice moves what the position counts
    if shipped > left + tolerance(left):
        raise InvalidRequest(
            "qty",
            f"{shipped} shipped is more than the {left} still outstanding on order "
            f"{order_id} (+{tolerance(left)} tolerance)",
        )
    if expected_ms is not None and expected_ms < order.created_ms:
        raise InvalidRequest(
            "expected_ms",
            f"{expected_ms} is before the order was created ({order.created_ms})",
        )
    values: dict[str, Any] = {
        "shipped_ms": now_ms,
        "asn_qty": shipped,
        "carrier_ref": carrier_ref,
        "next_attempt_ms": None,
        "sent_ms": order.sent_ms or now_ms,
    }
    if expected_ms is not None:
        values["promised_ms"] = expected_ms
    return transition(
        session,
        order_id,
        "shipped",
        actor=actor,
        now_ms=now_ms,
        reason="ship notice",
        detail={"qty": shipped, "carrier_ref": carrier_ref},
        values=values,
        supplier_id=supplier_id,
    )
