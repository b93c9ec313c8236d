"""A demo supplier system: receives signed order webhooks, acknowledges, ships, delivers.

It is what a supplier's integrator would build against jitstock: verify the
Standard Webhooks signature, answer 2xx quickly, acknowledge the order through
the API with a promised delivery time, send a ship notice (quantity, carrier
reference) halfway to the delivery, and deliver a little ahead of the promise
(``early_s``: the put-away and the scale's confirmation take time, and the
customer judges on-time by the receipt it records).  A configurable share of
orders (``late_fraction``, spread evenly) arrives late instead, as some do from
any real supplier.  In the demo the delivery refills the simulated bin, as a
truck would; the bin's scale then receives the order by weight and closes it.
Every delivery is the versioned envelope of the OpenAPI ``webhooks``
(``{"version", "id", "type", "timestamp", "timestamp_ms", "data": {"order": …}}``):
``order.created`` brings a new order, the lifecycle events arrive on the same
endpoint, and a cancelled order (``order.cancelled``) is not shipped or delivered.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

from jitstock.clock import REAL_CLOCK, Clock

log = logging.getLogger(__name__)

# How often the delivery scheduler looks at its calendar (simulated time runs faster in the demo).
SCHEDULER_TICK_S = 0.05
# Without an explicit margin the truck is planned to arrive this share of the lead time early:
# a supplier that aims at its promise is late whenever anything on the way is slow.
EARLY_FRACTION = 0.1
# A late delivery misses its promise by this share of the lead time (drawn uniformly), well
# beyond any on-time tolerance: late means late.
LATE_BY_FRACTION = (0.2, 0.6)


@dataclass(order=True, slots=True)
class _Job:
    due_ms: int
    order_id: str = field(compare=False)
    action: str = field(compare=False)
    order: dict[str, Any] = field(compare=False)
    promised_ms: int = field(compare=False)


class DemoSupplier:
    """An HTTP endpoint for order webhooks plus a scheduler that acknowledges and delivers."""

    def __init__(
        self,
        secret: str,
        api_url: str,
        *,
        api_key: str | None = None,
        lead_time_s: float = 4 * 3600.0,
        ack_delay_s: float = 60.0,
        early_s: float | None = None,
        late_fraction: float = 0.0,
        seed: int = 0,
        clock: Clock = REAL_CLOCK,
        on_delivery: Callable[[dict[str, Any]], None] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.webhook = Webhook(secret)
        self.api = httpx.Client(
            base_url=api_url.rstrip("/"),
            timeout=10.0,
            headers={"Authorization": f"Bearer {api_key}"} if api_key else {},
        )
        if not 0.0 <= late_fraction <= 1.0:
            raise ValueError(f"late_fraction must be in [0, 1], got {late_fraction!r}")
        self.lead_time_ms = int(lead_time_s * 1000)
        self.ack_delay_ms = int(ack_delay_s * 1000)
        early = EARLY_FRACTION * lead_time_s if early_s is None else early_s
        self.early_ms = min(int(early * 1000), self.lead_time_ms)
        self.late_fraction = late_fraction
        # half an order's worth to start: the first late one comes halfway through the cycle
        self._late_credit = 0.5
        self._rng = random.Random(seed)
        # ids of the orders this supplier delivers (or delivered) after its promise
        self.late: set[str] = set()
        self.clock = clock
        self.on_delivery = on_delivery
        self.received: list[dict[str, Any]] = []
        self.rejected = 0
        self.events: list[dict[str, Any]] = []
        self.cancelled: set[str] = set()
        self._jobs: list[_Job] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        supplier = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = supplier._receive(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}/orders"
        self._threads = [
            threading.Thread(
                target=self.server.serve_forever, name="demo-supplier-http", daemon=True
            ),
            threading.Thread(
                target=self._schedule_loop, name="demo-supplier-scheduler", daemon=True
            ),
        ]

    def start(self) -> None:
        """Start listening and scheduling."""
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop listening and scheduling (also when never started)."""
        self._stop.set()
        if self._threads[0].is_alive():
            # shutdown() waits for serve_forever to return: it would block forever if it never ran
            self.server.shutdown()
        self.server.server_close()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)
        self.api.close()

    def adopt(self, order: dict[str, Any], promised_ms: int, acked: bool) -> None:
        """Take over an order this supplier promised before a restart: ship and deliver by
        ``promised_ms`` (acknowledging first unless ``acked``); ``order`` as in a webhook."""
        now = self.clock.time_ms()
        arrive = max(now, promised_ms - self.early_ms)
        with self._lock:
            self._seen.add(order["id"])
            self.received.append(order)
            jobs = [] if acked else [(now, "ack")]
            jobs += [(now + max(0, arrive - now) // 2, "ship"), (arrive, "deliver")]
            for due, action in jobs:
                heapq.heappush(
                    self._jobs, _Job(due, order["id"], action, order, promised_ms)
                )

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            delivery = self.webhook.verify(
                body, {k.lower(): v for k, v in headers.items()}
            )
        except WebhookVerificationError:
            self.rejected += 1
            return 401
        data = delivery.get("data") if isinstance(delivery, dict) else None
        order = data.get("order") if isinstance(data, dict) else None
        if not isinstance(order, dict) or "id" not in order:
            return 400
        if delivery.get("type") != "order.created":
            self._event(delivery)
            return 200
        now = self.clock.time_ms()
        with self._lock:
            if order["id"] in self._seen:
                return (
                    200  # a retried delivery of a webhook we already have: idempotent
                )
            self._seen.add(order["id"])
            self.received.append(order)
            promised = now + self.lead_time_ms
            # late orders are spread evenly (one in twenty at 5 %), not in random clumps
            self._late_credit += self.late_fraction
            if self._late_credit >= 1.0:
                self._late_credit -= 1.0
                self.late.add(order["id"])
                lo, hi = LATE_BY_FRACTION
                arrive = promised + int(self._rng.uniform(lo, hi) * self.lead_time_ms)
            else:
                arrive = promised - self.early_ms
            ack = now + self.ack_delay_ms
            for due, action in (
                (ack, "ack"),
                (ack + max(0, arrive - ack) // 2, "ship"),
                (max(arrive, ack), "deliver"),
            ):
                heapq.heappush(
                    self._jobs, _Job(due, order["id"], action, order, promised)
                )
        return 200

    def _event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("type") == "order.cancelled":
            with self._lock:
                self.cancelled.add(str(event["data"]["order"]["id"]))

    def _schedule_loop(self) -> None:
        while not self._stop.wait(SCHEDULER_TICK_S):
            now = self.clock.time_ms()
            while True:
                with self._lock:
                    if not self._jobs or self._jobs[0].due_ms > now:
                        break
                    job = heapq.heappop(self._jobs)
                try:
                    self._run(job)
                except Exception as exc:  # the API may be restarting; try again shortly
                    log.warning(
                        "demo supplier: %s of order %s failed: %s",
                        job.action,
                        job.order_id,
                        exc,
                    )
                    with self._lock:
                        heapq.heappush(
                            self._jobs,
                            _Job(
                                now + 1000,
                                job.order_id,
                                job.action,
                                job.order,
                                job.promised_ms,
                            ),
                        )

    def _run(self, job: _Job) -> None:
        with self._lock:
            if job.order_id in self.cancelled:
                return
        if job.action == "ack":
            r = self.api.post(
                f"/api/v1/orders/{job.order_id}/ack",
                json={"promised_ms": job.promised_ms},
            )
            if r.status_code not in (200, 409):
                r.raise_for_status()
            return
        if job.action == "ship":
            r = self.api.post(
                f"/api/v1/orders/{job.order_id}/ship",
                json={
                    "qty": job.order["qty"],
                    "carrier_ref": f"DEMO-{job.order_id[:8]}",
                },
            )
            if r.status_code not in (200, 409):
                r.raise_for_status()
            return
        r = self.api.get(f"/api/v1/orders/{job.order_id}")
        r.raise_for_status()
        if r.json()["state"] not in ("acknowledged", "shipped"):
            return  # cancelled, or received some other way: nothing to deliver
        # The truck arrives: the goods go into the bin and its scale receives the order.
        if self.on_delivery is not None:
            self.on_delivery(job.order)
        log.info(
            "demo supplier delivered %s",
            json.dumps({"order": job.order_id, "qty": job.order["qty"]}),
        )
