"""Bins: CRUD of their configuration (the live level is ingest's, read-only here)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import bins_changed
from jitstock.server.api.schemas import BinCreate, BinPublic, BinUpdate
from jitstock.server.db.models import Bin

router = APIRouter(prefix="/api/v1/bins", tags=["bins"])


@router.get("")
def list_bins(
    session: ReadSessionDep,
    _key: Viewer,
    site: Annotated[str | None, Query(description="only bins of this site")] = None,
    sku: Annotated[str | None, Query(description="only bins of this SKU")] = None,
    supplier: Annotated[
        str | None, Query(description="only bins ordering from this supplier")
    ] = None,
) -> list[BinPublic]:
    """Every bin, optionally filtered."""
    stmt = select(Bin).order_by(Bin.id)
    if site is not None:
        stmt = stmt.where(Bin.site_id == site)
    if sku is not None:
        stmt = stmt.where(Bin.sku_id == sku)
    if supplier is not None:
        stmt = stmt.where(Bin.supplier_id == supplier)
    return [BinPublic.model_validate(b) for b in session.scalars(stmt)]


@router.get("/{bin_id}")
def get_bin(bin_id: str, session: ReadSessionDep, _key: Viewer) -> BinPublic:
    """One bin."""
    return BinPublic.model_validate(catalog.get_or_404(session, Bin, "bin", bin_id))


@router.post("", status_code=201)
def create_bin(
    body: BinCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> BinPublic:
    """Add a bin; site, SKU and supplier must exist, and an agent_id not seen before is registered."""
    row = catalog.create_bin(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    bins_changed(ctx, [])
    return BinPublic.model_validate(row)


@router.patch("/{bin_id}")
def update_bin(
    bin_id: str, body: BinUpdate, session: SessionDep, key: Manager, ctx: CtxDep
) -> BinPublic:
    """Change a bin; a recalibration recounts it, and a change of its reorder inputs may order at once."""
    row, changed, order = catalog.update_bin(
        session, bin_id, body.changes(), key.name, ctx.clock.time_ms()
    )
    session.commit()
    if changed:
        bins_changed(ctx, [order.id] if order is not None else [])
    return BinPublic.model_validate(row)


@router.delete("/{bin_id}", status_code=204)
def delete_bin(bin_id: str, session: SessionDep, key: Manager, ctx: CtxDep) -> Response:
    """Remove a bin that never ordered (pause it otherwise)."""
    catalog.delete_bin(session, bin_id, key.name, ctx.clock.time_ms())
    session.commit()
    bins_changed(ctx, [])
    return Response(status_code=204)
