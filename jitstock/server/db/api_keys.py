"""Issuing API keys: one place for the API (`POST /api/v1/keys`, supplier keys) and the
shell (`jitstock admin keys`).  The value is shown once; only its hash is stored, and
every key issued is in the audit log."""

from __future__ import annotations

from sqlalchemy.orm import Session

from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey
from jitstock.server.db.secrets import hash_api_key, new_api_key


def issue_api_key(
    session: Session,
    *,
    name: str,
    role: str,
    actor: str,
    now_ms: int,
    supplier_id: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key row (flushed, not committed) and its plain value."""
    plain = new_api_key()
    row = ApiKey(
        name=name,
        key_hash=hash_api_key(plain),
        role=role,
        created_ms=now_ms,
        revoked=False,
        supplier_id=supplier_id,
    )
    session.add(row)
    session.flush()
    detail: dict[str, str] = {"name": row.name, "role": row.role}
    if supplier_id is not None:
        detail["supplier"] = supplier_id
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="key.create",
        entity="api_key",
        entity_id=str(row.id),
        detail=detail,
    )
    return row, plain
