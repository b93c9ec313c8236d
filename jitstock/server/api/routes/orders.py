"""Orders: list and detail (with delivery attempts), supplier acknowledgement, goods received.

A supplier key reads its own orders without the internal ``trigger`` and
``bridge_for`` (stock figures and other suppliers' order ids): the order's public
reason and needed-by time are in its ``order.created`` webhook.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session, selectinload

from jitstock.server.api import effects
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep
from jitstock.server.api.errors import FieldInvalid, NotFound
from jitstock.server.api.order_actions import ack_order, deliver_order
from jitstock.server.api.schemas import (
    AckRequest,
    DeliverRequest,
    OrderDetail,
    OrderPublic,
    OrderState,
)
from jitstock.server.api.supplier_scope import (
    OrderActor,
    OrderReader,
    for_key,
    scope_of,
)
from jitstock.server.db.models import Order

router = APIRouter(prefix="/api/v1/orders", tags=["orders"])
_Out = TypeVar("_Out", OrderPublic, OrderDetail)

ACK_DESCRIPTION = """\
Acknowledge the order, optionally with `promised_ms` (when it will arrive).

* **created** or **sent**: the order becomes `acknowledged` (the supplier hears
  `order.acknowledged`). Acknowledging is optional: a ship notice straight from
  `sent` is accepted and stands for the acknowledgement.
* **acknowledged**: without `promised_ms`, or with the current one, nothing
  changes (a repeated ack is idempotent, 200). With another `promised_ms` it is a
  **promise change**: the new promise replaces the old one, the state stays, the
  change is audited and the supplier hears `order.promise_changed` (with
  `previous_promised_ms`). A later promise may escalate the order to the next
  supplier when the bin runs out before it.
* any other state: 409. Once shipped it is too late to acknowledge; the ship
  notice's `expected_ms` is the promise from then on.

`promised_ms` before the order's creation is 422.
"""


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
    before: Annotated[
        str | None,
        Query(
            max_length=64,
            description="the id of the last order of the previous page: the next "
            "page starts after it (an order this key cannot see is 422)",
        ),
    ] = None,
) -> list[OrderPublic]:
    """Orders, newest first (a supplier key sees only its own supplier's).

    Page with `limit` and `before`: pass the last id of a page as `before` to get
    the next one, until a page is shorter than `limit`. Orders are ordered by
    creation time, newest first, then by id; the filters apply to every page."""
    stmt = newest_first(session, limit, before, scope_of(key))
    if state is not None:
        stmt = stmt.where(Order.state == state)
    if supplier is not None:
        stmt = stmt.where(Order.supplier_id == supplier)
    if bin is not None:
        stmt = stmt.where(Order.bin_id == bin)
    return [_for_key(OrderPublic.model_validate(o), key) for o in session.scalars(stmt)]


def newest_first(
    session: Session, limit: int, before: str | None, scope: str | None
) -> Select[Order]:
    """One page of orders, newest first, after the order ``before`` (422 when that is no
    order this scope sees); ``scope`` confines it to one supplier's orders."""
    stmt = select(Order).order_by(Order.created_ms.desc(), Order.id).limit(limit)
    if scope is not None:
        stmt = stmt.where(Order.supplier_id == scope)
    if before is None:
        return stmt
    cursor = session.get(Order, before)
    if cursor is None or (scope is not None and cursor.supplier_id != scope):
        raise FieldInvalid("before", f"no order {before!r}", where="query")
    return stmt.where(
        or_(
            Order.created_ms < cursor.created_ms,
            and_(Order.created_ms == cursor.created_ms, Order.id > cursor.id),
        )
    )


def _for_key(out: _Out, key: object) -> _Out:
    """What this key may read of an order (see supplier_scope.for_key)."""
    return for_key(out, key)


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
    return _for_key(_detail(session, order_id, scope_of(key)), key)


@router.post("/{order_id}/ack", description=ACK_DESCRIPTION)
def acknowledge(
    order_id: str, body: AckRequest, session: SessionDep, key: OrderActor, ctx: CtxDep
) -> OrderDetail:
    """Acknowledge an order, or change its promise."""
    scope = scope_of(key)
    ack_order(session, order_id, body.promised_ms, key.name, ctx.clock.time_ms(), scope)
    session.commit()
    effects.supply_changed(ctx)  # its lifecycle events go out now
    return _for_key(_detail(session, order_id, scope), key)


@router.post("/{order_id}/deliver")
def deliver(
    order_id: str, body: DeliverRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> OrderDetail:
    """Goods received: the bin counts qty as pending until its scale confirms; 409 unless the order is open."""
    deliver_order(session, order_id, body.qty, key.name, ctx.clock.time_ms())
    session.commit()
    return _detail(session, order_id)
