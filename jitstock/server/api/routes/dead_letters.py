"""Ingest's dead letters: list (manager), read with payload (manager), replay (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from jitstock.server.api.deadletter_schemas import (
    DeadLetterDetail,
    DeadLetterPublic,
    ReplayQueued,
)
from jitstock.server.api.deps import Admin, CtxDep, Manager
from jitstock.server.api.errors import ApiError, Conflict, NotFound
from jitstock.server.db.audit import record_audit
from jitstock.server.db.session import transaction
from jitstock.server.deadletters import AlreadyReplayed, DeadLetterStore

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])


class IngestUnavailable(ApiError):
    """This server process does not run ingest (nothing to replay into)."""

    status = 503


def _store(ctx: Any) -> DeadLetterStore:
    store = getattr(ctx, "dead_letters", None)
    if isinstance(store, DeadLetterStore):
        return store
    return DeadLetterStore(ctx.session_factory, clock=ctx.clock)


@router.get("")
def list_dead_letters(
    ctx: CtxDep,
    _key: Manager,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> list[DeadLetterPublic]:
    """Newest first; page on with ``before_id`` (the smallest id of the previous page)."""
    return [
        DeadLetterPublic(**d)
        for d in _store(ctx).list(limit=limit, before_id=before_id)
    ]


@router.get("/{dead_letter_id}", responses={404: {"description": "unknown id"}})
def get_dead_letter(
    ctx: CtxDep, _key: Manager, dead_letter_id: int
) -> DeadLetterDetail:
    """One dead letter with its payload and the error that stopped it."""
    if not 1 <= dead_letter_id <= 2**63 - 1:
        raise NotFound("dead letter", str(dead_letter_id))
    row = _store(ctx).get(dead_letter_id)
    if row is None:
        raise NotFound("dead letter", str(dead_letter_id))
    return DeadLetterDetail(**row)


@router.post(
    "/{dead_letter_id}/replay",
    status_code=202,
    responses={
        404: {"description": "unknown id"},
        409: {"description": "already replayed"},
        503: {"description": "this process does not run ingest"},
    },
)
def replay_dead_letter(ctx: CtxDep, key: Admin, dead_letter_id: int) -> ReplayQueued:
    """Feed the message to ingest again (after fixing its cause); once per dead letter.

    The replay skips the seq check (the message was never applied); if it fails
    again it becomes a new dead letter.
    """
    ingest = getattr(ctx, "ingest", None)
    if ingest is None or getattr(ingest, "connection", None) is None:
        raise IngestUnavailable("this server process does not run ingest")
    if not 1 <= dead_letter_id <= 2**63 - 1:
        raise NotFound("dead letter", str(dead_letter_id))
    try:
        taken = _store(ctx).take_for_replay(dead_letter_id, key.name)
    except AlreadyReplayed as exc:
        raise Conflict(str(exc)) from exc
    if taken is None:
        raise NotFound("dead letter", str(dead_letter_id))
    topic, payload = taken
    with transaction(ctx.session_factory) as s:
        record_audit(
            s,
            at_ms=ctx.clock.time_ms(),
            actor=key.name,
            action="dead_letter.replay",
            entity="dead_letter",
            entity_id=str(dead_letter_id),
            detail={"topic": topic},
        )
    ingest.replay(topic, payload)
    return ReplayQueued(id=dead_letter_id, queued=True)
