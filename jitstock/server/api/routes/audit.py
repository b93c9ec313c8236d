"""The audit log: who changed what, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from jitstock.server.api.deps import Manager, ReadSessionDep
from jitstock.server.api.schemas import AuditPublic
from jitstock.server.db.models import AuditLog

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
def list_audit(
    session: ReadSessionDep,
    _key: Manager,
    entity: Annotated[
        str | None, Query(description="site, sku, supplier, bin, order, api_key")
    ] = None,
    entity_id: Annotated[str | None, Query()] = None,
    actor: Annotated[str | None, Query(description="key name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditPublic]:
    """Audit rows, newest first."""
    stmt = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if entity is not None:
        stmt = stmt.where(AuditLog.entity == entity)
    if entity_id is not None:
        stmt = stmt.where(AuditLog.entity_id == entity_id)
    if actor is not None:
        stmt = stmt.where(AuditLog.actor == actor)
    return [AuditPublic.model_validate(a) for a in session.scalars(stmt)]
