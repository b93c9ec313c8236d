"""``GET /api/v1/supplier/orders``: a supplier key's orders, with the filters and paging of
``GET /api/v1/orders`` where they make sense to a supplier (its open orders by default,
newest first; by state, by SKU, changed since a time — in any state unless ``state``
says one; ``limit`` and ``before``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import or_, select

from jitstock.server.api.deps import ReadSessionDep
from jitstock.server.api.routes.orders import newest_first
from jitstock.server.api.schemas import MAX_EPOCH_MS, OrderPublic, OrderState
from jitstock.server.api.supplier_scope import SupplierKey, for_key
from jitstock.server.db.models import OPEN_ORDER_STATES, Order
from jitstock.server.db.supplier_models import Inspection, OrderTransition

router = APIRouter(tags=["supplier loop"])


@router.get("/api/v1/supplier/orders")
def my_orders(
    session: ReadSessionDep,
    key: SupplierKey,
    state: Annotated[
        OrderState | None,
        Query(
            description="only orders in this state (default: every open state, or "
            "with `updated_after` every state)"
        ),
    ] = None,
    sku: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="only orders of this part (the plant's SKU, the order's `sku`)",
        ),
    ] = None,
    updated_after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_EPOCH_MS,
            description="only orders with a change after this time (epoch ms): "
            "created, acknowledged, promise changed, shipped, received, reduced, "
            "cancelled, closed — each a row of `/orders/{id}/transitions` — or a "
            "receipt of it inspected (the `receipt.inspected` webhook); "
            "without `state`, orders in every state (cancelled, closed, failed "
            "included), not only the open ones",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="the id of the last order of the previous page: the next "
            "page starts after it (another supplier's order is 422)",
        ),
    ] = None,
) -> list[OrderPublic]:
    """A supplier key's orders, newest first: its open orders unless `state` or
    `updated_after` says otherwise.

    Page as `GET /orders` does: pass the last id of a page as `before` for the next
    one, until a page is shorter than `limit`; the filters apply to every page. Poll
    for news with `updated_after` set a little before the start of the previous poll
    (say 10 s: a change is stamped when its request starts and visible once it
    commits, milliseconds later, so windows that only touch can miss one; de-duplicate
    by order id and state): without `state` that lists every order changed since,
    whatever its state now (an order cancelled, closed or failed since is news too)."""
    stmt = newest_first(session, limit, before, key.supplier_id)
    if state is None and updated_after is None:
        stmt = stmt.where(Order.state.in_(OPEN_ORDER_STATES))
    elif state is not None:
        stmt = stmt.where(Order.state == state)
    if sku is not None:
        stmt = stmt.where(Order.sku_id == sku)
    if updated_after is not None:
        changed = select(OrderTransition.order_id).where(
            OrderTransition.order_id == Order.id,
            OrderTransition.at_ms > updated_after,
        )
        # an inspection changes no state (no transition) but is news, as its
        # receipt.inspected webhook is
        inspected = select(Inspection.order_id).where(
            Inspection.order_id == Order.id, Inspection.at_ms > updated_after
        )
        stmt = stmt.where(or_(changed.exists(), inspected.exists()))
    return [for_key(OrderPublic.model_validate(o), key) for o in session.scalars(stmt)]
