"""Accounts: API keys (issued hashed and audited, revoked with their sessions), dashboard
users with scrypt password hashes, sign-in that mints an expiring session key, and the
user changes that end sessions (no HTTP here; routes and `jitstock admin` translate).

A sign-in issues an ordinary API key (named ``login:<user>``, the user's role,
``username`` set, ``expires_ms`` set), so every route's role check works
unchanged.  A browser opened with an API key gets a child key (``session:<key
name>``, ``parent_id`` set) so the machine key itself never sits in a cookie.
Signing out, disabling or deleting the user, changing the user's role or
password, and revoking the parent key all revoke these session keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from jitstock.server.db.alert_models import DashboardUser
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey
from jitstock.server.db.secrets import hash_api_key, new_api_key

# scrypt cost: ~50 ms and 16 MiB per check here — slow for guessing, fine for a sign-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
LOGIN_KEY_PREFIX = "login:"
SESSION_KEY_PREFIX = "session:"
# New passwords: short ones fall to the few guesses the throttle still allows.
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 500


@dataclass(frozen=True, slots=True)
class IssuedSession:
    """A fresh session key (plain value shown once) and what it admits."""

    key: str
    key_id: int
    name: str
    role: str
    expires_ms: int


def hash_password(password: str) -> str:
    """A self-describing scrypt hash: scrypt$n$r$p$salt$hash (hex)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether a password matches a stored scrypt hash (constant-time compare)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def verify_user(session: Session, username: str, password: str) -> DashboardUser | None:
    """The enabled user with this name and password, or None (same cost whichever is wrong)."""
    user = session.get(DashboardUser, username)
    if user is None:
        hash_password(password)  # same cost either way: do not reveal which names exist
        return None
    if not check_password(password, user.password_hash) or user.disabled:
        return None
    return user


def issue_session_key(
    session: Session,
    *,
    name: str,
    role: str,
    now_ms: int,
    ttl_ms: int,
    username: str | None = None,
    parent_id: int | None = None,
    supplier_id: str | None = None,
) -> IssuedSession:
    """Store a new expiring key (hashed) and return its plain value."""
    plain = new_api_key()
    row = ApiKey(
        name=name,
        key_hash=hash_api_key(plain),
        role=role,
        created_ms=now_ms,
        revoked=False,
        expires_ms=now_ms + ttl_ms,
        username=username,
        parent_id=parent_id,
        supplier_id=supplier_id,
    )
    session.add(row)
    session.flush()
    return IssuedSession(plain, row.id, row.name, row.role, now_ms + ttl_ms)


def sign_in(
    session: Session, username: str, password: str, now_ms: int, ttl_ms: int
) -> IssuedSession | None:
    """A fresh session key for a right name and password of an enabled user, else None."""
    user = verify_user(session, username, password)
    if user is None:
        return None
    issued = issue_session_key(
        session,
        name=LOGIN_KEY_PREFIX + user.username,
        role=user.role,
        now_ms=now_ms,
        ttl_ms=ttl_ms,
        username=user.username,
    )
    record_audit(
        session,
        at_ms=now_ms,
        actor=user.username,
        action="user.login",
        entity="api_key",
        entity_id=str(issued.key_id),
        detail={"role": user.role, "expires_ms": issued.expires_ms},
    )
    return issued


def revoke_sessions(
    session: Session,
    *,
    username: str | None = None,
    parent_id: int | None = None,
    keep_id: int | None = None,
) -> list[int]:
    """Revoke every live session key of a user and/or opened with a parent key; their ids."""
    conds = []
    if username is not None:
        conds.append(ApiKey.username == username)
    if parent_id is not None:
        conds.append(ApiKey.parent_id == parent_id)
    if not conds:
        return []
    stmt = select(ApiKey).where(or_(*conds), ApiKey.revoked.is_(False))
    revoked = []
    for row in session.scalars(stmt):
        if row.id != keep_id:
            row.revoked = True
            revoked.append(row.id)
    return revoked


def set_password(
    session: Session,
    user: DashboardUser,
    password: str,
    *,
    now_ms: int,
    actor: str,
    keep_key_id: int | None = None,
) -> list[int]:
    """Store a new password and end the user's sessions (except ``keep_key_id``); revoked ids."""
    user.password_hash = hash_password(password)
    user.password_changed_ms = now_ms
    revoked = revoke_sessions(session, username=user.username, keep_id=keep_key_id)
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="user.password",
        entity="dashboard_user",
        entity_id=user.username,
        detail={"sessions_revoked": len(revoked)},
    )
    return revoked


def update_user(
    session: Session,
    user: DashboardUser,
    *,
    now_ms: int,
    actor: str,
    disabled: bool | None = None,
    role: str | None = None,
) -> list[int]:
    """Disable/enable a user or change their role; either ends their sessions. Revoked ids."""
    changes: dict[str, object] = {}
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        changes["disabled"] = disabled
    if role is not None and role != user.role:
        changes["role"] = {"from": user.role, "to": role}
        user.role = role
    if not changes:
        return []
    # a session key carries the role it was issued with: a changed user signs in again
    revoked = revoke_sessions(session, username=user.username)
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="user.update",
        entity="dashboard_user",
        entity_id=user.username,
        detail={**changes, "sessions_revoked": len(revoked)},
    )
    return revoked


def delete_user(
    session: Session, user: DashboardUser, *, now_ms: int, actor: str
) -> list[int]:
    """Delete a user; their session keys are revoked (rows kept for the audit trail)."""
    revoked = revoke_sessions(session, username=user.username)
    session.delete(user)
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="user.delete",
        entity="dashboard_user",
        entity_id=user.username,
        detail={"role": user.role, "sessions_revoked": len(revoked)},
    )
    return revoked


# Names the plant's software records its actions under, and the prefixes of actors it
# makes (sign-in and browser sessions, e-mail links, dock scanners): a supplier reads an
# action's actor by name (jitstock.server.api.supplier_scope), so no key may take one.
RESERVED_ACTOR_NAMES = frozenset(
    {"dispatcher", "reorder", "escalation", "scale", "replenish", "plant", "system"}
)
RESERVED_ACTOR_PREFIXES = (
    SESSION_KEY_PREFIX,
    LOGIN_KEY_PREFIX,
    "email-link:",
    "scanner:",
    "shell:",
)


def key_name_problem(
    session: Session, name: str, supplier_id: str | None
) -> str | None:
    """Why a new key may not be called ``name``, or None.

    A supplier reads the actor of each action on its orders by key name (its own keys
    and the plant's software by name, everyone else as ``plant``), so a name must stand
    for one party: not a name the software acts under, and not a name another party's
    key has (a plant key named like a supplier's key would act under that supplier's
    name)."""
    folded = name.casefold()
    if folded in RESERVED_ACTOR_NAMES:
        return f"{name!r} is a name the plant's software acts under"
    for prefix in RESERVED_ACTOR_PREFIXES:
        if folded.startswith(prefix):
            return f"key names starting {prefix!r} are reserved"
    other = session.scalars(
        select(ApiKey.supplier_id).where(
            func.lower(ApiKey.name) == folded,
            ApiKey.supplier_id.is_distinct_from(supplier_id),
        )
    ).first()
    if other is not None or (
        supplier_id is not None
        and session.scalars(
            select(ApiKey.id).where(
                func.lower(ApiKey.name) == folded, ApiKey.supplier_id.is_(None)
            )
        ).first()
        is not None
    ):
        return (
            f"{name!r} is the name of another party's key (the plant's or another "
            "supplier's): one name stands for one party"
        )
    return None


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


def revoke_api_key(
    session: Session, row: ApiKey, *, actor: str, now_ms: int
) -> list[int] | None:
    """Revoke a key and the browser sessions opened with it (audited); the ids of all
    keys revoked, the key's first, or None when it already was."""
    if row.revoked:
        return None
    row.revoked = True
    children = revoke_sessions(session, parent_id=row.id)
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="key.revoke",
        entity="api_key",
        entity_id=str(row.id),
        detail={"name": row.name, "sessions_revoked": len(children)},
    )
    return [row.id, *children]
