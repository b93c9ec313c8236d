"""API keys and dashboard users from the shell: the same rules, hashing and audit
trail as the admin API (jitstock/server/api/users.py, routes/keys.py), for when no
admin key is at hand yet or the HTTP side is down.  Changes are audited with the
actor ``shell:<login name>``.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.api.routes.signin import UserCreate
from jitstock.server.api.schemas import KeyCreate
from jitstock.server.api.users import (
    hash_password,
    issue_api_key,
    key_name_problem,
    revoke_api_key,
    update_user,
)
from jitstock.server.db.alert_models import DashboardUser
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey


class AccountRefused(ValueError):
    """A user or key change the shell refuses; the message says why."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: its row id and the plain value, shown once."""

    id: int
    name: str
    role: str
    key: str


def shell_actor() -> str:
    """Who the audit trail names for a change made from the shell."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        who = str(os.getuid())
    return f"shell:{who}"


def _printable(what: str, value: str) -> None:
    """Names are printed in lists and logs: no control characters (PostgreSQL refuses NUL)."""
    if any(not ch.isprintable() for ch in value):
        raise AccountRefused(f"{what}: control characters are not allowed")


def _problem(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()
    )


def create_key(session: Session, name: str, role: str, *, now_ms: int) -> NewKey:
    """A new machine key (no expiry), stored hashed; validated as POST /api/v1/keys."""
    try:
        body = KeyCreate(name=name, role=role)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise AccountRefused(_problem(exc)) from None
    _printable("name", body.name)
    problem = key_name_problem(session, body.name, None)
    if problem is not None:
        raise AccountRefused(problem)
    row, plain = issue_api_key(
        session, name=body.name, role=body.role, actor=shell_actor(), now_ms=now_ms
    )
    return NewKey(row.id, row.name, row.role, plain)


def revoke_key(session: Session, key_id: int, *, now_ms: int) -> bool:
    """Revoke a key and the browser sessions opened with it; False if it already was."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise AccountRefused(f"no API key with id {key_id}")
    return revoke_api_key(session, row, actor=shell_actor(), now_ms=now_ms) is not None


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked and expired ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def live_admin_keys(session: Session, now_ms: int) -> list[ApiKey]:
    """Admin keys that would be accepted now (not revoked, not expired)."""
    return [
        k
        for k in session.scalars(
            select(ApiKey).where(ApiKey.role == "admin", ApiKey.revoked.is_(False))
        )
        if k.expires_ms is None or k.expires_ms > now_ms
    ]


def create_user(
    session: Session, username: str, password: str, role: str, *, now_ms: int
) -> DashboardUser:
    """A dashboard user, validated as POST /api/v1/users (name, password length, role)."""
    try:
        body = UserCreate(username=username, password=password, role=role)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise AccountRefused(_problem(exc)) from None
    _printable("username", body.username)
    if session.get(DashboardUser, body.username) is not None:
        raise AccountRefused(f"user {body.username!r} exists")
    user = DashboardUser(
        username=body.username,
        password_hash=hash_password(body.password),
        role=body.role,
        created_ms=now_ms,
        disabled=False,
        password_changed_ms=now_ms,
    )
    session.add(user)
    session.flush()
    record_audit(
        session,
        at_ms=now_ms,
        actor=shell_actor(),
        action="user.create",
        entity="dashboard_user",
        entity_id=body.username,
        detail={"role": body.role},
    )
    return user


def set_disabled(
    session: Session, username: str, disabled: bool, *, now_ms: int
) -> int:
    """Disable or enable a user (ending their sessions); how many sessions ended."""
    user = session.get(DashboardUser, username)
    if user is None:
        raise AccountRefused(f"no user {username!r}")
    return len(
        update_user(
            session, user, now_ms=now_ms, actor=shell_actor(), disabled=disabled
        )
    )


def list_users(session: Session) -> list[DashboardUser]:
    """Every dashboard user by name."""
    return list(session.scalars(select(DashboardUser).order_by(DashboardUser.username)))
