"""Order dispatch: the outbox relay from the orders table to supplier webhooks and MQTT.

One attempt of one order goes through three steps, none holding a transaction
open across the network:

1. **claim** (short transaction): pick a due order (state 'created',
   ``next_attempt_ms <= now``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so
   concurrent processes pick different orders), bump ``attempts`` to n with a
   compare-and-set, push ``next_attempt_ms`` out by the claim lease and insert
   attempt row n.  The lease is what a crashed process leaves behind: the order
   becomes due again when it expires, and another dispatcher retries it.
2. **send**: POST the ``order.created`` envelope (:mod:`jitstock.server.webhooks`)
   signed per Standard Webhooks (``webhook-id`` = order id, the supplier's
   idempotency key across retries) and/or publish it on
   ``jit/v1/{site}/orders/{supplier}`` at QoS 1.
3. **record** (short transaction): complete attempt row n and move the order,
   fenced on ``attempts = n`` so a late writer whose lease was taken over
   cannot overwrite the newer attempt: 2xx → 'sent'; connection errors,
   timeouts, 5xx, 408, 429 → retry after exponential backoff with full jitter
   (or the server's Retry-After, capped); other 4xx, 3xx or misconfiguration →
   'failed' with an audit row and an alert.

Delivery is at least once (a crash after the supplier answered but before
step 3 repeats the POST with the same ``webhook-id``); exactly once in effect is
the supplier's deduplication on that id.

So that dispatch is never the bottleneck (issue 12), the bookkeeping is batched and
the sends overlap: one coordinator thread claims up to ``CLAIM_BATCH`` due orders in
one transaction and records every finished attempt in one transaction, while up to
``SENDERS`` sender threads make the attempts (one order is in at most one of them:
attempt n+1 cannot be claimed before attempt n is recorded).  An order ingest decides
does not wait for a claim at all: :meth:`Dispatcher.claim_created` claims its first
attempt inside the deciding flush's transaction and :meth:`Dispatcher.submit` hands it
to the senders right after that commit.  Step 2, the attempt itself, is
:mod:`jitstock.server.order_attempt`; its POST may run in another process
(:mod:`jitstock.server.sender`), out of reach of ingest's GIL.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.models import Order, OrderAttempt, Supplier
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.dispatch_claim import claim_new
from jitstock.server.dispatch_record import record_attempts
from jitstock.server.order_attempt import (
    Attempter,
    AttemptOutcome,
    Job,
    PostClient,
    PublishMqtt,
    RetryPolicy,
    Started,
)
from jitstock.server.supplier.email_channel import EmailChannel, email_recipient
from jitstock.server.webhooks import (
    order_created_body,
    previous_secret,
)

if TYPE_CHECKING:
    from jitstock.server.metrics import Metrics

log = logging.getLogger(__name__)

ACTOR = "dispatcher"
# Orders created by another process cannot wake() us: look for them this often.
IDLE_POLL_S = 1.0
# Shortest idle wait, so a row another process holds locked does not make us spin.
MIN_WAIT_S = 0.01
# After the state DB itself failed, wait this long before claiming again.
DB_ERROR_PAUSE_S = 1.0
# Sends in flight at once (one order is only ever in one: its attempt n+1 cannot be
# claimed before attempt n is recorded); a slow supplier holds one, not all.
SENDERS = 6
# Due orders claimed in one transaction (queued for the senders; their lease covers the wait).
CLAIM_BATCH = 32
# At a stop, sends in flight get this long to finish and be recorded (a stop ends in seconds).
STOP_SENDS_S = 2.0

AlertHook = Callable[[str, dict[str, Any]], None]
"""alert(kind, detail), e.g. ("order_failed", {"order": …, "supplier": …, "error": …})."""


class Dispatcher:
    """Sends created orders to suppliers from a pool of sender threads; see the module docstring."""

    def __init__(
        self,
        session_factory: SessionFactory,
        http: httpx.Client | PostClient,
        *,
        clock: Clock = REAL_CLOCK,
        publish_mqtt: PublishMqtt | None = None,
        alert: AlertHook | None = None,
        on_attempt: Callable[[AttemptOutcome], None] | None = None,
        metrics: Metrics | None = None,
        retry: RetryPolicy | None = None,
        workers: int = SENDERS,
        idle_poll_s: float = IDLE_POLL_S,
        rng: random.Random | None = None,
        email: EmailChannel | None = None,
        **retry_overrides: Any,
    ) -> None:
        """``retry_overrides`` are RetryPolicy fields (e.g. max_attempts=…) applied over ``retry``."""
        self._factory = session_factory
        self._http = http
        self._clock = clock
        self._publish = publish_mqtt
        self._alert = alert
        self._on_attempt = on_attempt
        self._metrics = metrics
        self._email = email
        self.retry = dataclasses.replace(retry or RetryPolicy(), **retry_overrides)
        # Per-request timeout: the policy's, else the one the http client was built with.
        self._timeout: float | httpx.Timeout
        if self.retry.timeout_s is not None:
            self._timeout = self.retry.timeout_s
            slowest = self.retry.timeout_s
        else:
            t = self._timeout = http.timeout
            phases = [p for p in (t.connect, t.read, t.write, t.pool) if p is not None]
            if len(phases) < 4:
                raise ValueError(
                    "the http client has no timeout: set one, or RetryPolicy.timeout_s"
                )
            slowest = max(phases)
        self._lease_ms = int(self.retry.lease_for(slowest) * 1000)
        self._workers = max(1, workers)
        self._idle_poll_s = idle_poll_s
        self._attempter = Attempter(
            http, self._timeout, self.retry, rng or random.Random(), publish_mqtt, email
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._finished: queue.SimpleQueue[tuple[Job, AttemptOutcome]] = (
            queue.SimpleQueue()
        )
        self._unrecorded: list[tuple[Job, AttemptOutcome]] = []
        self._in_flight = 0  # claimed and not yet recorded
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the coordinator thread and its pool of senders."""
        if self._thread is not None:
            raise RuntimeError("dispatcher already started")
        self._stop.clear()
        self._pool = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="jitstock-send"
        )
        self._thread = threading.Thread(
            target=self._run, name="jitstock-dispatch", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; sends in flight get STOP_SENDS_S to finish and be recorded."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def wake(self) -> None:
        """Look for due orders now (call right after committing a new order)."""
        self._wake.set()

    def __enter__(self) -> Dispatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        """Coordinator: record finished attempts and claim due orders, each batch in one
        transaction, and hand the claimed orders to the senders (at most ``workers``
        in flight).  Sends never wait for the state DB's write lock."""
        while not self._stop.is_set():
            # Clear before looking, so a wake() during the pass is not lost.
            self._wake.clear()
            try:
                recorded = self._record_finished()
                free = CLAIM_BATCH - self._in_flight
                # a read first: an idle dispatcher never takes the write lock
                due_s = self._due_in_s()
                ready = free > 0 and due_s is not None and due_s <= 0
                jobs = self._claim_many(free) if ready else []
                self.submit(jobs)
                if recorded or jobs:
                    continue
                if due_s is None or free <= 0:
                    wait_s = (
                        self._idle_poll_s
                    )  # a finished send or a wake() ends it early
                else:
                    wait_s = min(self._idle_poll_s, max(MIN_WAIT_S, due_s))
            except Exception:
                log.exception(
                    "dispatcher: state DB error; pausing %.1fs", DB_ERROR_PAUSE_S
                )
                wait_s = DB_ERROR_PAUSE_S
            self._wake.wait(wait_s)
        # stopping: what is in flight gets a moment to finish and be recorded (else its
        # claim lease makes it due again later, to be sent with the same webhook-id)
        deadline = time.monotonic() + STOP_SENDS_S
        while self._in_flight and time.monotonic() < deadline:
            self._wake.wait(MIN_WAIT_S)
            self._wake.clear()
            try:
                self._record_finished()
            except Exception:
                log.exception("dispatcher: attempts not recorded at stop")
                break

    def _send(self, job: Job, started: Started | None = None) -> None:
        """One attempt, on a sender thread; the coordinator records it."""
        out = self._attempter.attempt(job, started)
        self._finished.put((job, out))
        self._wake.set()

    def _record_finished(self) -> int:
        """Record every finished attempt in one transaction; how many."""
        while True:
            try:
                self._unrecorded.append(self._finished.get_nowait())
            except queue.Empty:
                break
        done = self._unrecorded
        if not done:
            return 0
        self._record_many(done)  # on an error they stay, to be recorded next pass
        self._unrecorded = []
        with self._count_lock:
            self._in_flight -= len(done)
        return len(done)

    def _due_in_s(self) -> float | None:
        """Seconds until the next order is due (<= 0: due now); None: none waiting."""
        with transaction(self._factory, readonly=True) as s:
            due = s.scalar(
                select(func.min(Order.next_attempt_ms)).where(Order.state == "created")
            )
        if due is None:
            return None
        speed = float(getattr(self._clock, "speed", 1.0))
        return (due - self._clock.time_ms()) / 1000.0 / speed

    # ------------------------------------------------------------ one pass

    def run_once(self) -> int:
        """Attempt every order due now once; returns the number of attempts made."""
        done = 0
        while not self._stop.is_set():
            if self.dispatch_next() is None:
                break
            done += 1
        return done

    @contextmanager
    def _session(self, outer: Session | None) -> Iterator[Session]:
        """The caller's transaction, or a new one."""
        if outer is not None:
            yield outer
        else:
            with transaction(self._factory) as s:
                yield s

    def claim_created(self, s: Session, order_ids: list[str]) -> list[Job]:
        """Claim orders the caller's transaction just created, in that transaction.

        Ingest calls this inside the flush that decided the orders, and hands the jobs
        to :meth:`submit` after its commit: the first attempt needs no transaction (and
        no wait for the write lock) of its own.  A rollback undoes the claim with the
        orders; a crash after the commit leaves the claim lease, as a crash during any
        claimed attempt does.  Nothing is claimed while the dispatcher is not running.
        """
        if self._pool is None or self._stop.is_set():
            return []
        # set-wise (a few statements for the whole flush), not _claim per order
        return claim_new(
            s,
            order_ids,
            self._clock.time_ms(),
            self._lease_ms,
            self._publish is not None,
        )

    def submit(self, jobs: Sequence[object]) -> None:
        """Send jobs claimed by :meth:`claim_created` (after that transaction committed)."""
        pool = self._pool
        if not jobs:
            return
        if pool is None or self._stop.is_set():
            return  # stopping: their claim lease makes them due again later
        for job in jobs:
            assert isinstance(job, Job)
            with self._count_lock:
                self._in_flight += 1
            # a webhook's POST leaves now, from this thread (the committing flush's):
            # a sender thread would first wait its turn for the GIL
            started = self._attempter.begin(job)
            try:
                pool.submit(self._send, job, started)
            except RuntimeError:
                # the pool shut down meanwhile: the claim lease makes the order due again
                with self._count_lock:
                    self._in_flight -= 1
                return

    def _claim_many(self, limit: int) -> list[Job]:
        """Claim up to ``limit`` due orders in one transaction (one write lock for all)."""
        jobs: list[Job] = []
        with transaction(self._factory) as s:
            while len(jobs) < limit:
                job = self._claim(s)
                if job is None:
                    break
                jobs.append(job)
        return jobs

    def dispatch_next(self) -> AttemptOutcome | None:
        """Claim one due order and attempt it; None when nothing is due."""
        job = self._claim()
        if job is None:
            return None
        outcome = self._attempt(job)
        self._record(job, outcome)
        return outcome

    def _claim(
        self, outer: Session | None = None, only: list[str] | None = None
    ) -> Job | None:
        lease_ms = self._lease_ms
        with self._session(outer) as s:
            now = self._clock.time_ms()
            stmt = (
                select(Order)
                .where(Order.state == "created", Order.next_attempt_ms <= now)
                .order_by(Order.next_attempt_ms)
                .limit(1)
            )
            if only is not None:
                stmt = stmt.where(Order.id.in_(only))
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            order = s.scalars(stmt).first()
            if order is None:
                return None
            n = order.attempts + 1
            # Compare-and-set: on SQLite there is no row lock, the attempts value is the guard.
            claimed = s.execute(
                update(Order)
                .where(
                    Order.id == order.id,
                    Order.state == "created",
                    Order.attempts == order.attempts,
                )
                .values(attempts=n, next_attempt_ms=now + lease_ms)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            s.add(OrderAttempt(order_id=order.id, n=n, at_ms=now))
            supplier = s.get(Supplier, order.supplier_id)
            # a retry sends the bytes the first attempt sent (same webhook-id, same body)
            if order.created_body is None:
                order.created_body = order_created_body(s, order)
            body = bytes(order.created_body)
            return Job(
                order_id=order.id,
                n=n,
                site_id=order.site_id,
                bin_id=order.bin_id,
                supplier_id=order.supplier_id,
                body=body,
                webhook_url=supplier.webhook_url if supplier else None,
                webhook_secret=supplier.webhook_secret if supplier else None,
                previous_secret=previous_secret(supplier, now),
                email_to=email_recipient(supplier),
                mqtt=bool(
                    supplier and supplier.mqtt_orders and self._publish is not None
                ),
            )

    # ------------------------------------------------------------ sending

    def _attempt(self, job: Job) -> AttemptOutcome:
        return self._attempter.attempt(job)

    # ------------------------------------------------------------ recording

    def _record(self, job: Job, out: AttemptOutcome) -> None:
        self._record_many([(job, out)])

    def _record_many(self, done: list[tuple[Job, AttemptOutcome]]) -> None:
        """Record attempts in one transaction (one write lock for all), then their effects."""
        with transaction(self._factory) as s:
            marks = record_attempts(s, done, self._clock.time_ms(), ACTOR)
        for (job, out), (owned, fallback) in zip(done, marks, strict=True):
            self._after_record(job, out, owned, fallback)

    def _after_record(
        self, job: Job, out: AttemptOutcome, owned: bool, fallback: list[str]
    ) -> None:
        if not owned:
            log.warning(
                "order %s attempt %d: superseded (lease expired or state changed)",
                job.order_id,
                job.n,
            )
        elif out.verdict == "failed":
            log.error("order %s failed: %s", job.order_id, out.error)
            self._call_hook(
                self._alert,
                "order_failed",
                {
                    "order": job.order_id,
                    "bin": job.bin_id,
                    "supplier": job.supplier_id,
                    "attempts": job.n,
                    "error": out.error,
                    "fallback_order": fallback[0] if fallback else None,
                },
            )
            if fallback:
                self.wake()
        elif out.verdict == "retry":
            log.info(
                "order %s attempt %d: %s; retry in %.1fs",
                job.order_id,
                job.n,
                out.error,
                out.retry_in_s,
            )
        if self._metrics is not None:
            self._metrics.webhook_attempts.labels(outcome=out.verdict).inc()
            if out.status_code is not None:
                self._metrics.webhook_latency.observe(out.latency_ms / 1000.0)
        if self._on_attempt is not None:
            try:
                self._on_attempt(out)
            except Exception:
                log.exception("dispatcher: on_attempt hook failed")

    @staticmethod
    def _call_hook(hook: AlertHook | None, kind: str, detail: dict[str, Any]) -> None:
        if hook is None:
            return
        try:
            hook(kind, detail)
        except Exception:
            log.exception("dispatcher: alert hook failed")
