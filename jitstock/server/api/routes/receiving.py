"""Goods arriving at the dock: the receipt (API or label scan) and its quality inspection.

Both need a plant manager; both recheck the bin at once, since a receipt or a rejection
changes what the bin will have on hand.  The router is included by
:mod:`~jitstock.server.api.routes.supplier_loop` between the cancel request and the
order's history, where these routes stood before they moved here, so /openapi.json
keeps its order and its "supplier loop" tag.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from sqlalchemy.exc import IntegrityError

from jitstock.server.api import effects
from jitstock.server.api.deps import CtxDep, Manager, SessionDep
from jitstock.server.api.errors import NotFound, supply_errors
from jitstock.server.api.supplier_schemas import (
    InspectionPublic,
    InspectionRequest,
    ReceiptPublic,
    ReceiveRequest,
)
from jitstock.server.db.supplier_models import Receipt
from jitstock.server.reorder import recheck
from jitstock.server.supplier.receiving import (
    inspect_receipt,
    receive,
    replayed_receipt,
)

# untagged: supplier_loop's router, which includes this one, gives the tag
router = APIRouter()


# what a client may send as Idempotency-Key: visible ASCII (a UUID, a delivery-note number)
IDEMPOTENCY_KEY = r"^[\x21-\x7e]+$"


@router.post(
    "/api/v1/orders/{order_id}/receive",
    status_code=201,
    responses={
        200: {
            "model": ReceiptPublic,
            "description": "A retry: a receipt with this Idempotency-Key was already "
            "recorded for the order; it is returned and nothing is recorded again.",
        }
    },
)
def receive_at_dock(
    order_id: str,
    body: ReceiveRequest,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=IDEMPOTENCY_KEY,
            description="Makes a retry safe: the same key on the same order records "
            "the receipt once (200 with the first receipt); the same key with "
            "another qty or another complete is 422. Without it, every request is a new receipt.",
        ),
    ] = None,
) -> ReceiptPublic:
    """Goods received at the dock (the label scan does the same): pending until the bin's scale confirms."""
    with supply_errors():
        earlier = replayed_receipt(
            session, order_id, idempotency_key, body.qty, body.complete
        )
        if earlier is None:
            try:
                receipt = receive(
                    session,
                    order_id,
                    body.qty,
                    method="api",
                    actor=key.name,
                    now_ms=ctx.clock.time_ms(),
                    complete=body.complete,
                    request_key=idempotency_key,
                )
                recheck(session, [receipt.bin_id], ctx.clock.time_ms(), "dock receipt")
                session.commit()
            except IntegrityError:
                # the same key in a request running beside this one won the insert
                session.rollback()
                earlier = replayed_receipt(
                    session, order_id, idempotency_key, body.qty, body.complete
                )
                if earlier is None:
                    raise
            else:
                effects.supply_changed(ctx, new_orders=True)
                return ReceiptPublic.model_validate(receipt)
    response.status_code = 200
    return ReceiptPublic.model_validate(earlier)


@router.post("/api/v1/receipts/{receipt_id}/inspection", status_code=201)
def inspect(
    receipt_id: int,
    body: InspectionRequest,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> InspectionPublic:
    """Record a quality inspection; rejected units never count as on hand and are re-ordered."""
    if session.get(Receipt, receipt_id) is None:
        raise NotFound("receipt", str(receipt_id))
    with supply_errors():
        row = inspect_receipt(
            session,
            receipt_id,
            body.accepted_qty,
            body.rejected_qty,
            body.reason,
            key.name,
            ctx.clock.time_ms(),
        )
    bin_id = session.get(Receipt, receipt_id).bin_id  # type: ignore[union-attr]
    recheck(session, [bin_id], ctx.clock.time_ms(), "inspection")
    session.commit()
    effects.supply_changed(ctx, new_orders=True)
    return InspectionPublic.model_validate(row)
