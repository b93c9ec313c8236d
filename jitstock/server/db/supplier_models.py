"""State DB tables of the supplier loop (issue 5): supplier items, order transitions,
receipts, inspections, escalations, the supplier event outbox and supply alerts.

Same conventions as :mod:`jitstock.server.db.models` (epoch-millisecond BIGINTs,
enumerated strings checked in code, named constraints).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from jitstock.server.db.models import AutoId, Base, JsonDoc

RECEIPT_METHODS = ("scan", "scale", "api")
# awaiting_inspection -> awaiting_putaway -> done (the scale confirmed the put-away)
RECEIPT_STATUSES = ("awaiting_inspection", "awaiting_putaway", "done")
EVENT_STATES = ("pending", "sent", "failed", "skipped")
ESCALATION_ACTIONS = ("cancelled", "reduced", "bridged", "no_fallback")


class SupplierItem(Base):
    """One supplier's offer for one SKU: priority (1 = preferred), lead time, pack, MOQ, price."""

    __tablename__ = "supplier_items"
    __table_args__ = (
        UniqueConstraint("supplier_id", "sku_id"),
        Index("ix_supplier_items_sku_id_priority", "sku_id", "priority"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    supplier_id: Mapped[str] = mapped_column(
        ForeignKey("suppliers.id", ondelete="CASCADE")
    )
    sku_id: Mapped[str] = mapped_column(ForeignKey("skus.id", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    quoted_lead_time_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pack_size: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    moq: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The supplier's own part number for the SKU (issue 13), printed on its order.
    supplier_sku: Mapped[str | None] = mapped_column(String(100), nullable=True)


def supplier_items_for(session: Session, sku_id: str) -> list[SupplierItem]:
    """Active supplier items of a SKU, preferred first (priority, then supplier id)."""
    from sqlalchemy import select

    stmt = (
        select(SupplierItem)
        .where(SupplierItem.sku_id == sku_id, SupplierItem.active.is_(True))
        .order_by(SupplierItem.priority, SupplierItem.supplier_id)
    )
    return list(session.scalars(stmt))


class OrderTransition(Base):
    """One state change of an order: who, when, why (from None = creation)."""

    __tablename__ = "order_transitions"
    __table_args__ = (
        Index("ix_order_transitions_order_id_at_ms", "order_id", "at_ms"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    from_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)


class Receipt(Base):
    """Goods received for an order at the dock (scan, API) or at the bin (scale)."""

    __tablename__ = "receipts"
    __table_args__ = (
        Index("ix_receipts_bin_id_status", "bin_id", "status"),
        # a retried dock receipt (same Idempotency-Key) finds the first one (0018)
        Index("uq_receipts_order_request_key", "order_id", "request_key", unique=True),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    bin_id: Mapped[str] = mapped_column(ForeignKey("bins.id", ondelete="CASCADE"))
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(16))  # one of RECEIPT_METHODS
    qty: Mapped[int] = mapped_column(Integer)  # received (announced at the dock)
    counted_qty: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    accepted_qty: Mapped[int | None] = mapped_column(Integer, nullable=True)
    scale_qty: Mapped[int | None] = mapped_column(Integer, nullable=True)
    inspection_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    status: Mapped[str] = mapped_column(String(32))  # one of RECEIPT_STATUSES
    actor: Mapped[str] = mapped_column(String(100))
    scanner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # what a dock request said of the order (its `complete`; 0020): a retry with the
    # same Idempotency-Key must say the same
    complete: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class Inspection(Base):
    """A quality inspection of a receipt: accepted and rejected units, with a reason."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    receipt_id: Mapped[int] = mapped_column(
        ForeignKey("receipts.id", ondelete="CASCADE"), unique=True
    )
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    inspector: Mapped[str] = mapped_column(String(100))
    accepted_qty: Mapped[int] = mapped_column(Integer)
    rejected_qty: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Escalation(Base):
    """An order handed (wholly or partly) to the fallback supplier."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"), index=True)
    fallback_supplier_id: Mapped[str | None] = mapped_column(
        ForeignKey("suppliers.id"), nullable=True
    )
    bridge_order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    reason: Mapped[str] = mapped_column(String(32))  # ack_deadline | late
    action: Mapped[str] = mapped_column(String(16))  # one of ESCALATION_ACTIONS
    qty: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)


class SupplierEvent(Base):
    """Outbox of webhook events to a supplier (order.cancelled, order.shipped, ...)."""

    __tablename__ = "supplier_events"
    __table_args__ = (
        Index("ix_supplier_events_state_next_attempt_ms", "state", "next_attempt_ms"),
        # an order's last event, which its next one is stamped after (0019)
        Index("ix_supplier_events_order_id_created_ms", "order_id", "created_ms"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"))
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class SupplyAlert(Base):
    """Something a person should look at: unexplained stock increase, escalation, ..."""

    __tablename__ = "supply_alerts"
    __table_args__ = (Index("ix_supply_alerts_kind_at_ms", "kind", "at_ms"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    bin_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    supplier_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)


DISCREPANCY_KINDS = (
    # a refill the scale saw that no open order or dock receipt explains
    "unexplained_increase",
    # the put-away came in below what was received, within the picks-during-put-away allowance:
    # booked as consumption (the line kept picking while the bin was filled)
    "putaway_picks",
    # put-away below what was received beyond that allowance (lost, miscounted, wrong bin)
    "weigh_in_short",
    # put-away above what was received (the dock under-counted)
    "weigh_in_over",
    # a dock receipt the bin's scale never saw put away within the put-away window
    "putaway_not_seen",
    # goods scanned or received against an order that is no longer open
    "closed_order_receipt",
)


class ReceivingDiscrepancy(Base):
    """Units that did not match exactly at receiving: recorded, never left as pending stock."""

    __tablename__ = "receiving_discrepancies"
    __table_args__ = (
        Index("ix_receiving_discrepancies_bin_id_at_ms", "bin_id", "at_ms"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    bin_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    receipt_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    supplier_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # one of DISCREPANCY_KINDS
    qty: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
