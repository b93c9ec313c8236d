"""FastAPI dependencies as Annotated aliases: context, sessions, the caller and role checks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
)
from sqlalchemy.orm import Session

from jitstock.server.api.auth import ANONYMOUS_ADMIN, Principal, principal_for_key
from jitstock.server.api.context import ApiContext
from jitstock.server.api.errors import Forbidden, Unauthorized
from jitstock.server.api.signin_throttle import SignInThrottle
from jitstock.server.db.session import transaction

# The dashboard's session: an HttpOnly, SameSite=Strict cookie holding an expiring session key.
SESSION_COOKIE = "jitstock_session"
# A cookie-authenticated request that changes state must carry this header: a cross-site
# form cannot set it, and a cross-site script cannot without a CORS preflight we never allow.
CSRF_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(
    auto_error=False, description="API key as `Authorization: Bearer <key>`"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key as `X-API-Key: <key>`"
)
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=(
        "Dashboard session cookie from `POST /api/v1/login`; requests that change "
        f"state also need an `{CSRF_HEADER}` header"
    ),
)
_throttle_lock = threading.Lock()


def get_ctx(request: Request) -> ApiContext:
    """The server context stored on the app by create_api."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[ApiContext, Depends(get_ctx)]


def get_session(ctx: CtxDep) -> Iterator[Session]:
    """A session for a writing request; the route commits (before the response is sent)."""
    with ctx.session_factory() as session:
        yield session


def get_read_session(ctx: CtxDep) -> Iterator[Session]:
    """A read-only transaction (on SQLite it does not queue behind ingest's writes)."""
    with transaction(ctx.session_factory, readonly=True) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]


def current_key(
    request: Request,
    ctx: CtxDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
    cookie_key: Annotated[str | None, Depends(_session_cookie)],
) -> Principal:
    """The caller, from `Authorization: Bearer`, `X-API-Key` or the dashboard's session
    cookie; everyone is admin when auth is off."""
    if ctx.settings.auth == "off":
        return ANONYMOUS_ADMIN
    key = bearer.credentials if bearer is not None else header_key
    if not key and cookie_key:
        check_same_origin(request)
        key = cookie_key
    if not key:
        raise Unauthorized(
            "API key required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    with transaction(ctx.session_factory, readonly=True) as session:
        principal = principal_for_key(session, key, ctx.clock.time_ms())
    if principal is None:
        raise Unauthorized("invalid or revoked API key")  # expired counts as revoked
    return principal


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing cookie request that could come from another site (CSRF)."""
    if request.method in SAFE_METHODS:
        return
    if not request.headers.get(CSRF_HEADER):
        raise Forbidden(
            f"a request authenticated by the session cookie needs an {CSRF_HEADER} header"
        )
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-site request refused")


def get_signin_throttle(request: Request, ctx: CtxDep) -> SignInThrottle:
    """The process's sign-in throttle: the composition root's, else one made on first use."""
    given: SignInThrottle | None = getattr(ctx, "signin_throttle", None)
    if given is not None:
        return given
    state = request.app.state
    with _throttle_lock:
        throttle: SignInThrottle | None = getattr(state, "signin_throttle", None)
        if throttle is None:
            throttle = state.signin_throttle = SignInThrottle(clock=ctx.clock)
    return throttle


ThrottleDep = Annotated[SignInThrottle, Depends(get_signin_throttle)]


CurrentKey = Annotated[Principal, Depends(current_key)]


def require_role(role: str) -> Callable[[Principal], Principal]:
    """A dependency admitting callers whose role includes ``role``."""

    def check(key: CurrentKey) -> Principal:
        if not key.allows(role):
            raise Forbidden(
                f"requires role {role!r}; key {key.name!r} has role {key.role!r}"
            )
        return key

    return check


Viewer = Annotated[Principal, Depends(require_role("viewer"))]
Manager = Annotated[Principal, Depends(require_role("manager"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]
