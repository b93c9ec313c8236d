"""HTTP models of the supplier loop: ship notices, receipts, inspections, supplier items,
supplier keys, scorecards, alerts and escalations."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from jitstock.server.api.schemas import (
    MAX_LEAD_TIME_S,
    MAX_QTY,
    DeadlineS,
    EpochMs,
    Input,
    OrderState,
    Output,
    SkuId,
    UnitCost,
)

PosQty = Annotated[int, Field(gt=0, le=MAX_QTY)]
Qty0 = Annotated[int, Field(ge=0, le=MAX_QTY)]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class ShipRequest(Input):
    """An advance ship notice: what is on the truck, and the carrier's reference."""

    qty: PosQty | None = Field(default=None, description="shipped; default the order's")
    carrier_ref: Annotated[str, Field(max_length=200)] | None = None
    expected_ms: EpochMs | None = Field(
        default=None,
        description="expected arrival (epoch ms, not before the order was created); "
        "updates the promise",
    )


class CancelRequest(Input):
    """Why the order is to be cancelled."""

    reason: Reason


class ReceiveRequest(Input):
    """Goods received at the dock for an order."""

    qty: PosQty
    complete: bool = Field(
        default=True, description="false: more of this order is still to come"
    )


class InspectionRequest(Input):
    """The inspector's verdict on one receipt."""

    accepted_qty: Qty0
    rejected_qty: Qty0
    reason: Reason | None = None


class TransitionPublic(Output):
    """One state change of an order."""

    at_ms: int
    from_state: OrderState | None
    to_state: OrderState
    actor: str = Field(
        description="who made the change: to a supplier key, its own key name, its "
        "e-mail link (`email-link:<supplier>`) or the plant's software (`dispatcher`, "
        "`reorder`, `escalation`, `scale`) as they are, and any plant person as `plant`"
    )
    reason: str | None
    detail: dict[str, Any] | None


class ReceiptPublic(Output):
    """Goods received for an order."""

    id: int
    order_id: str
    bin_id: str
    at_ms: int
    method: str
    qty: int
    counted_qty: int
    accepted_qty: int | None
    scale_qty: int | None
    inspection_required: bool
    status: str
    actor: str = Field(
        description="who recorded it: to a supplier key `scale` or `plant` (the plant's "
        "people and dock stations are not named)"
    )


class InspectionPublic(Output):
    """A recorded inspection."""

    id: int
    receipt_id: int
    order_id: str
    at_ms: int
    inspector: str
    accepted_qty: int
    rejected_qty: int
    reason: str | None


class SupplierItemIn(Input):
    """A supplier's offer for a SKU (replaces the existing one for that SKU)."""

    sku_id: SkuId
    priority: Annotated[int, Field(ge=1, le=1000)] = 1
    quoted_lead_time_s: Annotated[int, Field(ge=0, le=MAX_LEAD_TIME_S)] | None = None
    pack_size: PosQty = 1
    moq: PosQty = 1
    price: UnitCost | None = None
    active: bool = True
    supplier_sku: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=100,
                description="the supplier's own part number (sent with its orders)",
            ),
        ]
        | None
    ) = None


class SupplierItemPublic(Output):
    """A supplier's offer for a SKU."""

    supplier_id: str
    sku_id: str
    priority: int
    quoted_lead_time_s: int | None
    pack_size: int
    moq: int
    price: float | None
    active: bool
    supplier_sku: str | None = None


class SupplierLoopSettings(Input):
    """Per-supplier settings of the loop (fields sent are changed)."""

    ack_deadline_s: DeadlineS | None = None
    escalation_enabled: bool | None = None
    inspect_every_n: Annotated[int, Field(ge=0, le=10_000)] | None = Field(
        default=None, description="inspect every n-th delivery; 0 turns sampling off"
    )


class SupplierKeyCreate(Input):
    """A new API key for a supplier's system."""

    name: Annotated[str, Field(min_length=1, max_length=100)]


class SupplierKeyCreated(BaseModel):
    """A supplier key with its plain value, shown this once."""

    id: int
    name: str
    role: str
    supplier_id: str
    key: str


class SupplyAlertPublic(Output):
    """An alert of the supplier loop."""

    id: int
    at_ms: int
    kind: str
    bin_id: str | None
    order_id: str | None
    supplier_id: str | None
    detail: dict[str, Any] | None


class DiscrepancyPublic(Output):
    """Units that did not match exactly at receiving (see README: receiving tolerance)."""

    id: int
    at_ms: int
    bin_id: str
    order_id: str | None
    receipt_id: int | None
    supplier_id: str | None
    kind: str = Field(
        description="unexplained_increase | putaway_picks | weigh_in_short | "
        "weigh_in_over | putaway_not_seen | closed_order_receipt"
    )
    qty: int
    detail: dict[str, Any] | None
    resolved_ms: int | None
    resolved_by: str | None


class EscalationPublic(Output):
    """An order handed to a fallback supplier."""

    id: int
    at_ms: int
    order_id: str
    supplier_id: str
    fallback_supplier_id: str | None
    bridge_order_id: str | None
    reason: str
    action: str
    qty: int
    detail: dict[str, Any] | None


class ScorecardPublic(Output):
    """A supplier's numbers over a period, counted over the orders created in it.

    Rates are fractions 0..1; a figure without data (no order received, none
    inspected, ...) is null, not 0."""

    period: str = Field(description="the period asked for, e.g. `30d`")
    supplier_id: str = Field(description="the supplier the card is about")
    start_ms: int = Field(description="start of the period (epoch ms, inclusive)")
    end_ms: int = Field(description="end of the period (epoch ms, exclusive)")
    orders: int = Field(description="orders created in the period")
    orders_received: int = Field(
        description="of those, orders with goods recorded (part received, received, "
        "closed or delivered)"
    )
    orders_cancelled: int = Field(description="of those, orders now cancelled")
    on_time_rate: float | None = Field(
        description="share of received orders recorded by the promise (else the quoted "
        "lead time) plus the tolerance (README: on time); null without one"
    )
    lead_time_mean_s: float | None = Field(
        description="mean seconds from sent (else created) to goods recorded"
    )
    lead_time_std_s: float | None = Field(
        description="population standard deviation of those lead times (s)"
    )
    quoted_lead_time_mean_s: float | None = Field(
        description="mean quoted lead time (s) of the received orders' supplier items"
    )
    lead_time_vs_quoted_mean_s: float | None = Field(
        description="mean of (lead time − quoted lead time) in seconds; positive is late"
    )
    ack_time_mean_s: float | None = Field(
        description="mean seconds from sent (else created) to acknowledged"
    )
    units_ordered: int = Field(description="units ordered on the received orders")
    units_received: int = Field(description="units recorded on the received orders")
    units_over: int = Field(description="units received beyond the order quantity")
    units_short: int = Field(description="units short of the order quantity")
    fill_accuracy: float | None = Field(
        description="1 − (units over + units short) ÷ units ordered; null when nothing "
        "was received"
    )
    weigh_in_over: int = Field(
        description="units the bin's scale saw beyond dock receipts (dock under-counted)"
    )
    weigh_in_short: int = Field(
        description="units the bin's scale saw fewer than the dock receipts said"
    )
    units_inspected: int = Field(description="units inspected (accepted + rejected)")
    units_rejected: int = Field(description="units rejected at inspection")
    quality_rate: float | None = Field(
        description="1 − units rejected ÷ units inspected; null when none was inspected"
    )
    escalations: int = Field(
        description="escalations of this supplier's orders to another in the period"
    )
