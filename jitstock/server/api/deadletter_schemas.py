"""HTTP models of ingest's dead letters (GET /api/v1/dead-letters, replay)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeadLetterPublic(BaseModel):
    """A dead letter in a list (without its payload)."""

    model_config = ConfigDict(extra="forbid")

    id: int
    at_ms: int
    topic: str
    agent_id: str | None
    reason: str
    error: str
    size: int
    replayed_ms: int | None
    replayed_by: str | None


class DeadLetterDetail(DeadLetterPublic):
    """One dead letter with its payload: text when it is UTF-8, else hex."""

    payload: str | None
    payload_hex: str | None


class ReplayQueued(BaseModel):
    """A replay accepted: the message is queued for ingest (a failure makes a new dead letter)."""

    model_config = ConfigDict(extra="forbid")

    id: int
    queued: bool
