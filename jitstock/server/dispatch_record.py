"""Recording finished attempts (the dispatcher's step 3) for many orders in one short
transaction, with prepared statements rather than ORM objects.

The transaction takes SQLite's write lock, which ingest's flushes need too: the less
Python runs while it is held, the less a flush waits.  Per attempt: its row is
completed, and the order moves, fenced on ``attempts = n`` (only the holder of
attempt n may move it; a superseded attempt is reported as not owned).  An attempt
that ends the order's sending (sent or failed) gets its transition and audit rows, and
a failed order's bin is re-decided at once (the demand moves to the next supplier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from jitstock.server import reorder
from jitstock.server.db.models import AuditLog, Order, OrderAttempt
from jitstock.server.db.supplier_models import OrderTransition
from jitstock.server.order_attempt import AttemptOutcome, Job

_ATTEMPT_DONE = (
    update(OrderAttempt)
    .where(
        OrderAttempt.order_id == bindparam("b_order"),
        OrderAttempt.n == bindparam("b_n"),
    )
    .values(
        status_code=bindparam("b_code"),
        error=bindparam("b_error"),
        latency_ms=bindparam("b_latency"),
    )
    .execution_options(synchronize_session=False)
)


def _move(values: dict[str, Any]) -> Any:
    """UPDATE of one order, fenced on its attempt number and state."""
    return (
        update(Order)
        .where(
            Order.id == bindparam("b_order"),
            Order.attempts == bindparam("b_n"),
            Order.state == "created",
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


_SENT = _move(
    {
        "state": "sent",
        "sent_ms": bindparam("b_now"),
        "next_attempt_ms": None,
        "last_error": bindparam("b_error"),
    }
)
_RETRY = _move(
    {"next_attempt_ms": bindparam("b_next"), "last_error": bindparam("b_error")}
)
_FAILED = _move(
    {
        "state": "failed",
        "next_attempt_ms": None,
        "last_error": bindparam("b_error"),
        "closed_ms": bindparam("b_now"),
    }
)
_MOVES = {"sent": _SENT, "retry": _RETRY, "failed": _FAILED}
_INSERT_TRANSITION = insert(OrderTransition.__table__)  # type: ignore[arg-type]
_INSERT_AUDIT = insert(AuditLog.__table__)  # type: ignore[arg-type]


def record_attempts(
    s: Session,
    done: Sequence[tuple[Job, AttemptOutcome]],
    now_ms: int,
    actor: str,
) -> list[tuple[bool, list[str]]]:
    """Record finished attempts in the caller's transaction; per attempt (owned, orders
    created for the bin of a failed order)."""
    conn = s.connection()
    conn.execute(
        _ATTEMPT_DONE,
        [
            {
                "b_order": job.order_id,
                "b_n": job.n,
                "b_code": out.status_code,
                "b_error": out.error,
                "b_latency": out.latency_ms,
            }
            for job, out in done
        ],
    )
    owned: list[bool] = []
    for job, out in done:
        params = {
            "b_order": job.order_id,
            "b_n": job.n,
            "b_error": out.error,
            "b_now": now_ms,
        }
        if out.verdict == "retry":
            assert out.retry_in_s is not None
            params["b_next"] = now_ms + int(out.retry_in_s * 1000)
        # one statement per order: its rowcount says whether we still held attempt n
        moved = conn.execute(_MOVES[out.verdict], params)
        owned.append(moved.rowcount == 1)
    ended = [
        (job, out)
        for (job, out), mine in zip(done, owned, strict=True)
        if mine and out.verdict != "retry"
    ]
    if ended:
        conn.execute(
            _INSERT_TRANSITION,
            [
                {
                    "order_id": job.order_id,
                    "at_ms": now_ms,
                    "from_state": "created",
                    "to_state": out.verdict,
                    "actor": actor,
                    "reason": out.error,
                    "detail": {"attempt": job.n, "status_code": out.status_code},
                }
                for job, out in ended
            ],
        )
        conn.execute(
            _INSERT_AUDIT,
            [
                {
                    "at_ms": now_ms,
                    "actor": actor,
                    "action": f"order.{out.verdict}",
                    "entity": "order",
                    "entity_id": job.order_id,
                    "detail": {
                        "attempt": job.n,
                        "status_code": out.status_code,
                        "error": out.error,
                    },
                }
                for job, out in ended
            ],
        )
    result: list[tuple[bool, list[str]]] = []
    for (job, out), mine in zip(done, owned, strict=True):
        fallback: list[str] = []
        if mine and out.verdict == "failed":
            # the supplier refused it: the demand moves to the next supplier at once
            fallback = reorder.recheck(
                s, [job.bin_id], now_ms, f"order {job.order_id} failed"
            )
        result.append((mine, fallback))
    return result
