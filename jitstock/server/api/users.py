"""Dashboard users: scrypt password hashes, and sign-in that mints an API key for the session.

A sign-in issues an ordinary API key (named ``login:<user>``, the user's role),
so every route's role check works unchanged; signing out revokes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy.orm import Session

from jitstock.server.db.alert_models import DashboardUser
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey
from jitstock.server.db.secrets import hash_api_key, new_api_key

# scrypt cost: ~50 ms and 16 MiB per check here — slow for guessing, fine for a sign-in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
LOGIN_KEY_PREFIX = "login:"


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


def sign_in(
    session: Session, username: str, password: str, now_ms: int
) -> tuple[str, str] | None:
    """A fresh session key and the user's role, or None for a wrong name or password."""
    user = session.get(DashboardUser, username)
    if user is None:
        hash_password(password)  # same cost either way: do not reveal which names exist
        return None
    if not check_password(password, user.password_hash):
        return None
    plain = new_api_key()
    row = ApiKey(
        name=LOGIN_KEY_PREFIX + username,
        key_hash=hash_api_key(plain),
        role=user.role,
        created_ms=now_ms,
        revoked=False,
    )
    session.add(row)
    session.flush()
    record_audit(
        session,
        at_ms=now_ms,
        actor=username,
        action="user.login",
        entity="api_key",
        entity_id=str(row.id),
        detail={"role": user.role},
    )
    return plain, user.role
