"""Sign-in and users: password sign-in (throttled) into an HttpOnly session cookie, browser
sessions opened with an API key, sign-out, own password change, and user administration.

Every change that ends sessions also closes their open event streams.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.ratelog import RateLimitedLog
from jitstock.server.api import users
from jitstock.server.api.deps import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Admin,
    CtxDep,
    CurrentKey,
    ReadSessionDep,
    SessionDep,
    ThrottleDep,
    Viewer,
)
from jitstock.server.api.errors import Conflict, Forbidden, NotFound, Unauthorized
from jitstock.server.api.nul_guard import refuse_nul
from jitstock.server.api.signin_throttle import Attempt, SignInThrottle, Throttled
from jitstock.server.db.alert_models import DashboardUser
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import ApiKey

log = logging.getLogger(__name__)
_throttle_log = RateLimitedLog(log, 60.0)

router = APIRouter(tags=["sign-in"])

Role = Literal["viewer", "manager", "admin"]
Username = Annotated[str, Field(min_length=1, max_length=100)]
# Any stored password must still sign in; new ones have a minimum length.
AnyPassword = Annotated[str, Field(min_length=1, max_length=users.MAX_PASSWORD_LEN)]
NewPassword = Annotated[
    str,
    Field(min_length=users.MIN_PASSWORD_LEN, max_length=users.MAX_PASSWORD_LEN),
]
UserPath = Annotated[str, Path(min_length=1, max_length=100)]

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "wrong user name or password"}
}
_THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {
        "description": "too many failed sign-ins for this user or address; "
        "try again after `Retry-After` seconds"
    }
}


class _Body(BaseModel):
    """Strict request bodies; passwords are taken exactly as typed (no stripping)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


class LoginRequest(_Body):
    """User name and password; ``session`` says how the session key is handed out."""

    username: Username
    password: AnyPassword
    # "cookie": HttpOnly cookie for the dashboard (needs X-Requested-With);
    # "bearer": the key in the body, for a script that sends it as a header.
    session: Literal["cookie", "bearer"] = "cookie"


class SessionPublic(BaseModel):
    """A signed-in session: who, what role, until when (the key only for ``bearer``)."""

    name: str
    role: str
    expires_ms: int
    key: str | None = None


class UserCreate(_Body):
    """A new dashboard user."""

    username: Username
    password: NewPassword
    role: Role = "viewer"


class UserUpdate(_Body):
    """Disable/enable a user or change their role (either ends their sessions)."""

    disabled: bool | None = None
    role: Role | None = None


class PasswordSet(_Body):
    """A new password set by an admin."""

    password: NewPassword


class PasswordChange(_Body):
    """A user's own password change: the current one, then the new one."""

    old_password: AnyPassword
    new_password: NewPassword


class UserPublic(BaseModel):
    """A dashboard user without the password hash."""

    model_config = ConfigDict(from_attributes=True)

    username: str
    role: str
    disabled: bool
    created_ms: int
    password_changed_ms: int | None


def close_streams(ctx: Any, key_ids: list[int]) -> None:
    """End the open event streams of revoked keys (after the revocation is committed)."""
    hub = getattr(ctx, "live", None)
    if hub is not None and key_ids:
        hub.close_keys(key_ids)


def _set_cookie(
    response: Response, request: Request, issued: users.IssuedSession, ttl_s: float
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        issued.key,
        max_age=max(1, int(ttl_s)),
        path="/",
        httponly=True,
        samesite="strict",
        # plain http on a shop-floor network has no Secure cookies; behind TLS it must be Secure
        secure=request.url.scheme == "https",
    )


def _begin(throttle: SignInThrottle, username: str, request: Request) -> Attempt:
    address = request.client.host if request.client else None
    try:
        return throttle.begin(username, address)
    except Throttled as exc:
        _throttle_log.log(
            logging.WARNING,
            f"{exc.scope}",
            "sign-in refused for %r from %s: %s (retry in %.0f s)",
            username,
            address,
            exc,
            exc.retry_after_s,
        )
        raise HTTPException(
            429,
            f"{exc}; try again in {exc.retry_after_header} s",
            headers={"Retry-After": exc.retry_after_header},
        ) from exc


@router.post(
    "/api/v1/login",
    responses={
        **_UNAUTHORIZED,
        403: {"description": "a cookie sign-in without X-Requested-With"},
        **_THROTTLED,
    },
)
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    ctx: CtxDep,
    throttle: ThrottleDep,
) -> SessionPublic:
    """Sign in with user name and password: a session that expires after JITSTOCK_SESSION_TTL_S.

    With ``session: "cookie"`` (the dashboard) the key goes into an HttpOnly,
    SameSite=Strict cookie and never into the body; the request must carry an
    ``X-Requested-With`` header.  Failed attempts are throttled per user name and
    per address with exponential back-off (429 with ``Retry-After``).
    """
    if body.session == "cookie" and not request.headers.get(CSRF_HEADER):
        raise Forbidden(f"a cookie sign-in needs an {CSRF_HEADER} header")
    attempt = _begin(throttle, body.username, request)
    ttl_s = ctx.settings.session_ttl_s
    issued = users.sign_in(
        session,
        body.username,
        body.password,
        ctx.clock.time_ms(),
        int(ttl_s * 1000),
    )
    if issued is None:
        raise Unauthorized("wrong user name or password")
    session.commit()
    throttle.succeeded(attempt)
    out = SessionPublic(
        name=issued.name, role=issued.role, expires_ms=issued.expires_ms
    )
    if body.session == "bearer":
        return out.model_copy(update={"key": issued.key})
    _set_cookie(response, request, issued, ttl_s)
    return out


@router.post("/api/v1/session", responses={409: {"description": "not an API key"}})
def open_browser_session(
    request: Request, response: Response, session: SessionDep, key: Viewer, ctx: CtxDep
) -> SessionPublic:
    """Open a dashboard session with an API key (sent as a header): the browser gets an
    expiring child key in the HttpOnly cookie, never the API key itself; revoking the
    API key ends the session."""
    if key.key_id is None or key.expires_ms is not None:
        raise Conflict("send a plain API key (not a session) to open a browser session")
    ttl_s = ctx.settings.session_ttl_s
    issued = users.issue_session_key(
        session,
        name=users.SESSION_KEY_PREFIX + key.name,
        role=key.role,
        now_ms=ctx.clock.time_ms(),
        ttl_ms=int(ttl_s * 1000),
        parent_id=key.key_id,
        supplier_id=key.supplier_id,
    )
    session.commit()
    _set_cookie(response, request, issued, ttl_s)
    return SessionPublic(
        name=issued.name, role=issued.role, expires_ms=issued.expires_ms
    )


@router.post("/api/v1/logout", status_code=204)
def logout(session: SessionDep, key: CurrentKey, ctx: CtxDep) -> Response:
    """End this session: its key is revoked and the cookie cleared (a plain API key is left alone)."""
    if key.key_id is not None and key.expires_ms is not None:
        ids = _revoke_ids(session, [key.key_id])
        session.commit()
        close_streams(ctx, ids)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _revoke_ids(session: Session, ids: list[int]) -> list[int]:
    rows = session.scalars(select(ApiKey).where(ApiKey.id.in_(ids))).all()
    for row in rows:
        row.revoked = True
    return [r.id for r in rows]


@router.get("/api/v1/me")
def me(key: CurrentKey, ctx: CtxDep) -> dict[str, Any]:
    """Who the caller is: name, role and session expiry (the page hides what the role may not do)."""
    return {
        "name": key.name,
        "role": key.role,
        "auth": ctx.settings.auth,
        "username": key.username,
        "expires_ms": key.expires_ms,
    }


@router.post(
    "/api/v1/me/password",
    status_code=204,
    responses={403: {"description": "the current password is wrong"}, **_THROTTLED},
)
def change_own_password(
    body: PasswordChange,
    request: Request,
    session: SessionDep,
    key: CurrentKey,
    ctx: CtxDep,
    throttle: ThrottleDep,
) -> Response:
    """Change your own password (signed in as a user); your other sessions end, this one stays."""
    if key.username is None:
        raise Conflict("only a user's sign-in has a password to change")
    attempt = _begin(throttle, key.username, request)
    user = users.verify_user(session, key.username, body.old_password)
    if user is None:
        raise Forbidden("the current password is wrong")
    throttle.succeeded(attempt)
    ids = users.set_password(
        session,
        user,
        body.new_password,
        now_ms=ctx.clock.time_ms(),
        actor=key.name,
        keep_key_id=key.key_id,
    )
    session.commit()
    close_streams(ctx, ids)
    return Response(status_code=204)


def _user(session: Session, username: str) -> DashboardUser:
    user = session.get(DashboardUser, username)
    if user is None:
        raise NotFound("user", username)
    return user


@router.get("/api/v1/users")
def list_users(session: ReadSessionDep, _key: Admin) -> list[UserPublic]:
    """Every dashboard user (admin)."""
    rows = session.scalars(select(DashboardUser).order_by(DashboardUser.username))
    return [UserPublic.model_validate(u) for u in rows]


@router.post(
    "/api/v1/users", status_code=201, responses={409: {"description": "exists"}}
)
def create_user(
    body: UserCreate, session: SessionDep, key: Admin, ctx: CtxDep
) -> UserPublic:
    """Add a dashboard user (admin); the password is stored as an scrypt hash."""
    if session.get(DashboardUser, body.username) is not None:
        raise Conflict(f"user {body.username!r} exists", field="username")
    now = ctx.clock.time_ms()
    user = DashboardUser(
        username=body.username,
        password_hash=users.hash_password(body.password),
        role=body.role,
        created_ms=now,
        disabled=False,
        password_changed_ms=now,
    )
    session.add(user)
    session.flush()
    record_audit(
        session,
        at_ms=now,
        actor=key.name,
        action="user.create",
        entity="dashboard_user",
        entity_id=body.username,
        detail={"role": body.role},
    )
    session.commit()
    return UserPublic.model_validate(user)


@router.patch(
    "/api/v1/users/{username}", responses={404: {"description": "no such user"}}
)
def update_user(
    username: UserPath, body: UserUpdate, session: SessionDep, key: Admin, ctx: CtxDep
) -> UserPublic:
    """Disable or enable a user, or change their role (admin); their sessions end."""
    user = _user(session, username)
    ids = users.update_user(
        session,
        user,
        now_ms=ctx.clock.time_ms(),
        actor=key.name,
        disabled=body.disabled,
        role=body.role,
    )
    session.commit()
    close_streams(ctx, ids)
    return UserPublic.model_validate(user)


@router.put(
    "/api/v1/users/{username}/password",
    status_code=204,
    responses={404: {"description": "no such user"}},
)
def set_user_password(
    username: UserPath,
    body: PasswordSet,
    session: SessionDep,
    key: Admin,
    ctx: CtxDep,
    throttle: ThrottleDep,
) -> Response:
    """Set a user's password (admin): every session of theirs ends, their failed tries are forgotten."""
    user = _user(session, username)
    ids = users.set_password(
        session, user, body.password, now_ms=ctx.clock.time_ms(), actor=key.name
    )
    session.commit()
    throttle.forget_user(username)
    close_streams(ctx, ids)
    return Response(status_code=204)


@router.delete(
    "/api/v1/users/{username}",
    status_code=204,
    responses={404: {"description": "no such user"}},
)
def delete_user(
    username: UserPath, session: SessionDep, key: Admin, ctx: CtxDep
) -> Response:
    """Delete a user (admin): their sessions end at once."""
    user = _user(session, username)
    ids = users.delete_user(session, user, now_ms=ctx.clock.time_ms(), actor=key.name)
    session.commit()
    close_streams(ctx, ids)
    return Response(status_code=204)
