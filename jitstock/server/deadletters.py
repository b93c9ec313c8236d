"""Ingest's dead letters: what a message that cannot be applied becomes, so the rest can go on.

A flush that fails with an error that would fail again (a value the state DB
refuses, a bug on one path) is bisected by ingest until the message(s) at
fault are found; each is stored here with its topic, payload, reason and error,
then acknowledged.  Errors that say the infrastructure is away (the state DB
unreachable or locked, the local disk failing) are *transient*: the flush is
retried as it is and nothing is dead-lettered.

An admin lists dead letters and replays one once its cause is fixed
(``/api/v1/dead-letters``); /healthz is ``degraded`` while dead letters of the
last ``recent_s`` seconds are not replayed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import (
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.deadletter_models import (
    MAX_ERROR_LEN,
    MAX_TOPIC_LEN,
    DeadLetter,
)
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.tsdb.errors import TsdbError

log = logging.getLogger(__name__)

# /healthz stays "degraded" this long after a dead letter that nobody replayed.
DEAD_LETTER_RECENT_S = 15 * 60.0
# A page of the dead-letter list.
DEFAULT_PAGE = 100


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same messages later can succeed (infrastructure, not content).

    SQLAlchemy's OperationalError / InterfaceError are the driver's "cannot talk to
    the database" family (connection refused or lost, SQLite busy or locked, disk
    I/O); a pool timeout and a disconnect are the same.  The time series store only
    raises when it can neither write nor spool (a local disk failure).  Everything
    else — IntegrityError, DataError, OverflowError, ValueError from a value the
    database refuses — fails again on retry.
    """
    return isinstance(
        exc,
        OperationalError
        | InterfaceError
        | DisconnectionError
        | PoolTimeout
        | TsdbError
        | OSError,
    )


def reason_of(exc: BaseException) -> str:
    """A short metric label for a non-transient failure."""
    name = type(exc).__name__
    if name in ("IntegrityError",):
        return "integrity"
    if name in ("DataError", "OverflowError", "NumericValueOutOfRange"):
        return "out_of_range"
    if isinstance(exc, ValueError | TypeError | ArithmeticError):
        return "bad_value"
    return "apply_failed"


@dataclass(slots=True, frozen=True)
class DeadLetterInfo:
    """What ingest reports about one dead letter (to the alert hook)."""

    id: int | None
    topic: str
    agent_id: str | None
    reason: str
    error: str


def dead_letter_dict(row: DeadLetter, *, with_payload: bool = True) -> dict[str, Any]:
    """A dead letter as JSON-able data (payload as text when it is UTF-8, else hex)."""
    out: dict[str, Any] = {
        "id": row.id,
        "at_ms": row.at_ms,
        "topic": row.topic,
        "agent_id": row.agent_id,
        "reason": row.reason,
        "error": row.error,
        "size": len(row.payload),
        "replayed_ms": row.replayed_ms,
        "replayed_by": row.replayed_by,
    }
    if with_payload:
        try:
            out["payload"] = row.payload.decode("utf-8")
            out["payload_hex"] = None
        except UnicodeDecodeError:
            out["payload"] = None
            out["payload_hex"] = row.payload.hex()
    return out


class AlreadyReplayed(Exception):
    """A dead letter can be replayed once; a failed replay becomes a new dead letter."""


class DeadLetterStore:
    """The dead_letters table: add (ingest), list, get, mark replayed (API), recent (/healthz)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock = REAL_CLOCK,
        recent_s: float = DEAD_LETTER_RECENT_S,
    ) -> None:
        self._factory = session_factory
        self._clock = clock
        self.recent_s = recent_s

    def add(
        self,
        topic: str,
        payload: bytes,
        reason: str,
        error: str,
        agent_id: str | None,
    ) -> int:
        """Store a dead letter durably; returns its id (raises if the DB is away)."""
        with transaction(self._factory) as s:
            row = DeadLetter(
                at_ms=self._clock.time_ms(),
                topic=topic[:MAX_TOPIC_LEN],
                agent_id=agent_id[:64] if agent_id else None,
                payload=payload,
                reason=reason[:64],
                error=error[:MAX_ERROR_LEN],
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def list(
        self, *, limit: int = DEFAULT_PAGE, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Newest first; ``before_id`` pages on."""
        with transaction(self._factory, readonly=True) as s:
            q = select(DeadLetter).order_by(DeadLetter.id.desc()).limit(limit)
            if before_id is not None:
                q = q.where(DeadLetter.id < before_id)
            return [dead_letter_dict(r, with_payload=False) for r in s.scalars(q)]

    def get(self, dead_letter_id: int) -> dict[str, Any] | None:
        """One dead letter with its payload, or None."""
        with transaction(self._factory, readonly=True) as s:
            row = s.get(DeadLetter, dead_letter_id)
            return None if row is None else dead_letter_dict(row)

    def take_for_replay(
        self, dead_letter_id: int, actor: str
    ) -> tuple[str, bytes] | None:
        """Mark a dead letter replayed and return (topic, payload); None if unknown.

        Raises AlreadyReplayed when it was replayed before (replaying twice could
        apply the same consumption twice).
        """
        with transaction(self._factory) as s:
            row = s.get(DeadLetter, dead_letter_id)
            if row is None:
                return None
            if row.replayed_ms is not None:
                raise AlreadyReplayed(
                    f"dead letter {dead_letter_id} was replayed by {row.replayed_by}"
                )
            row.replayed_ms = self._clock.time_ms()
            row.replayed_by = actor[:100]
            return row.topic, bytes(row.payload)

    def recent(self) -> int:
        """Dead letters of the last ``recent_s`` seconds not replayed yet."""
        since = self._clock.time_ms() - int(self.recent_s * 1000)
        with transaction(self._factory, readonly=True) as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(DeadLetter)
                    .where(DeadLetter.at_ms >= since, DeadLetter.replayed_ms.is_(None))
                )
                or 0
            )
