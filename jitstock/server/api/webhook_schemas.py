"""The webhooks jitstock sends to suppliers, published as OpenAPI 3.1 ``webhooks``.

One operation per event type (``lifecycle.EVENT_TYPES``), each with its envelope
schema, so a supplier's developer can generate models from ``/openapi.json``.
The bodies are built by :mod:`jitstock.server.webhooks`; the contract tests
validate every delivery of the supplier-loop tests against these schemas.
Schemas are closed (``additionalProperties: false``): a field is only added or
changed with a new ``version``.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from jitstock.server.api.catalog import SECRET_ROTATION_GRACE_MS
from jitstock.server.supplier.lifecycle import EVENT_TYPES
from jitstock.server.webhooks import UNIT, WEBHOOK_VERSION

__all__ = ["EVENT_DESCRIPTIONS", "doc_receiver", "register_webhooks"]

WEBHOOKS_DESCRIPTION = f"""\
**Every delivery** to a supplier's `webhook_url` (and every order and lifecycle event published on
`jit/v1/{{site}}/orders/{{supplier}}` for MQTT suppliers) is this envelope:
`{{"version": {WEBHOOK_VERSION}, "id", "type", "timestamp", "timestamp_ms", "data"}}` with
`data.order` the order as its supplier sees it.

**Signature** (Standard Webhooks): headers `webhook-id`, `webhook-timestamp`
(epoch seconds) and `webhook-signature` = `v1,` + base64 HMAC-SHA256 with the
base64-decoded part of the supplier's `whsec_…` secret over
`{{webhook-id}}.{{webhook-timestamp}}.{{body}}`. After `rotate-secret` the header
holds two signatures separated by a space (new and previous secret) for
{SECRET_ROTATION_GRACE_MS // 3_600_000} h; accept the delivery if either matches.

**Idempotency**: `webhook-id` equals the envelope's `id`: the **order id** for
`order.created` (sent once per order, retried with the same id and the same body),
an **`evt_…` id** for every other event. Deduplicate on it.

**Order of arrival is not guaranteed**: new orders and lifecycle events leave on
separate queues and retries, so a new order for a bin may arrive before the
cancellation of the bin's previous one, and a retried event after a later one. Order
the deliveries of one order by `timestamp_ms` (when the event happened), and act on an
order's state as `data.order` carries it. One order's events have strictly increasing
`timestamp_ms` in the order the plant recorded them, each after its `order.created`:
two changes in the same millisecond, or a request that waited for another, are
stamped at least 1 ms apart, so a sort never ties and the newest is the one in force.

**Answer** 2xx within the plant's timeout (`JITSTOCK_WEBHOOK_TIMEOUT_S`, default
5 s). 408, 429 (`Retry-After` honoured) and 5xx are
retried with exponential backoff; for `order.created` any other answer fails
the order and the plant orders elsewhere; a lifecycle event answered so is dropped.
"""

EVENT_DESCRIPTIONS: dict[str, str] = {
    "order.created": "A new order for this supplier. Acknowledge it with "
    "`POST /api/v1/orders/{id}/ack` (optionally with a promise), announce shipment "
    "with `POST /api/v1/orders/{id}/ship`.",
    "order.acknowledged": "The order was acknowledged (by this supplier's key or the plant).",
    "order.promise_changed": "A later acknowledgement changed the promised delivery "
    "time; `previous_promised_ms` is the replaced promise, `order.promised_ms` the new one.",
    "order.shipped": "A ship notice was recorded (`order.shipped_qty`, "
    "`order.carrier_ref`); also sent when the order shipped without an acknowledgement.",
    "order.part_received": "Part of the order was received (`order.received_qty`).",
    "order.received": "The order was received in full (or closed short at the dock).",
    "order.closed": "The order is settled (received and, where sampled, inspected).",
    "order.cancelled": "The order was cancelled: by this supplier, by the plant, "
    "or by escalation (it could not arrive in time); `note` says why. Do not ship it.",
    "order.delivered": "The plant recorded the delivery in one step (manager shortcut).",
    "order.reduced": "The order's quantity was reduced by `reduced_by`: escalation "
    "found the rest could not arrive in time and another supplier covers it; "
    "`order.qty` is the new quantity, `note` says why. Ship only the new quantity.",
    "receipt.inspected": "A quality inspection of goods received on the order: "
    "`accepted_qty`, `rejected_qty`; rejected units are re-ordered.",
}
assert set(EVENT_DESCRIPTIONS) == set(EVENT_TYPES), "every event type is described"


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShipTo(_Closed):
    """Where the goods go."""

    site: str = Field(description="plant id")
    name: str = Field(description="plant name")
    address: str | None = Field(description="postal address (null: not configured)")
    dock: str | None = Field(description="receiving dock or gate (null: any)")
    bin: str = Field(description="the bin the goods are for (print it on the label)")


class WebhookOrder(_Closed):
    """The order as its supplier sees it (no other supplier's data, no internal trigger)."""

    id: str = Field(description="order id; also the `webhook-id` of `order.created`")
    state: Literal[
        "created",
        "sent",
        "acknowledged",
        "shipped",
        "part_received",
        "received",
        "closed",
        "delivered",
        "cancelled",
        "failed",
    ]
    supplier: str = Field(description="your supplier id")
    site: str
    bin: str
    sku: str = Field(description="the plant's part number (SKU id)")
    description: str = Field(description="part description (the SKU's name)")
    supplier_sku: str | None = Field(
        description="your own part number for the SKU (null: not configured)"
    )
    qty: int = Field(description="quantity ordered, in `unit`")
    unit: Literal["piece"] = Field(
        description=f"unit of measure of every quantity: always {UNIT!r} "
        "(whole pieces, UN/ECE Rec. 20 code C62)"
    )
    reason: Literal["reorder_point", "replacement", "expedite"] = Field(
        description="why the order exists: `reorder_point` — the bin's stock "
        "reached its reorder point; `replacement` — it replaces goods short or "
        "rejected at receipt of your order `replaces`; `expedite` — another "
        "delivery cannot arrive before the bin runs out, this order bridges the gap"
    )
    replaces: str | None = Field(
        description="for `replacement`: the id of your earlier order it replaces"
    )
    needed_by_ms: int | None = Field(
        description="when the plant needs the goods (epoch ms): the projected "
        "stockout (stock when ordered ÷ the bin's learned demand rate, or the "
        "escalation's projection), else created + your quoted lead time; null: "
        "neither is known"
    )
    needed_by_basis: Literal["projected_stockout", "quoted_lead_time"] | None
    ship_to: ShipTo
    created_ms: int
    promised_ms: int | None = Field(description="your promised delivery time")
    shipped_qty: int | None = Field(description="quantity in your ship notice")
    carrier_ref: str | None
    received_qty: int | None = Field(description="quantity received so far")


# Fields each event type carries beside ``order`` and ``note``.
_EXTRA: dict[str, dict[str, Any]] = {
    "order.promise_changed": {
        "previous_promised_ms": (
            int | None,
            Field(description="the promise replaced (null: there was none)"),
        )
    },
    "order.reduced": {
        "reduced_by": (int, Field(description="units taken off the order"))
    },
    "receipt.inspected": {
        "accepted_qty": (int, ...),
        "rejected_qty": (int, ...),
    },
}


def _camel(event_type: str) -> str:
    return "".join(w.capitalize() for w in event_type.replace(".", "_").split("_"))


def _data_model(event_type: str) -> type[BaseModel]:
    fields: dict[str, Any] = {"order": (WebhookOrder, ...)}
    if event_type != "order.created":
        fields["note"] = (
            str | None,
            Field(description="why it happened, for a human (null: no reason given)"),
        )
    fields.update(_EXTRA.get(event_type, {}))
    return create_model(f"{_camel(event_type)}Data", __base__=_Closed, **fields)


def _envelope_model(event_type: str) -> type[BaseModel]:
    return create_model(
        f"{_camel(event_type)}Event",
        __base__=_Closed,
        __doc__=EVENT_DESCRIPTIONS[event_type],
        version=(Literal[WEBHOOK_VERSION], Field(description="envelope version")),  # type: ignore[arg-type]
        id=(str, Field(description="the `webhook-id`: deduplicate on it")),
        type=(Literal[event_type], ...),  # type: ignore[arg-type]
        timestamp=(str, Field(description="when it happened (RFC 3339, UTC)")),
        timestamp_ms=(int, Field(description="the same instant in epoch ms")),
        data=(_data_model(event_type), ...),
    )


def doc_receiver(model: type[BaseModel]) -> Any:
    def receive(body: Any) -> None:
        """Documentation only: jitstock sends this, the supplier receives it."""

    receive.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "body",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[model, Body()],
            )
        ],
        return_annotation=None,
    )
    return receive


def register_webhooks(app: FastAPI) -> None:
    """Publish every supplier delivery type under the OpenAPI document's ``webhooks``."""
    for event_type in EVENT_TYPES:
        model = _envelope_model(event_type)
        app.webhooks.add_api_route(
            event_type,
            doc_receiver(model),
            methods=["POST"],
            summary=event_type,
            description=EVENT_DESCRIPTIONS[event_type] + "\n\n" + WEBHOOKS_DESCRIPTION,
            operation_id=f"webhook_{event_type.replace('.', '_')}",
            tags=["supplier webhooks"],
            responses={
                200: {"description": "received (any 2xx)"},
                429: {"description": "slow down: retried after `Retry-After`"},
                503: {"description": "unavailable: retried with backoff (any 5xx)"},
            },
        )
