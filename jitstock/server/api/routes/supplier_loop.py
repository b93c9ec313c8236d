"""Supplier loop API: ship notices, cancel requests, order history and labels; supplier
items, settings and keys; scorecards, alerts, escalations.  Dock receipts and
inspections are in :mod:`~jitstock.server.api.routes.receiving`, included here.

Supplier keys reach the order routes for their own supplier's orders only
(another supplier's order is 404); everything else needs a plant role.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.api import catalog, effects
from jitstock.server.api.deps import (
    Admin,
    CtxDep,
    Manager,
    ReadSessionDep,
    SessionDep,
    Viewer,
)
from jitstock.server.api.errors import (
    Conflict,
    FieldInvalid,
    NotFound,
    supply_errors,
)
from jitstock.server.api.routes import receiving
from jitstock.server.api.schemas import OrderPublic
from jitstock.server.api.supplier_schemas import (
    CancelRequest,
    DiscrepancyPublic,
    EscalationPublic,
    ReceiptPublic,
    ScorecardPublic,
    ShipRequest,
    SupplierItemIn,
    SupplierItemPublic,
    SupplierKeyCreate,
    SupplierKeyCreated,
    SupplierLoopSettings,
    SupplyAlertPublic,
    TransitionPublic,
)
from jitstock.server.api.supplier_scope import (
    SUPPLIER_ROLE,
    OrderActor,
    OrderReader,
    for_key,
    own_actors,
    public_actor,
    scope_of,
)
from jitstock.server.api.users import issue_api_key, key_name_problem
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import OPEN_ORDER_STATES, Sku, Supplier
from jitstock.server.db.supplier_models import (
    Escalation,
    OrderTransition,
    Receipt,
    ReceivingDiscrepancy,
    SupplierItem,
    SupplyAlert,
)
from jitstock.server.reorder import SUPPLIER_CANCEL_PREFIX, recheck
from jitstock.server.supplier.discrepancies import raise_alert
from jitstock.server.supplier.labels import label_png, label_svg
from jitstock.server.supplier.lifecycle import (
    load_order,
    public_transition,
    transition,
)
from jitstock.server.supplier.scorecard import (
    DEFAULT_PERIOD,
    period_ms,
    scorecard,
    scorecard_csv,
)
from jitstock.server.supplier.shipping import ship_order

router = APIRouter(tags=["supplier loop"])
# A supplier may withdraw an order only before it ships; the plant may cancel any open order.
SUPPLIER_CANCELLABLE = frozenset({"created", "sent", "acknowledged"})


def _order_out(session: Session, order_id: str, key: object) -> OrderPublic:
    return for_key(OrderPublic.model_validate(load_order(session, order_id)), key)


# ---------------------------------------------------------------- order actions


@router.post("/api/v1/orders/{order_id}/ship")
def ship(
    order_id: str, body: ShipRequest, session: SessionDep, key: OrderActor, ctx: CtxDep
) -> OrderPublic:
    """Advance ship notice: the goods are on their way (quantity, carrier reference).

    Allowed from created, sent or acknowledged: acknowledging first is optional, a
    ship notice without one stands for it (the order's ``acked_ms`` stays empty).
    The same notice again while the order is shipped (a retry whose answer was
    lost: the same quantity — an omitted `qty` means what is outstanding — the same
    `carrier_ref`, and the same or no `expected_ms`) changes nothing (200). A
    different one once shipped is 409, its `detail` naming the notice on record
    ("already shipped with another notice (qty …, carrier_ref …, expected_ms …)");
    once goods are received (in part or in full) or the order is over, any notice is
    409. `qty` beyond what
    is outstanding plus the tolerance (max(2, 10 %)) is 422.
    """
    with supply_errors():
        ship_order(
            session,
            order_id,
            qty=body.qty,
            expected_ms=body.expected_ms,
            carrier_ref=body.carrier_ref,
            actor=key.name,
            now_ms=ctx.clock.time_ms(),
            supplier_id=scope_of(key),
        )
    session.commit()
    effects.supply_changed(ctx)
    return _order_out(session, order_id, key)


@router.post("/api/v1/orders/{order_id}/cancel-request")
def cancel_request(
    order_id: str,
    body: CancelRequest,
    session: SessionDep,
    key: OrderActor,
    ctx: CtxDep,
) -> OrderPublic:
    """Cancel an order: a supplier before it ships, the plant while it is open."""
    scope = scope_of(key)
    now = ctx.clock.time_ms()
    values: dict[str, Any] = {"next_attempt_ms": None}
    if scope is not None:
        # a supplier's refusal: the reorder rule skips this supplier for the bin a while
        values["last_error"] = f"{SUPPLIER_CANCEL_PREFIX}: {body.reason}"
    with supply_errors():
        order = transition(
            session,
            order_id,
            "cancelled",
            actor=key.name,
            now_ms=now,
            reason=body.reason,
            values=values,
            supplier_id=scope,
            allowed_from=SUPPLIER_CANCELLABLE
            if scope is not None
            else frozenset(OPEN_ORDER_STATES),
        )
    # the demand moves on at once: to the next supplier after a supplier's cancel, or
    # (after the plant's cancel) to whoever the rule picks if the bin is still low
    created = recheck(session, [order.bin_id], now, f"order {order_id} cancelled")
    if scope is not None:
        raise_alert(
            session,
            "order_cancelled_by_supplier",
            now,
            bin_id=order.bin_id,
            order_id=order.id,
            supplier_id=order.supplier_id,
            detail={
                "reason": body.reason,
                "fallback_order": created[0] if created else None,
            },
        )
    session.commit()
    effects.supply_changed(ctx, new_orders=bool(created))
    return _order_out(session, order_id, key)


# the dock's routes (receiving.py) stand here, after the cancel request, as they did before
# they moved: /openapi.json keeps its order of paths
router.include_router(receiving.router)


@router.get("/api/v1/orders/{order_id}/transitions")
def transitions(
    order_id: str, session: ReadSessionDep, key: OrderReader
) -> list[TransitionPublic]:
    """Every state change of an order: who, when, why."""
    scope = scope_of(key)
    with supply_errors():
        load_order(session, order_id, scope)
    rows = session.scalars(
        select(OrderTransition)
        .where(OrderTransition.order_id == order_id)
        .order_by(OrderTransition.id)
    )
    out = [TransitionPublic.model_validate(r) for r in rows]
    if scope is None:
        return out
    # a supplier key: an escalation names no other supplier, shows no plant figures,
    # and a plant person is "plant"
    own = own_actors(session, scope)
    for t in out:
        t.reason, t.detail = public_transition(t.actor, t.reason, t.detail)
        t.actor = public_actor(t.actor, own)
    return out


@router.get("/api/v1/orders/{order_id}/receipts")
def receipts(
    order_id: str, session: ReadSessionDep, key: OrderReader
) -> list[ReceiptPublic]:
    """Receipts of an order (to a supplier key, who received them is ``plant``)."""
    scope = scope_of(key)
    with supply_errors():
        load_order(session, order_id, scope)
    rows = session.scalars(
        select(Receipt).where(Receipt.order_id == order_id).order_by(Receipt.id)
    )
    out = [ReceiptPublic.model_validate(r) for r in rows]
    if scope is not None:
        own = own_actors(session, scope)
        for r in out:
            r.actor = public_actor(r.actor, own)
    return out


@router.get("/api/v1/orders/{order_id}/label.svg", response_class=Response)
def label(order_id: str, session: ReadSessionDep, key: OrderReader) -> Response:
    """A printable label: a QR code of `JSORD:<order id>` (scanned at the dock to
    receive the order) and, under it, the order id, SKU, quantity and bin in words.

    Suppliers printing their own labels encode the same text in any barcode the dock
    scanner reads (e.g. Code 128)."""
    with supply_errors():
        order = load_order(session, order_id, scope_of(key))
    caption = [
        f"SKU {order.sku_id}",
        f"Qty {order.asn_qty or order.qty}",
        f"Bin {order.bin_id}",
    ]
    return Response(label_svg(order_id, caption), media_type="image/svg+xml")


@router.get("/api/v1/orders/{order_id}/label.png", response_class=Response)
def label_as_png(order_id: str, session: ReadSessionDep, key: OrderReader) -> Response:
    """The order's QR label as PNG."""
    with supply_errors():
        load_order(session, order_id, scope_of(key))
    return Response(label_png(order_id), media_type="image/png")


# ---------------------------------------------------------------- supplier master data


def _item_out(row: SupplierItem) -> SupplierItemPublic:
    return SupplierItemPublic.model_validate(row)


@router.get("/api/v1/suppliers/{supplier_id}/items")
def list_items(
    supplier_id: str, session: ReadSessionDep, _key: Viewer
) -> list[SupplierItemPublic]:
    """A supplier's items (its offers per SKU)."""
    catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    rows = session.scalars(
        select(SupplierItem)
        .where(SupplierItem.supplier_id == supplier_id)
        .order_by(SupplierItem.sku_id)
    )
    return [_item_out(r) for r in rows]


@router.put("/api/v1/suppliers/{supplier_id}/items")
def put_item(
    supplier_id: str,
    body: SupplierItemIn,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> SupplierItemPublic:
    """Create or replace a supplier's offer for a SKU."""
    catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    if session.get(Sku, body.sku_id) is None:
        raise FieldInvalid("sku_id", f"SKU {body.sku_id!r} does not exist")
    row = session.scalars(
        select(SupplierItem).where(
            SupplierItem.supplier_id == supplier_id,
            SupplierItem.sku_id == body.sku_id,
        )
    ).one_or_none()
    if row is None:
        row = SupplierItem(supplier_id=supplier_id, sku_id=body.sku_id)
        session.add(row)
    for field, value in body.model_dump(exclude={"sku_id"}).items():
        setattr(row, field, value)
    record_audit(
        session,
        at_ms=ctx.clock.time_ms(),
        actor=key.name,
        action="supplier_item.put",
        entity="supplier",
        entity_id=supplier_id,
        detail=body.model_dump(),
    )
    created: list[str] = []
    if row.active:  # a SKU that had no active supplier may have bins waiting
        made = catalog.reconsider_sku_bins(
            session,
            body.sku_id,
            "supplier item switched on",
            key.name,
            ctx.clock.time_ms(),
        )
        created = [o.id for o in made]
    session.commit()
    if created:
        effects.bins_changed(ctx, created)
    return _item_out(row)


@router.delete("/api/v1/suppliers/{supplier_id}/items/{sku_id}", status_code=204)
def delete_item(
    supplier_id: str, sku_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove a supplier's offer for a SKU."""
    row = session.scalars(
        select(SupplierItem).where(
            SupplierItem.supplier_id == supplier_id, SupplierItem.sku_id == sku_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound("supplier item", f"{supplier_id}/{sku_id}")
    session.delete(row)
    record_audit(
        session,
        at_ms=ctx.clock.time_ms(),
        actor=key.name,
        action="supplier_item.delete",
        entity="supplier",
        entity_id=supplier_id,
        detail={"sku_id": sku_id},
    )
    session.commit()
    return Response(status_code=204)


@router.patch("/api/v1/suppliers/{supplier_id}/loop-settings")
def loop_settings(
    supplier_id: str,
    body: SupplierLoopSettings,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> dict[str, Any]:
    """Acknowledgement deadline, escalation on/off, inspection sampling of one supplier."""
    row = catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("inspect_every_n") == 0:
        changes["inspect_every_n"] = None
    for field, value in changes.items():
        setattr(row, field, value)
    record_audit(
        session,
        at_ms=ctx.clock.time_ms(),
        actor=key.name,
        action="supplier.loop_settings",
        entity="supplier",
        entity_id=supplier_id,
        detail=changes,
    )
    session.commit()
    return {
        "ack_deadline_s": row.ack_deadline_s,
        "escalation_enabled": row.escalation_enabled,
        "inspect_every_n": row.inspect_every_n,
    }


@router.post(
    "/api/v1/suppliers/{supplier_id}/keys",
    status_code=201,
    responses={409: {"description": "the name is reserved or another party's"}},
)
def create_supplier_key(
    supplier_id: str,
    body: SupplierKeyCreate,
    session: SessionDep,
    key: Admin,
    ctx: CtxDep,
) -> SupplierKeyCreated:
    """Issue an API key bound to one supplier (role 'supplier'); shown this once."""
    catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    problem = key_name_problem(session, body.name, supplier_id)
    if problem is not None:
        raise Conflict(problem, field="name")
    row, plain = issue_api_key(
        session,
        name=body.name,
        role=SUPPLIER_ROLE,
        actor=key.name,
        now_ms=ctx.clock.time_ms(),
        supplier_id=supplier_id,
    )
    session.commit()
    return SupplierKeyCreated(
        id=row.id, name=row.name, role=row.role, supplier_id=supplier_id, key=plain
    )


# ---------------------------------------------------------------- scorecards and alerts


def _card_window(
    session: Session, supplier_id: str, key: Any, period: str, now_ms: int
) -> tuple[int, int]:
    if key.role == SUPPLIER_ROLE and key.supplier_id != supplier_id:
        raise NotFound("supplier", supplier_id)
    if key.role != SUPPLIER_ROLE and not key.allows("viewer"):
        raise NotFound("supplier", supplier_id)
    catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    try:
        length = period_ms(period)
    except ValueError as exc:
        raise FieldInvalid("period", str(exc), where="query") from exc
    return now_ms - length, now_ms + 1


Period = Annotated[
    str, Query(description="how far back: 24h, 30d, 4w (orders created in it)")
]


@router.get("/api/v1/suppliers/{supplier_id}/scorecard")
def get_scorecard(
    supplier_id: str,
    session: ReadSessionDep,
    key: OrderReader,
    ctx: CtxDep,
    period: Period = DEFAULT_PERIOD,
) -> ScorecardPublic:
    """On-time rate, lead time vs quoted, ack time, fill accuracy, quality, escalations."""
    start, end = _card_window(session, supplier_id, key, period, ctx.clock.time_ms())
    card = scorecard(session, supplier_id, start, end)
    return ScorecardPublic(period=period, **asdict(card))


@router.get("/api/v1/suppliers/{supplier_id}/scorecard.csv", response_class=Response)
def get_scorecard_csv(
    supplier_id: str,
    session: ReadSessionDep,
    key: OrderReader,
    ctx: CtxDep,
    period: Period = DEFAULT_PERIOD,
) -> Response:
    """The scorecard as CSV (header + one row)."""
    start, end = _card_window(session, supplier_id, key, period, ctx.clock.time_ms())
    body = scorecard_csv([scorecard(session, supplier_id, start, end)])
    return Response(
        body,
        media_type="text/csv",
        headers={
            "content-disposition": f'attachment; filename="scorecard-{supplier_id}.csv"'
        },
    )


@router.get("/api/v1/supply-alerts")
def supply_alerts(
    session: ReadSessionDep,
    _key: Viewer,
    kind: str | None = None,
    bin: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[SupplyAlertPublic]:
    """Alerts of the supplier loop (unexplained stock increase, escalation, ...), newest first."""
    stmt = select(SupplyAlert).order_by(SupplyAlert.id.desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(SupplyAlert.kind == kind)
    if bin is not None:
        stmt = stmt.where(SupplyAlert.bin_id == bin)
    return [SupplyAlertPublic.model_validate(a) for a in session.scalars(stmt)]


@router.get("/api/v1/receiving-discrepancies")
def receiving_discrepancies(
    session: ReadSessionDep,
    _key: Viewer,
    bin: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DiscrepancyPublic]:
    """What did not match exactly at receiving (picks during put-away, short or over
    weigh-ins, put-aways never seen, unexplained increases), newest first."""
    stmt = (
        select(ReceivingDiscrepancy)
        .order_by(ReceivingDiscrepancy.id.desc())
        .limit(limit)
    )
    if bin is not None:
        stmt = stmt.where(ReceivingDiscrepancy.bin_id == bin)
    if kind is not None:
        stmt = stmt.where(ReceivingDiscrepancy.kind == kind)
    return [DiscrepancyPublic.model_validate(d) for d in session.scalars(stmt)]


@router.get("/api/v1/escalations")
def escalations(
    session: ReadSessionDep,
    _key: Viewer,
    supplier: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EscalationPublic]:
    """Escalations to fallback suppliers, newest first."""
    stmt = select(Escalation).order_by(Escalation.id.desc()).limit(limit)
    if supplier is not None:
        stmt = stmt.where(Escalation.supplier_id == supplier)
    return [EscalationPublic.model_validate(e) for e in session.scalars(stmt)]
