"""Supplier events: the outbox relay from ``supplier_events`` to supplier endpoints and
MQTT order topics.

Same shape as the order dispatcher (claim in a short transaction with a
compare-and-set on ``attempts``, send outside any transaction, record), but for
the lifecycle events a supplier cares about.  The body is the versioned envelope
of :mod:`jitstock.server.webhooks` (``{"version", "id", "type", "timestamp",
"timestamp_ms", "data"}``, queued ready-made by ``lifecycle.enqueue_event``); the
``webhook-id`` header is the event id (the supplier's idempotency key), and
during a secret rotation both secrets sign.

A supplier with ``mqtt_orders`` gets the same envelope (same bytes, same ``id``) on
its order topic ``jit/v1/{site}/orders/{supplier}`` at QoS 1, not retained, as the
dispatcher sends it ``order.created``: with no usable webhook the topic is the
channel, an event is 'sent' once the broker acknowledged it (PUBACK) and retried like
a webhook event otherwise (at least once: deduplicate on ``id``); beside a webhook it
is published on the first attempt only and the webhook decides the outcome.
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
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.models import Order, Supplier
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.db.supplier_models import SupplierEvent
from jitstock.server.order_attempt import PublishMqtt
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
    url: str | None  # None: MQTT only
    secret: str | None
    previous: str | None
    site: str | None = None  # the order topic's site, when published on MQTT
    supplier_id: str = ""


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
        publish_mqtt: PublishMqtt | None = None,
    ) -> None:
        """``publish_mqtt(site, supplier, body)`` publishes on the supplier's order topic
        and returns once the broker acknowledged it (raises otherwise); None: events go
        by webhook only."""
        self._factory = session_factory
        self._publish = publish_mqtt
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
            webhook = bool(
                supplier is not None
                and supplier.webhook_url
                and supplier.webhook_secret
            )
            site = None
            if (
                supplier is not None
                and supplier.mqtt_orders
                and self._publish is not None
            ):
                site = _site_of(s, ev)
            if supplier is None or not (webhook or site):
                ev.state = "skipped"
                ev.last_error = (
                    "supplier has no MQTT topic for it"
                    if supplier is not None and supplier.mqtt_orders
                    else "supplier has no webhook"
                )
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
                supplier.webhook_url if webhook else None,
                supplier.webhook_secret if webhook else None,
                previous_secret(supplier, now),
                site,
                supplier.id,
            )

    def _send(self, job: _Job) -> tuple[str, str | None, float | None]:
        """(verdict, error, the seconds the supplier's Retry-After asks for)."""
        if job is _SKIPPED:
            return "skipped", None, None
        mqtt_error = self._publish_mqtt(job)
        if job.url is None:  # the order topic is the supplier's channel
            return ("retry", mqtt_error, None) if mqtt_error else ("sent", None, None)
        verdict, error, wait = self._post(job)
        if verdict == "sent" and mqtt_error:
            error = mqtt_error  # kept for the record; the webhook carried the event
        return verdict, error, wait

    def _publish_mqtt(self, job: _Job) -> str | None:
        """Publish on the order topic (beside a webhook: on the first attempt only, as
        the dispatcher does for order.created); the error, None when acknowledged."""
        if job.site is None or self._publish is None or (job.url and job.n > 1):
            return None
        try:
            self._publish(job.site, job.supplier_id, job.body)
        except Exception as exc:
            log.warning("supplier event %d: MQTT publish failed: %r", job.event_id, exc)
            return safe_text(f"mqtt publish failed: {exc!r}")
        log.info(
            "supplier event %d: published on the order topic of %s",
            job.event_id,
            job.supplier_id,
        )
        return None

    def _post(self, job: _Job) -> tuple[str, str | None, float | None]:
        assert job.url is not None
        assert job.secret is not None
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
            redact_url(
                job.url
            ),  # a path may carry a token: host only, as order attempts log
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


def _site_of(s: Session, ev: SupplierEvent) -> str | None:
    """The site of the event's order: its order topic's first level."""
    if ev.order_id is not None:
        site = s.scalar(select(Order.site_id).where(Order.id == ev.order_id))
        if site:
            return str(site)
    order = (ev.payload.get("data") or {}).get("order") or {}
    site = order.get("site") if isinstance(order, dict) else None
    return site if isinstance(site, str) and site else None


_SKIPPED = _Job(0, 0, b"", "", "", "", None)
