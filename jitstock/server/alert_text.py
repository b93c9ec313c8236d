"""Alerts worded for people: a sentence naming bin, part and supplier, and what to do.

The stored ``message`` stays as the rules wrote it (logs, e-mail, existing
integrations); the dashboard's alert list adds ``headline``, ``what_to_do``
and the names it needs (bin, SKU, supplier, order) read from the state DB in
one pass per request.  Kinds and entities are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.models import Bin, Order, Sku, Supplier

# What a person should do about each kind; {bin}, {part}, {supplier}, {order}, {agent} are filled in.
WHAT_TO_DO = {
    "stockout": "Check the line is not waiting for parts; expedite the open order or move stock from another bin.",
    "below_safety_stock": "Watch the bin; if the order will not arrive in time, call {supplier}.",
    "scale_fault": "Check the scale under bin {bin} (power, cable, load, obstruction) and its tare, then recount the bin.",
    "agent_offline": "Check power and network of edge agent {agent}; its bins are not being watched.",
    "order_unacknowledged": "Call {supplier} and ask them to confirm order {order}.",
    "order_overdue": "Call {supplier} for a new delivery time for order {order}; expedite or order elsewhere if the bin runs low.",
    "order_failed": "Check the supplier's order channel, then re-send or place order {order} by hand.",
    "order_escalated": "Confirm the replacement order with the fallback supplier; tell {supplier} the original was escalated.",
    "webhook_failing": "Orders to {supplier} are not getting through: check their endpoint or call them.",
    "consumption_anomaly": "Walk to bin {bin}: check for a wrong bin, a leaking count or parts taken without a pick.",
    "reorder_blocked": "Open bin {bin} and fix what blocks ordering, or place an order by hand.",
    "unexplained_stock_increase": "Check what was put into bin {bin}; recount it if the count is wrong.",
    "receiving_weigh_in_short": "Recount bin {bin} and check the delivery note of order {order}.",
    "receiving_putaway_not_seen": "Find the received goods of order {order} and put them into bin {bin}.",
    "receiving_closed_order_receipt": "Check which order the goods belong to; book them against the right order.",
    "order_cancelled_by_supplier": "Place a replacement order for bin {bin} with another supplier.",
    "scan_not_allowed": "Receive the goods at the station assigned to bin {bin}.",
    "replacement_not_placed": "Check the open order of bin {bin} covers the need.",
    "dead_letter": "Look at the dead letter in /api/v1/dead-letters; the device may need its firmware or config fixed.",
}
# An escalation that found no other supplier: nobody else is on it.
NO_FALLBACK_TO_DO = "No other supplier could take order {order}: call {supplier} for a date, or order elsewhere by hand."
# An increase while a cancelled order's goods may still turn up: no open order took it.
CANCELLED_GOODS_TO_DO = "The goods put into bin {bin} may be those of cancelled order {order}: check the delivery note. If they are the open order's, receive it at the dock (scan its label) within 2 hours; the open order stays on order until then."
DEFAULT_WHAT_TO_DO = (
    "Open the linked bin or order and decide; acknowledge when someone is on it."
)

# The subject of each kind's headline; the rule's own message follows as the detail.
HEADLINES = {
    "stockout": "Bin {bin} ({part}) is empty",
    "below_safety_stock": "Bin {bin} ({part}) is below its safety stock",
    "scale_fault": "The scale of bin {bin} ({part}) reports a fault",
    "agent_offline": "Edge agent {agent} is offline",
    "order_unacknowledged": "{supplier} has not confirmed order {order} for bin {bin} ({part})",
    "order_overdue": "Order {order} for bin {bin} ({part}) from {supplier} is late",
    "order_failed": "Order {order} for bin {bin} ({part}) could not be sent to {supplier}",
    "order_escalated": "Order {order} for bin {bin} ({part}) from {supplier} was escalated",
    "webhook_failing": "Orders to {supplier} are failing",
    "consumption_anomaly": "Bin {bin} ({part}) used far more or less than forecast",
    "reorder_blocked": "Bin {bin} ({part}) needs an order but none could be placed",
    "unexplained_stock_increase": "Bin {bin} ({part}) gained stock no order explains",
    "order_cancelled_by_supplier": "{supplier} cancelled order {order} for bin {bin} ({part})",
}


def _names(
    session: Session, alerts: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str], dict[str, str]]:
    """Orders, bins, SKU names and supplier names the alerts refer to (one query each)."""
    order_ids = {a["order_id"] for a in alerts if a.get("order_id")}
    orders = {
        o.id: o
        for o in (
            session.scalars(select(Order).where(Order.id.in_(order_ids)))
            if order_ids
            else ()
        )
    }
    bin_ids = {a["bin_id"] for a in alerts if a.get("bin_id")} | {
        o.bin_id for o in orders.values()
    }
    bins = {
        b.id: b
        for b in (
            session.scalars(select(Bin).where(Bin.id.in_(bin_ids))) if bin_ids else ()
        )
    }
    skus = dict(session.execute(select(Sku.id, Sku.name)).all()) if bins else {}
    suppliers = dict(session.execute(select(Supplier.id, Supplier.name)).all())
    return orders, bins, skus, suppliers


def describe(
    session: Session, alerts: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each alert dict with ``headline``, ``what_to_do`` and the bin/SKU/supplier/order it is about."""
    rows = list(alerts)
    orders, bins, skus, suppliers = _names(session, rows)
    out = []
    for a in rows:
        order = orders.get(a.get("order_id") or "")
        bin_id = a.get("bin_id") or (order.bin_id if order else None)
        b = bins.get(bin_id or "")
        sku = order.sku_id if order else (b.sku_id if b else None)
        supplier_id = (
            a.get("supplier_id")
            or (order.supplier_id if order else None)
            or (b.supplier_id if b else None)
        )
        agent = a.get("agent_id") or (
            a["entity"].split(":", 1)[1] if a["entity"].startswith("agent:") else None
        )
        names = {
            "bin": bin_id or "?",
            "part": f"{sku} {skus[sku]}".strip()
            if sku and skus.get(sku) and skus[sku] != sku
            else (sku or "part unknown"),
            "supplier": suppliers.get(supplier_id or "", supplier_id or "the supplier"),
            "order": (a.get("order_id") or "")[:8] or "?",
            "agent": agent or "?",
        }
        head = HEADLINES.get(a["kind"])
        todo = WHAT_TO_DO.get(a["kind"], DEFAULT_WHAT_TO_DO)
        if (a.get("detail") or {}).get("action") == "no_fallback":
            todo = NO_FALLBACK_TO_DO
        elif cancelled := (a.get("detail") or {}).get("cancelled_orders"):
            todo = CANCELLED_GOODS_TO_DO
            names["order"] = str(cancelled[0])[:8]
        out.append(
            {
                **a,
                "headline": head.format(**names) if head else a["message"],
                "what_to_do": todo.format(**names),
                "bin_id": bin_id,
                "sku": sku,
                "supplier_id": supplier_id,
                "supplier_name": suppliers.get(supplier_id or "")
                if supplier_id
                else None,
                "area": b.area if b else None,
                "order_state": order.state if order else None,
            }
        )
    return out
