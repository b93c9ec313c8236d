"""SKUs (part numbers): CRUD; a new unit weight recounts the bins that use it."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import bins_changed
from jitstock.server.api.schemas import SkuCreate, SkuPublic, SkuUpdate
from jitstock.server.db.models import Sku

router = APIRouter(prefix="/api/v1/skus", tags=["skus"])


@router.get("")
def list_skus(session: ReadSessionDep, _key: Viewer) -> list[SkuPublic]:
    """Every SKU."""
    return [
        SkuPublic.model_validate(s)
        for s in session.scalars(select(Sku).order_by(Sku.id))
    ]


@router.get("/{sku_id}")
def get_sku(sku_id: str, session: ReadSessionDep, _key: Viewer) -> SkuPublic:
    """One SKU."""
    return SkuPublic.model_validate(catalog.get_or_404(session, Sku, "SKU", sku_id))


@router.post("", status_code=201)
def create_sku(
    body: SkuCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SkuPublic:
    """Add a SKU."""
    row = catalog.create_sku(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    return SkuPublic.model_validate(row)


@router.patch("/{sku_id}")
def update_sku(
    sku_id: str, body: SkuUpdate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SkuPublic:
    """Change a SKU."""
    changes = body.changes()
    made: list[str] = []
    row, changed = catalog.update_sku(
        session, sku_id, changes, key.name, ctx.clock.time_ms(), made
    )
    session.commit()
    if changed and "unit_weight_g" in changes:
        bins_changed(ctx, made)  # bins without their own unit weight use the SKU's
    return SkuPublic.model_validate(row)


@router.delete("/{sku_id}", status_code=204)
def delete_sku(sku_id: str, session: SessionDep, key: Manager, ctx: CtxDep) -> Response:
    """Remove a SKU no bin or order refers to."""
    catalog.delete_sku(session, sku_id, key.name, ctx.clock.time_ms())
    session.commit()
    return Response(status_code=204)
