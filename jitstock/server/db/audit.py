"""Audit log rows, written inside the transaction of the change they describe."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from jitstock.server.db.models import AuditLog


def record_audit(
    session: Session,
    *,
    at_ms: int,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    detail: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit row to the session (committed or rolled back with the change)."""
    row = AuditLog(
        at_ms=at_ms,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=entity_id,
        detail=detail,
    )
    session.add(row)
    return row
