"""API keys: who is calling and what their role allows (no HTTP here; deps.py translates)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import API_ROLES, ApiKey
from jitstock.server.db.secrets import hash_api_key
from jitstock.server.db.session import SessionFactory, transaction

log = logging.getLogger(__name__)

# Higher rank includes every lower one: an admin may do what a manager may.
ROLE_RANK = {role: rank for rank, role in enumerate(API_ROLES)}
ANONYMOUS = "anonymous"
BOOTSTRAP_KEY_NAME = "bootstrap-admin"
# A key shorter than this is probably typed by a human, too guessable for a fast hash.
MIN_BOOTSTRAP_KEY_LEN = 32


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: key name (the audit actor), role, key id (None when auth is off).

    A ``supplier`` key is bound to one supplier (``supplier_id``) and ranks
    outside viewer < manager < admin: it reaches only the supplier-scoped routes.
    """

    name: str
    role: str
    key_id: int | None = None
    supplier_id: str | None = None
    # A session key (dashboard sign-in) ends at this instant; machine keys have none.
    expires_ms: int | None = None
    # The dashboard user behind a sign-in key, None for API keys and their sessions.
    username: str | None = None

    def allows(self, role: str) -> bool:
        """Whether this caller's role includes ``role``."""
        mine = ROLE_RANK.get(self.role)
        return mine is not None and mine >= ROLE_RANK[role]


ANONYMOUS_ADMIN = Principal(ANONYMOUS, "admin")


def principal_for_key(session: Session, key: str, now_ms: int) -> Principal | None:
    """The caller owning an API key, or None for an unknown, revoked or expired key."""
    row = session.scalars(
        select(ApiKey).where(ApiKey.key_hash == hash_api_key(key))
    ).one_or_none()
    if row is None or not key_is_live(row, now_ms):
        return None
    return Principal(
        row.name, row.role, row.id, row.supplier_id, row.expires_ms, row.username
    )


def key_is_live(row: ApiKey, now_ms: int) -> bool:
    """Whether a key row still admits its holder (not revoked, not expired)."""
    return not row.revoked and (row.expires_ms is None or now_ms < row.expires_ms)


def ensure_bootstrap_key(
    session_factory: SessionFactory, key: str | None, now_ms: int
) -> bool:
    """Insert the configured bootstrap admin key (hashed) unless present; True if inserted.

    A bootstrap key an admin has since revoked stays revoked: the setting only seeds.
    """
    if not key:
        return False
    if len(key) < MIN_BOOTSTRAP_KEY_LEN:
        # Keys are hashed with plain SHA-256, which is only safe for high-entropy keys.
        log.warning(
            "bootstrap admin key is short (%d chars); use 32+ random characters",
            len(key),
        )
    digest = hash_api_key(key)
    with transaction(session_factory) as s:
        if (
            s.scalars(select(ApiKey.id).where(ApiKey.key_hash == digest)).first()
            is not None
        ):
            return False
        row = ApiKey(
            name=BOOTSTRAP_KEY_NAME,
            key_hash=digest,
            role="admin",
            created_ms=now_ms,
            revoked=False,
        )
        s.add(row)
        s.flush()
        record_audit(
            s,
            at_ms=now_ms,
            actor="system",
            action="key.bootstrap",
            entity="api_key",
            entity_id=str(row.id),
            detail={"name": row.name, "role": row.role},
        )
    log.info("bootstrap admin key installed")
    return True
