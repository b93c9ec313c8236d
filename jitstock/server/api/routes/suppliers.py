"""Suppliers: CRUD; the webhook secret is shown once, on creation or rotation."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.schemas import (
    SupplierCreate,
    SupplierPublic,
    SupplierUpdate,
    SupplierWithSecret,
)
from jitstock.server.db.models import Supplier

router = APIRouter(prefix="/api/v1/suppliers", tags=["suppliers"])


def supplier_public(row: Supplier) -> SupplierPublic:
    """A supplier without its secret."""
    return SupplierPublic(
        id=row.id,
        name=row.name,
        webhook_url=row.webhook_url,
        webhook_secret_set=row.webhook_secret is not None,
        mqtt_orders=row.mqtt_orders,
        ack_deadline_s=row.ack_deadline_s,
        contact=row.contact,
    )


def _with_secret(row: Supplier, secret: str) -> SupplierWithSecret:
    return SupplierWithSecret(
        **supplier_public(row).model_dump(), webhook_secret=secret
    )


@router.get("")
def list_suppliers(session: ReadSessionDep, _key: Viewer) -> list[SupplierPublic]:
    """Every supplier."""
    return [
        supplier_public(s)
        for s in session.scalars(select(Supplier).order_by(Supplier.id))
    ]


@router.get("/{supplier_id}")
def get_supplier(
    supplier_id: str, session: ReadSessionDep, _key: Viewer
) -> SupplierPublic:
    """One supplier."""
    return supplier_public(
        catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    )


@router.post("", status_code=201)
def create_supplier(
    body: SupplierCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SupplierWithSecret:
    """Add a supplier; the response carries its webhook secret (generated unless given), this once."""
    row, secret = catalog.create_supplier(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    return _with_secret(row, secret)


@router.patch("/{supplier_id}")
def update_supplier(
    supplier_id: str,
    body: SupplierUpdate,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> SupplierPublic:
    """Change a supplier (setting webhook_secret replaces the signing secret)."""
    row, _ = catalog.update_supplier(
        session, supplier_id, body.changes(), key.name, ctx.clock.time_ms()
    )
    session.commit()
    return supplier_public(row)


@router.post("/{supplier_id}/rotate-secret")
def rotate_secret(
    supplier_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> SupplierWithSecret:
    """Replace the webhook signing secret with a fresh one, returned this once."""
    row, secret = catalog.rotate_supplier_secret(
        session, supplier_id, key.name, ctx.clock.time_ms()
    )
    session.commit()
    return _with_secret(row, secret)


@router.delete("/{supplier_id}", status_code=204)
def delete_supplier(
    supplier_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove a supplier no bin or order refers to."""
    catalog.delete_supplier(session, supplier_id, key.name, ctx.clock.time_ms())
    session.commit()
    return Response(status_code=204)
