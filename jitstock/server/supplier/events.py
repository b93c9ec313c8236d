"""Supplier event webhooks: the outbox relay from ``supplier_events`` to supplier endpoints.

Same shape as the order dispatcher (claim in a short transaction with a
compare-and-set on ``attempts``, send outside any transaction, record), but for
the lifecycle events a supplier cares about.  The body is the versioned envelope
of :mod:`jitstock.server.webhooks` (``{"version", "id", "type", "timestamp",
"timestamp_ms", "data"}``, queued ready-made by ``lifecycle.enqueue_event``); the
``webhook-id`` header is the event id (the supplier's idempotency key), and
during a secret rotation both secrets sign.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import select, update

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.models import Supplier
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.db.supplier_models import SupplierEvent
from jitstock.server.redact import http_status_text, redact_url, safe_text
from jitstock.server.webhooks import (
    USER_AGENT,
    parse_retry_after,
    previous_secret,
    sign_headers,
)

log = logging.getLogger(__name__)

# Events are rarer than readings and less urgent than orders: a second's latency is fine.
IDLE_POLL_S = 1.0
# A crashed sender's claimed event is retried after this long.
CLAIM_LEASE_S = 120.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
# About a day of retrying at the cap before giving up (and logging) on one event.
MAX_ATTEMPTS = 300
# A supplier's Retry-After is honoured up to this long (as the order dispatcher's).
RETRY_AFTER_CAP_S = 600.0


@dataclass(frozen=True, slots=True)
class _Job:
    event_id: int
    n: int
    body: bytes
    msg_id: str
    url: str
    secret: str
    previous: str | None


class EventSender:
    """Delivers pending supplier events from a worker thread."""

    def __init__(
        self,
        session_factory: SessionFactory,
        http: httpx.Client,
        *,
        clock: Clock = REAL_CLOCK,
        idle_poll_s: float = IDLE_POLL_S,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._factory = session_factory
        self._http = http
        self._clock = clock
        self._idle_poll_s = idle_poll_s
        self._base = backoff_base_s
        self._cap = backoff_cap_s
        self._max = max_attempts
        self._rng = random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-supplier-events", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current event."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look for pending events now."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                sent = self.run_once()
            except Exception:
                log.exception("supplier events: state DB error")
                sent = 0
            if not sent:
                self._wake.wait(self._idle_poll_s)

    def run_once(self) -> int:
        """Attempt every due event once; returns how many were attempted."""
        n = 0
        while not self._stop.is_set():
            job = self._claim()
            if job is None:
                break
            self._record(job, self._send(job))
            n += 1
        return n

    def _claim(self) -> _Job | None:
        with transaction(self._factory) as s:
            now = self._clock.time_ms()
            stmt = (
                select(SupplierEvent)
                .where(
                    SupplierEvent.state == "pending",
                    SupplierEvent.next_attempt_ms <= now,
                )
                .order_by(SupplierEvent.id)
                .limit(1)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ev = s.scalars(stmt).first()
            if ev is None:
                return None
            supplier = s.get(Supplier, ev.supplier_id)
            if (
                supplier is None
                or not supplier.webhook_url
                or not supplier.webhook_secret
            ):
                ev.state = "skipped"
                ev.last_error = "supplier has no webhook"
                return _SKIPPED  # progress all the same: the caller loops to the next
            n = ev.attempts + 1
            claimed = s.execute(
                update(SupplierEvent)
                .where(SupplierEvent.id == ev.id, SupplierEvent.attempts == ev.attempts)
                .values(attempts=n, next_attempt_ms=now + int(CLAIM_LEASE_S * 1000))
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return _Job(
                ev.id,
                n,
                orjson.dumps(ev.payload),
                str(ev.payload.get("id", f"evt_{ev.id}")),
                supplier.webhook_url,
                supplier.webhook_secret,
                previous_secret(supplier, now),
            )

    def _send(self, job: _Job) -> tuple[str, str | None, float | None]:
        """(verdict, error, the seconds the supplier's Retry-After asks for)."""
        if job is _SKIPPED:
            return "skipped", None, None
        try:
            headers = sign_headers(
                job.secret, job.msg_id, job.body, int(time.time()), job.previous
            )
        except Exception as exc:
            return "failed", f"invalid webhook secret: {exc!r}", None
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        try:
            resp = self._http.post(job.url, content=job.body, headers=headers)
        except httpx.HTTPError as exc:
            return "retry", safe_text(f"{type(exc).__name__}: {exc}"), None
        log.info(
            "supplier event %d: POST %s -> %d",
            job.event_id,
            redact_url(job.url),
            resp.status_code,
        )
        if 200 <= resp.status_code < 300:
            return "sent", None, None
        detail = http_status_text(resp.status_code)  # never the remote body
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            wait = parse_retry_after(resp.headers.get("retry-after"), time.time())
            return "retry", detail, wait
        return "failed", detail, None

    def _record(self, job: _Job, outcome: tuple[str, str | None, float | None]) -> None:
        verdict, error, retry_after = outcome
        if job is _SKIPPED:
            return
        with transaction(self._factory) as s:
            now = self._clock.time_ms()
            values: dict[str, Any] = {"last_error": error}
            if verdict == "retry" and job.n < self._max:
                if retry_after is not None:
                    delay = min(retry_after, RETRY_AFTER_CAP_S)
                else:
                    delay = self._rng.uniform(
                        0, min(self._cap, self._base * 2.0 ** min(job.n - 1, 30))
                    )
                values["next_attempt_ms"] = now + int(delay * 1000)
            else:
                values["state"] = "sent" if verdict == "sent" else "failed"
                values["next_attempt_ms"] = None
            s.execute(
                update(SupplierEvent)
                .where(
                    SupplierEvent.id == job.event_id, SupplierEvent.attempts == job.n
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if values.get("state") == "failed":
            log.error("supplier event %d failed: %s", job.event_id, error)


_SKIPPED = _Job(0, 0, b"", "", "", "", None)
