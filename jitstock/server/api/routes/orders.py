"""Orders: list and detail (with delivery attempts), supplier acknowledgement, goods received."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.order_actions import ack_order, deliver_order
from jitstock.server.api.schemas import (
    AckRequest,
    DeliverRequest,
    OrderDetail,
    OrderPublic,
    OrderState,
)
from jitstock.server.db.models import Order

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])


@router.get("")
def list_orders(
    session: ReadSessionDep,
    _key: Viewer,
    state: Annotated[
        OrderState | None, Query(description="only orders in this state")
    ] = None,
    supplier: Annotated[
        str | None, Query(description="only orders to this supplier")
    ] = None,
    bin: Annotated[str | None, Query(description="only orders for this bin")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderPublic]:
    """Orders, newest first."""
    stmt = select(Order).order_by(Order.created_ms.desc(), Order.id).limit(limit)
    if state is not None:
        stmt = stmt.where(Order.state == state)
    if supplier is not None:
        stmt = stmt.where(Order.supplier_id == supplier)
    if bin is not None:
        stmt = stmt.where(Order.bin_id == bin)
    return [OrderPublic.model_validate(o) for o in session.scalars(stmt)]


def _detail(session: Session, order_id: str) -> OrderDetail:
    order = session.scalars(
        select(Order)
        .where(Order.id == order_id)
        .options(selectinload(Order.attempt_log))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if order is None:
        catalog.get_or_404(session, Order, "order", order_id)
    return OrderDetail.model_validate(order)


@router.get("/{order_id}")
def get_order(order_id: str, session: ReadSessionDep, _key: Viewer) -> OrderDetail:
    """One order with every webhook attempt."""
    return _detail(session, order_id)


@router.post("/{order_id}/ack")
def acknowledge(
    order_id: str, body: AckRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> OrderDetail:
    """The supplier has the order (optionally: when it will deliver); 409 unless created or sent."""
    ack_order(session, order_id, body.promised_ms, key.name, ctx.clock.time_ms())
    session.commit()
    return _detail(session, order_id)


@router.post("/{order_id}/deliver")
def deliver(
    order_id: str, body: DeliverRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> OrderDetail:
    """Goods received: the bin counts qty as pending until its scale confirms; 409 unless the order is open."""
    deliver_order(session, order_id, body.qty, key.name, ctx.clock.time_ms())
    session.commit()
    return _detail(session, order_id)
