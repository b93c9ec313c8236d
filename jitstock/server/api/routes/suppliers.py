"""Suppliers: CRUD; the webhook secret is shown once, on creation or rotation.

Webhook URLs may carry credentials (user:password, ``?token=``): only admin keys
see them whole, every other caller sees them redacted.  A PATCH that sends back
the redacted form of the current URL leaves the URL alone.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.auth import Principal
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.errors import FieldInvalid
from jitstock.server.api.schemas import (
    SupplierCreate,
    SupplierPublic,
    SupplierUpdate,
    SupplierWithSecret,
)
from jitstock.server.db.models import Supplier
from jitstock.server.redact import REDACTED_URL_REFUSED, foreign_redacted, redact_url

router = APIRouter(prefix="/api/v1/suppliers", tags=["suppliers"])


def shown_url(url: str | None, key: Principal) -> str | None:
    """The webhook URL as ``key`` may see it: whole for admins, redacted for the rest."""
    if url is None or key.allows("admin"):
        return url
    return redact_url(url)


def supplier_public(row: Supplier, key: Principal) -> SupplierPublic:
    """A supplier without its secret (and without URL credentials unless key is admin)."""
    return SupplierPublic(
        id=row.id,
        name=row.name,
        webhook_url=shown_url(row.webhook_url, key),
        webhook_secret_set=row.webhook_secret is not None,
        mqtt_orders=row.mqtt_orders,
        ack_deadline_s=row.ack_deadline_s,
        contact=row.contact,
        email=row.email,
        order_channel=row.order_channel,
    )


def _with_secret(row: Supplier, secret: str, key: Principal) -> SupplierWithSecret:
    return SupplierWithSecret(
        **supplier_public(row, key).model_dump(), webhook_secret=secret
    )


def _refuse_redacted(url: str | None, current: str | None) -> None:
    """A URL as a non-admin key is shown it (login, query values, fragment masked) is a
    copy of a redacted answer, never an address: stored, every order would go nowhere."""
    if foreign_redacted(url, current):
        raise FieldInvalid("webhook_url", REDACTED_URL_REFUSED)


@router.get("")
def list_suppliers(session: ReadSessionDep, key: Viewer) -> list[SupplierPublic]:
    """Every supplier."""
    return [
        supplier_public(s, key)
        for s in session.scalars(select(Supplier).order_by(Supplier.id))
    ]


@router.get("/{supplier_id}")
def get_supplier(
    supplier_id: str, session: ReadSessionDep, key: Viewer
) -> SupplierPublic:
    """One supplier."""
    return supplier_public(
        catalog.get_or_404(session, Supplier, "supplier", supplier_id), key
    )


@router.post("", status_code=201)
def create_supplier(
    body: SupplierCreate, session: SessionDep, key: Manager, ctx: CtxDep
) -> SupplierWithSecret:
    """Add a supplier; the response carries its webhook secret (generated unless given), this once."""
    _refuse_redacted(body.webhook_url, None)
    row, secret = catalog.create_supplier(session, body, key.name, ctx.clock.time_ms())
    session.commit()
    return _with_secret(row, secret, key)


@router.patch("/{supplier_id}")
def update_supplier(
    supplier_id: str,
    body: SupplierUpdate,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> SupplierPublic:
    """Change a supplier (setting webhook_secret replaces the signing secret)."""
    changes = body.changes()
    current = catalog.get_or_404(session, Supplier, "supplier", supplier_id)
    if (
        changes.get("webhook_url") is not None
        and current.webhook_url is not None
        and changes["webhook_url"] == shown_url(current.webhook_url, key)
        and changes["webhook_url"] != current.webhook_url
    ):
        del changes["webhook_url"]  # the redacted URL sent back unchanged
    _refuse_redacted(changes.get("webhook_url"), current.webhook_url)
    channel = changes.get("order_channel", current.order_channel)
    if channel == "email" and not changes.get("email", current.email):
        raise FieldInvalid("email", "order_channel 'email' needs an email address")
    row, _ = catalog.update_supplier(
        session, supplier_id, changes, key.name, ctx.clock.time_ms()
    )
    session.commit()
    return supplier_public(row, key)


@router.post("/{supplier_id}/rotate-secret")
def rotate_secret(
    supplier_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> SupplierWithSecret:
    """Issue a fresh webhook signing secret, returned this once.

    For 24 hours (``catalog.SECRET_ROTATION_GRACE_MS``) every webhook carries two
    signatures, with the new and with the previous secret, so the supplier can
    switch at any time in that window without missing a delivery; after it, only
    the new secret signs.  Rotating again inside the window drops the older one.
    """
    row, secret = catalog.rotate_supplier_secret(
        session, supplier_id, key.name, ctx.clock.time_ms()
    )
    session.commit()
    return _with_secret(row, secret, key)


@router.delete("/{supplier_id}", status_code=204)
def delete_supplier(
    supplier_id: str, session: SessionDep, key: Manager, ctx: CtxDep
) -> Response:
    """Remove a supplier no bin or order refers to.

    409 while a bin or an order refers to it, or while it has a live (unrevoked)
    API key: revoke its keys first (`DELETE /keys/{key_id}`). Revoked keys do not
    block the delete; they stay listed by `GET /keys`, bound to no supplier."""
    catalog.delete_supplier(session, supplier_id, key.name, ctx.clock.time_ms())
    session.commit()
    return Response(status_code=204)
