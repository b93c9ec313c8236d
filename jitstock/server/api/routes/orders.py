"""Orders: list and detail (with delivery attempts), supplier acknowledgement, goods received."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep
from jitstock.server.api.errors import NotFound
from jitstock.server.api.order_actions import ack_order, deliver_order
from jitstock.server.api.schemas import (
    AckRequest,
    DeliverRequest,
    OrderDetail,
    OrderPublic,
    OrderState,
)
from jitstock.server.api.supplier_scope import (
    SUPPLIER_ROLE,
    OrderActor,
    OrderReader,
    scope_of,
)
from jitstock.server.db.models import Order

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])


@router.get("")
def list_orders(
    session: ReadSessionDep,
    key: OrderReader,
    state: Annotated[
        OrderState | None, Query(description="only orders in this state")
    ] = None,
    supplier: Annotated[
        str | None, Query(description="only orders to this supplier")
    ] = None,
    bin: Annotated[str | None, Query(description="only orders for this bin")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderPublic]:
    """Orders, newest first (a supplier key sees only its own supplier's)."""
    stmt = select(Order).order_by(Order.created_ms.desc(), Order.id).limit(limit)
    if key.role == SUPPLIER_ROLE:
        stmt = stmt.where(Order.supplier_id == key.supplier_id)
    if state is not None:
        stmt = stmt.where(Order.state == state)
    if supplier is not None:
        stmt = stmt.where(Order.supplier_id == supplier)
    if bin is not None:
        stmt = stmt.where(Order.bin_id == bin)
    return [OrderPublic.model_validate(o) for o in session.scalars(stmt)]


def _detail(
    session: Session, order_id: str, supplier_id: str | None = None
) -> OrderDetail:
    stmt = select(Order).where(Order.id == order_id)
    if supplier_id is not None:
        stmt = stmt.where(Order.supplier_id == supplier_id)
    order = session.scalars(
        stmt.options(selectinload(Order.attempt_log)).execution_options(
            populate_existing=True
        )
    ).one_or_none()
    if order is None:
        raise NotFound("order", order_id)
    return OrderDetail.model_validate(order)


@router.get("/{order_id}")
def get_order(order_id: str, session: ReadSessionDep, key: OrderReader) -> OrderDetail:
    """One order with every webhook attempt (404 for another supplier's order)."""
    return _detail(session, order_id, scope_of(key))


@router.post("/{order_id}/ack")
def acknowledge(
    order_id: str, body: AckRequest, session: SessionDep, key: OrderActor, ctx: CtxDep
) -> OrderDetail:
    """The supplier has the order (optionally: when it will deliver); 409 unless created or sent."""
    scope = scope_of(key)
    ack_order(session, order_id, body.promised_ms, key.name, ctx.clock.time_ms(), scope)
    session.commit()
    return _detail(session, order_id, scope)


@router.post("/{order_id}/deliver")
def deliver(
    order_id: str, body: DeliverRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> OrderDetail:
    """Goods received: the bin counts qty as pending until its scale confirms; 409 unless the order is open."""
    deliver_order(session, order_id, body.qty, key.name, ctx.clock.time_ms())
    session.commit()
    return _detail(session, order_id)
