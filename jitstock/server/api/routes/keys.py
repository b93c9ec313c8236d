"""API keys (admin only): create (the plain key is shown once), list, revoke (with its sessions)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import Admin, CtxDep, ReadSessionDep, SessionDep
from jitstock.server.api.errors import Conflict
from jitstock.server.api.routes.signin import close_streams
from jitstock.server.api.schemas import KeyCreate, KeyCreated, KeyPublic
from jitstock.server.api.users import (
    issue_api_key,
    key_name_problem,
    revoke_api_key,
)
from jitstock.server.db.models import ApiKey

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


@router.get("")
def list_keys(session: ReadSessionDep, _key: Admin) -> list[KeyPublic]:
    """Every key, revoked ones included (never the key itself)."""
    return [
        KeyPublic.model_validate(k)
        for k in session.scalars(select(ApiKey).order_by(ApiKey.id))
    ]


@router.post(
    "",
    status_code=201,
    responses={409: {"description": "the name is reserved or another party's"}},
)
def create_key(
    body: KeyCreate, session: SessionDep, key: Admin, ctx: CtxDep
) -> KeyCreated:
    """Issue a key; the response is the only time its value is shown (only a hash is stored)."""
    problem = key_name_problem(session, body.name, None)
    if problem is not None:
        raise Conflict(problem, field="name")
    row, plain = issue_api_key(
        session,
        name=body.name,
        role=body.role,
        actor=key.name,
        now_ms=ctx.clock.time_ms(),
    )
    session.commit()
    return KeyCreated(**KeyPublic.model_validate(row).model_dump(), key=plain)


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: int, session: SessionDep, key: Admin, ctx: CtxDep) -> Response:
    """Revoke a key: requests with it get 401 from now on (the row stays for the audit trail).

    Browser sessions opened with the key end with it, and open event streams of
    either close at once.
    """
    row = catalog.get_or_404(session, ApiKey, "API key", key_id)
    revoked = revoke_api_key(session, row, actor=key.name, now_ms=ctx.clock.time_ms())
    if revoked is not None:
        session.commit()
        close_streams(ctx, revoked)
    return Response(status_code=204)
