"""One attempt of one order: mail it, sign and POST the webhook and/or publish it on
MQTT, and turn the answer into a verdict (sent, retry after a backoff, failed).

The claim before and the record after are the dispatcher's
(:mod:`jitstock.server.dispatch`); an attempt touches no database, so it can run on
any of the dispatcher's sender threads, its POST in another process
(:mod:`jitstock.server.sender`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import httpx

from jitstock.server.redact import http_status_text, redact_url, safe_text
from jitstock.server.supplier.email_channel import EmailChannel
from jitstock.server.webhooks import USER_AGENT, parse_retry_after, sign_headers

log = logging.getLogger(__name__)

# Shortest claim lease: a crashed dispatcher's order waits at most about this long.
MIN_CLAIM_LEASE_S = 60.0
# Slack on top of 4 × the request timeout, for the claim/record transactions themselves.
LEASE_MARGIN_S = 10.0
# Status codes worth retrying besides 5xx: timeout and rate limit.
RETRYABLE_4XX = frozenset({408, 429})

PublishMqtt = Callable[[str, str, bytes], None]
"""publish(site, supplier, payload) on protocol.orders_topic(site, supplier) at QoS 1; raises if not queued."""
Verdict = Literal["sent", "retry", "failed"]


class PostClient(Protocol):
    """What the dispatcher posts with: an ``httpx.Client``, or one in another process
    (jitstock.server.sender.ProcessClient)."""

    @property
    def timeout(self) -> httpx.Timeout:
        """The default per-phase timeout."""
        ...

    def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: dict[str, str],
        timeout: float | httpx.Timeout | None = ...,
    ) -> httpx.Response:
        """POST and return the response (raises httpx exceptions)."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: request timeout, backoff, attempt limit and the claim lease."""

    # Per phase (connect/read/write/pool) of one webhook request; None: the http client's.
    timeout_s: float | None = None
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    # A supplier asking for hours of quiet still gets retried within this.
    retry_after_cap_s: float = 600.0
    max_attempts: int = 12
    # How long a claimed attempt is ours; None: derived from the timeout (see lease_for).
    claim_lease_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.timeout_s is not None:
            self.lease_for(self.timeout_s)

    def lease_for(self, timeout_s: float) -> float:
        """The claim lease for a request timeout: it must outlast the slowest request.

        One request has four timed phases (connect, write, read, pool), so it can take
        up to 4 × the timeout; a lease shorter than that could let a second dispatcher
        claim an attempt that is still in flight.
        """
        if self.claim_lease_s is None:
            return max(MIN_CLAIM_LEASE_S, 4 * timeout_s + LEASE_MARGIN_S)
        if self.claim_lease_s <= 4 * timeout_s:
            raise ValueError(
                f"claim_lease_s ({self.claim_lease_s}) must exceed 4 × the request timeout ({timeout_s})"
            )
        return self.claim_lease_s

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential backoff after attempt number ``attempt`` (1-based)."""
        ceiling = min(
            self.backoff_cap_s, self.backoff_base_s * 2.0 ** min(attempt - 1, 62)
        )
        return rng.uniform(0.0, ceiling)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt did (also what on_attempt hooks and metrics receive)."""

    order_id: str
    supplier_id: str
    n: int
    verdict: Verdict
    status_code: int | None
    error: str | None
    latency_ms: float
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    order_id: str
    n: int
    site_id: str
    bin_id: str
    supplier_id: str
    body: bytes
    webhook_url: str | None
    webhook_secret: str | None
    mqtt: bool
    # During a secret rotation the old secret signs too (two signatures in one header).
    previous_secret: str | None = None
    email_to: str | None = None  # order_channel 'email': mailed instead of posted


@dataclass(frozen=True, slots=True)
class Started:
    """A webhook POST already handed to the sender process (:meth:`Attempter.begin`)."""

    t0: float  # perf_counter when it was started: the attempt's latency counts from here
    wait: Callable[[], httpx.Response]  # the answer, or the httpx exception raised


class Attempter:
    """Makes attempts (thread-safe): the channels, the request timeout and the retry policy."""

    def __init__(
        self,
        http: httpx.Client | PostClient,
        timeout: float | httpx.Timeout,
        retry: RetryPolicy,
        rng: random.Random,
        publish_mqtt: PublishMqtt | None,
        email: EmailChannel | None,
    ) -> None:
        self._http = http
        self._timeout = timeout
        self.retry = retry
        self._rng = rng
        self._rng_lock = threading.Lock()
        self._publish = publish_mqtt
        self._email = email

    def begin(self, job: Job) -> Started | None:
        """Start a webhook-only attempt's POST on the caller's thread, when the http
        client can (jitstock.server.sender.ProcessClient.begin_post): the request leaves
        now; :meth:`attempt` with the result waits for the answer.  None: not started
        (another channel, no such client, a secret that does not sign): :meth:`attempt`
        does it all, and reports what is wrong."""
        begin_post = getattr(self._http, "begin_post", None)
        if (
            begin_post is None
            or not job.webhook_url
            or not job.webhook_secret
            or job.mqtt
            or (job.email_to is not None and self._email is not None)
        ):
            return None
        t0 = time.perf_counter()
        try:
            headers = self._headers(job)
            wait = begin_post(
                job.webhook_url,
                content=job.body,
                headers=headers,
                timeout=self._timeout,
            )
        except Exception:  # a bad secret, a bad URL, a gone sender: attempt() says why
            return None
        return Started(t0, wait)

    def attempt(self, job: Job, started: Started | None = None) -> AttemptOutcome:
        """One attempt of a job (its POST perhaps already started by :meth:`begin`)."""
        t0 = started.t0 if started is not None else time.perf_counter()
        status: int | None = None
        retry_after: float | None = None
        verdict: Verdict
        error: str | None = None
        try:
            mqtt_error = self._publish_mqtt(job)
            if job.email_to is not None and self._email is not None:
                verdict, error = self._email.send(job.email_to, job.body)
            elif job.webhook_url:
                verdict, status, error, retry_after = self._post(job, started)
                if mqtt_error and verdict == "sent":
                    error = (
                        mqtt_error  # kept for the record; the webhook carried the order
                    )
            elif job.mqtt:
                verdict, error = ("retry", mqtt_error) if mqtt_error else ("sent", None)
            else:
                verdict, error = (
                    "failed",
                    f"supplier {job.supplier_id} has no webhook_url and no MQTT orders",
                )
        except (
            Exception
        ) as exc:  # a bug must not kill the worker; retry like a network error
            log.exception("dispatcher: unexpected error sending order %s", job.order_id)
            verdict, error = "retry", f"internal error: {exc!r}"
        latency_ms = (time.perf_counter() - t0) * 1000.0
        retry_in: float | None = None
        if verdict == "retry":
            if job.n >= self.retry.max_attempts:
                verdict = "failed"
                error = f"gave up after {job.n} attempts: {error}"
            elif retry_after is not None:
                retry_in = min(retry_after, self.retry.retry_after_cap_s)
            else:
                with self._rng_lock:
                    retry_in = self.retry.backoff_s(job.n, self._rng)
        return AttemptOutcome(
            job.order_id,
            job.supplier_id,
            job.n,
            verdict,
            status,
            error,
            latency_ms,
            retry_in,
        )

    def _publish_mqtt(self, job: Job) -> str | None:
        # First attempt only when a webhook also carries the order: retries are the webhook's.
        if not job.mqtt or self._publish is None or (job.webhook_url and job.n > 1):
            return None
        try:
            self._publish(job.site_id, job.supplier_id, job.body)
        except Exception as exc:
            log.warning("order %s: MQTT publish failed: %r", job.order_id, exc)
            return f"mqtt publish failed: {exc!r}"
        return None

    def _headers(self, job: Job) -> dict[str, str]:
        """The signed request headers (raises if the secret cannot sign)."""
        assert job.webhook_secret
        # Real wall time, not self._clock: the receiver checks it against its own clock.
        headers = sign_headers(
            job.webhook_secret,
            job.order_id,
            job.body,
            int(time.time()),
            job.previous_secret,
        )
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        return headers

    def _post(
        self, job: Job, started: Started | None = None
    ) -> tuple[Verdict, int | None, str | None, float | None]:
        assert job.webhook_url is not None
        if not job.webhook_secret:
            return (
                "failed",
                None,
                f"supplier {job.supplier_id} has a webhook_url but no webhook_secret",
                None,
            )
        if started is None:
            try:
                headers = self._headers(job)
            except Exception as exc:
                return (
                    "failed",
                    None,
                    f"supplier {job.supplier_id} has an invalid webhook_secret: {exc!r}",
                    None,
                )
        try:
            if started is not None:
                resp = started.wait()
            else:
                resp = self._http.post(
                    job.webhook_url,
                    content=job.body,
                    headers=headers,
                    timeout=self._timeout,
                )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return (
                "failed",
                None,
                safe_text(f"bad webhook_url {redact_url(job.webhook_url)}: {exc}"),
                None,
            )
        except httpx.TimeoutException as exc:
            return "retry", None, f"timeout: {type(exc).__name__}", None
        except httpx.TransportError as exc:
            return "retry", None, safe_text(f"{type(exc).__name__}: {exc}"), None
        code = resp.status_code
        log.info(
            "order %s: POST %s -> %d", job.order_id, redact_url(job.webhook_url), code
        )
        if 200 <= code < 300:
            return "sent", code, None, None
        # Never the body: the URL may point at an internal service whose answer
        # must not become readable through last_error and alerts.
        detail = http_status_text(code)
        if code >= 500 or code in RETRYABLE_4XX:
            return (
                "retry",
                code,
                detail,
                parse_retry_after(resp.headers.get("retry-after"), time.time()),
            )
        # 3xx (a moved endpoint must be fixed, not followed with a signed POST) and other 4xx.
        return "failed", code, detail, None
