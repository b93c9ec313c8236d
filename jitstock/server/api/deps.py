"""FastAPI dependencies as Annotated aliases: context, sessions, the caller and role checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from jitstock.server.api.auth import ANONYMOUS_ADMIN, Principal, principal_for_key
from jitstock.server.api.context import ApiContext
from jitstock.server.api.errors import Forbidden, Unauthorized
from jitstock.server.db.session import transaction

_bearer = HTTPBearer(
    auto_error=False, description="API key as `Authorization: Bearer <key>`"
)
_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key as `X-API-Key: <key>`"
)


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
    ctx: CtxDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """The caller, from `Authorization: Bearer` or `X-API-Key`; everyone is admin when auth is off."""
    if ctx.settings.auth == "off":
        return ANONYMOUS_ADMIN
    key = bearer.credentials if bearer is not None else header_key
    if not key:
        raise Unauthorized(
            "API key required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        )
    with transaction(ctx.session_factory, readonly=True) as session:
        principal = principal_for_key(session, key)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    return principal


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
