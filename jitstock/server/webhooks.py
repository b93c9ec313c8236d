"""What a supplier delivery looks like on the wire: the versioned envelope, the public
order object, Standard Webhooks signature headers (two signatures during a secret
rotation) and Retry-After parsing.

Every delivery to a supplier — the new order (``order.created``) and each lifecycle
event — is one envelope::

    {"version": 1, "id": "...", "type": "order.created", "timestamp": "2026-…Z",
     "timestamp_ms": 1780000000000, "data": {"order": {...}, ...}}

``id`` is also the ``webhook-id`` header and the receiver's idempotency key: the
order id for ``order.created`` (an order is created once), an ``evt_…`` id for every
other event.  The schemas are published in the OpenAPI document's ``webhooks``
(:mod:`jitstock.server.api.webhook_schemas`).  The order object carries what a
supplier needs to fulfil it and nothing about other suppliers: the internal
``trigger`` (stock figures, escalation details, bridged order ids) never leaves.

Shared by the order dispatcher (webhook body and MQTT order payload) and the
supplier event queue.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook

from jitstock.server import catalog_cache
from jitstock.server.db.models import Bin, Order, Site, Sku, Supplier
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.db.supplier_models import SupplierItem

# Suppliers' systems log this; it names the sender and its version.
USER_AGENT = "jitstock-dispatcher/1"
# The envelope's version: any change to a published schema but an added event type bumps it.
WEBHOOK_VERSION = 1
# jitstock counts whole pieces (a scale divides by the unit weight): every qty is in these.
UNIT = "piece"
ORDER_CREATED = "order.created"

__all__ = [
    "ORDER_CREATED",
    "UNIT",
    "USER_AGENT",
    "WEBHOOK_VERSION",
    "envelope",
    "needed_by",
    "new_order_bodies",
    "order_created_body",
    "order_data",
    "parse_retry_after",
    "previous_secret",
    "public_reason",
    "sign_headers",
]


def envelope(
    event_type: str, event_id: str, at_ms: int, data: dict[str, Any]
) -> dict[str, Any]:
    """The versioned envelope every supplier delivery has."""
    stamp = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return {
        "version": WEBHOOK_VERSION,
        "id": event_id,
        "type": event_type,
        "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "timestamp_ms": at_ms,
        "data": data,
    }


def public_reason(trigger: dict[str, Any] | None) -> str:
    """Why the order exists, in the supplier's words (the internal trigger stays inside).

    ``expedite``: another order for this bin cannot arrive in time, this one bridges
    the gap; ``replacement``: it replaces goods short or rejected at receipt of an
    earlier order of the same supplier; ``reorder_point``: the bin's inventory
    position reached its reorder point (also after a cancelled or failed order).
    """
    trigger = trigger or {}
    if "escalated_from" in trigger:
        return "expedite"
    if "replaces" in trigger:
        return "replacement"
    return "reorder_point"


def needed_by(session: Session, order: Order) -> tuple[int | None, str | None]:
    """When the plant needs the order, and on what basis (both None: no basis).

    ``projected_stockout``: the bin runs out then — the projection escalation made
    (bridging orders), else the stock when the order was created (on hand plus
    pending put-away) ÷ the bin's learned demand rate; ``quoted_lead_time``: no
    learned rate yet, so created + the supplier item's quoted lead time.
    """
    # deferred: escalation imports the lifecycle, which imports this module
    from jitstock.server.supplier.escalation import learned_rate

    trigger = order.trigger or {}
    stockout = trigger.get("stockout_ms")
    if isinstance(stockout, int) and not isinstance(stockout, bool):
        return stockout, "projected_stockout"
    rate = learned_rate(session, order.bin_id)
    if rate:
        stock = _stock_at_creation(session, order)
        return order.created_ms + int(stock / rate), "projected_stockout"
    quoted = session.scalar(
        select(SupplierItem.quoted_lead_time_s).where(
            SupplierItem.supplier_id == order.supplier_id,
            SupplierItem.sku_id == order.sku_id,
        )
    )
    if quoted:
        return order.created_ms + int(quoted) * 1000, "quoted_lead_time"
    return None, None


def _stock_at_creation(session: Session, order: Order) -> int:
    trigger = order.trigger or {}
    pos = trigger.get("position")
    if isinstance(pos, dict) and isinstance(pos.get("on_hand"), int):
        return max(0, int(pos["on_hand"])) + max(
            0, int(pos.get("pending_delivery") or 0)
        )
    if isinstance(trigger.get("on_hand"), int):
        return max(0, int(trigger["on_hand"]))
    row = session.get(Bin, order.bin_id)
    return 0 if row is None else max(0, row.on_hand) + max(0, row.pending_delivery_qty)


def order_data(session: Session, order: Order) -> dict[str, Any]:
    """The order as its supplier sees it: what to deliver, where, by when, and why."""
    sku = session.get(Sku, order.sku_id)
    site = session.get(Site, order.site_id)
    supplier_sku = session.scalar(
        select(SupplierItem.supplier_sku).where(
            SupplierItem.supplier_id == order.supplier_id,
            SupplierItem.sku_id == order.sku_id,
        )
    )
    trigger = order.trigger or {}
    reason = public_reason(trigger)
    replaces = trigger.get("replaces") if reason == "replacement" else None
    if replaces is not None:
        # only ever one of this supplier's own orders
        earlier = session.get(Order, replaces)
        if earlier is None or earlier.supplier_id != order.supplier_id:
            replaces = None
    need_ms, basis = needed_by(session, order)
    return _public_order(
        order,
        sku.name if sku is not None else order.sku_id,
        site,
        supplier_sku,
        reason,
        replaces,
        need_ms,
        basis,
    )


def _public_order(
    order: Any,
    description: str,
    site: Any,
    supplier_sku: str | None,
    reason: str,
    replaces: Any,
    need_ms: int | None,
    basis: str | None,
) -> dict[str, Any]:
    """The public order object from an order (ORM object or row) and what was looked up."""
    return {
        "id": order.id,
        "state": order.state,
        "supplier": order.supplier_id,
        "site": order.site_id,
        "bin": order.bin_id,
        "sku": order.sku_id,
        "description": description,
        "supplier_sku": supplier_sku,
        "qty": order.qty,
        "unit": UNIT,
        "reason": reason,
        "replaces": replaces,
        "needed_by_ms": need_ms,
        "needed_by_basis": basis,
        "ship_to": {
            "site": order.site_id,
            "name": site.name if site is not None else order.site_id,
            "address": site.address if site is not None else None,
            "dock": site.dock if site is not None else None,
            "bin": order.bin_id,
        },
        "created_ms": order.created_ms,
        "promised_ms": order.promised_ms,
        "shipped_qty": order.asn_qty,
        "carrier_ref": order.carrier_ref,
        "received_qty": order.delivered_qty,
    }


def order_created_body(session: Session, order: Order) -> bytes:
    """The ``order.created`` delivery (webhook body and MQTT order payload).

    Its id and timestamp are the order's own, so every retry carries the same envelope.
    """
    data = {"order": order_data(session, order)}
    return orjson.dumps(envelope(ORDER_CREATED, order.id, order.created_ms, data))


# new_order_bodies' look-ups, built once (a statement per call costs more Python than
# the query)
_POLICY_INPUTS = select(BinPolicy.bin_id, BinPolicy.inputs).where(
    BinPolicy.bin_id.in_(bindparam("bins", expanding=True))
)


def new_order_bodies(session: Session, orders: Sequence[Any]) -> dict[str, bytes]:
    """``order_created_body`` of many orders with a handful of statements for all.

    ``orders`` are rows with the order's columns (as the dispatcher's claim reads
    them).  The body is byte for byte the one :func:`order_created_body` makes; an
    order whose trigger needs more than a reorder-point order's look-ups (a bridge,
    a replacement, a trigger without its stock) is made by that function itself.
    """
    out: dict[str, bytes] = {}
    plain = []
    for o in orders:
        trigger = o.trigger or {}
        pos = trigger.get("position")
        simple = (
            public_reason(trigger) == "reorder_point"
            and "stockout_ms" not in trigger
            and isinstance(pos, dict)
            and isinstance(pos.get("on_hand"), int)
        )
        if simple:
            plain.append(o)
        else:
            order = session.get(Order, o.id)
            if order is not None:
                out[o.id] = order_created_body(session, order)
    if not plain:
        return out
    conn = session.connection()
    # SKU names, sites and supplier items: this catalogue generation's (see catalog_cache)
    names = catalog_cache.sku_names(conn, (o.sku_id for o in plain))
    site_rows = catalog_cache.sites(conn, (o.site_id for o in plain))
    items = catalog_cache.items(conn, ((o.supplier_id, o.sku_id) for o in plain))
    bins = sorted({o.bin_id for o in plain})
    inputs: dict[str, Any] = dict(conn.execute(_POLICY_INPUTS, {"bins": bins}).all())
    for o in plain:
        item = items.get((o.supplier_id, o.sku_id))
        need_ms, basis = _needed_by_new(o, inputs.get(o.bin_id), item)
        data = _public_order(
            o,
            _or(names.get(o.sku_id), o.sku_id),
            site_rows.get(o.site_id),
            item.supplier_sku if item is not None else None,
            "reorder_point",
            None,
            need_ms,
            basis,
        )
        out[o.id] = orjson.dumps(
            envelope(ORDER_CREATED, o.id, o.created_ms, {"order": data})
        )
    return out


def _or(value: str | None, default: str) -> str:
    return default if value is None else value


def _needed_by_new(
    order: Any, inputs: dict[str, Any] | None, item: Any
) -> tuple[int | None, str | None]:
    """:func:`needed_by` of a reorder-point order from looked-up facts: the learned
    rate (escalation.learned_rate's rule) and the supplier item's quoted lead time."""
    demand = (inputs or {}).get("demand") or {}
    rate = demand.get("rate_per_day")
    if isinstance(rate, int | float) and math.isfinite(rate) and rate > 0:
        pos = order.trigger["position"]
        stock = max(0, int(pos["on_hand"])) + max(
            0, int(pos.get("pending_delivery") or 0)
        )
        return order.created_ms + int(stock / (float(rate) / 86_400_000)), (
            "projected_stockout"
        )
    quoted = item.quoted_lead_time_s if item is not None else None
    if quoted:
        return order.created_ms + int(quoted) * 1000, "quoted_lead_time"
    return None, None


def sign_headers(
    secret: str,
    msg_id: str,
    body: bytes,
    timestamp_s: int,
    previous_secret: str | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) for a body.

    With ``previous_secret`` (a rotation in progress) the header carries both
    signatures, space-separated, so receivers on either secret verify.
    """
    ts = datetime.fromtimestamp(timestamp_s, tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=ts, data=body.decode())
    if previous_secret:
        old = Webhook(previous_secret).sign(
            msg_id=msg_id, timestamp=ts, data=body.decode()
        )
        signature = f"{signature} {old}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
    }


def previous_secret(
    supplier: Supplier | catalog_cache.SupplierFacts | None, now_ms: int
) -> str | None:
    """The supplier's previous webhook secret while its rotation grace period lasts."""
    if supplier is None or not supplier.webhook_secret_previous:
        return None
    until = supplier.webhook_secret_previous_until_ms
    return supplier.webhook_secret_previous if until is None or now_ms < until else None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
