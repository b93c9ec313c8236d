"""Outbound alert notifications: a signed JSON webhook and/or an e-mail through SMTP.

Every alert event (raised, acknowledged, resolved) becomes one notification, queued
once the alert's transaction has committed.  Each channel has its own thread and its
own queue, in the order the events happened, so a slow mail server never holds up the
webhook and a receiver sees an alert's events in order.

A notification the receiver did not take for a passing reason — no connection, a
timeout, HTTP 408, 429 or 5xx, an SMTP 4xx — is tried again with exponential backoff
(full jitter; a ``Retry-After`` is honoured up to 10 min) while later ones wait behind
it; after :data:`RETRY_FOR_S` it is dropped and logged.  Any other answer (another 4xx,
an SMTP 5xx) drops it at once.  Outcomes are counted in
``jitstock_alert_notifications_total{channel,outcome}``.  Queued notifications do not
survive a restart: a stop sends what it can within :data:`STOP_FLUSH_S` and logs how
many were left; the alert itself is in the database and on the dashboard either way.

The webhook body is the versioned envelope of the supplier deliveries
(``version``, ``id``, ``type``, ``timestamp``, ``timestamp_ms``) with ``event`` and
``alert`` — the alert as ``GET /api/v1/alerts`` shows it, plus ``url``, its page on the
dashboard.  ``id`` (also the ``webhook-id`` header) is ``alert_<alert id>_<event>``,
the same on every retry.  With ``JITSTOCK_ALERT_WEBHOOK_SECRET`` the request is signed
per Standard Webhooks, as supplier deliveries are.  The schema is published in
``/openapi.json`` (webhooks ``alert.raised``, ``alert.acknowledged``, ``alert.resolved``).
"""

from __future__ import annotations

import base64
import collections
import email.utils
import json
import logging
import random
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from prometheus_client import CollectorRegistry, Counter
from standardwebhooks.webhooks import Webhook

from jitstock.ratelog import RateLimitedLog
from jitstock.server.redact import http_status_text, redact_url, safe_text
from jitstock.server.webhooks import envelope, parse_retry_after, sign_headers

log = logging.getLogger(__name__)

# Failures of one channel are logged at most this often.
FAILURE_LOG_INTERVAL_S = 60.0
# A backlog beyond this is dropped (newest first): an alert storm must not grow memory.
MAX_PENDING = 1000
SMTP_TIMEOUT_S = 10.0
WEBHOOK_TIMEOUT_S = 10.0
# How long a notification is retried before it is dropped: a receiver down overnight
# still gets the night's alerts in the morning.
RETRY_FOR_S = 24 * 3600.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
RETRY_AFTER_CAP_S = 600.0
# What a stop may spend sending the queue (no retries then): SIGTERM ends the server in 5 s.
STOP_FLUSH_S = 2.0
USER_AGENT = "jitstock-alerts/1"
# The events an alert goes through, in order; the webhook's type is "alert.<event>".
EVENTS = ("raised", "acknowledged", "resolved")


class NotifySettingRefused(ValueError):
    """A notification setting the server will not start with (the message says which)."""


@dataclass(slots=True, frozen=True)
class NotifyConfig:
    """Where notifications go; every field optional (nothing set: no notifications)."""

    webhook_url: str | None = None
    webhook_secret: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "jitstock@localhost"
    email_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # the dashboard's base URL: each notification links to the alert's bin or order
    link_base: str = "http://127.0.0.1:8000"
    retry_for_s: float = RETRY_FOR_S
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return bool(self.webhook_url or (self.smtp_host and self.email_to))

    def check(self) -> None:
        """Refuse settings no notification could be sent with (NotifySettingRefused)."""
        if self.webhook_url is not None:
            parts = urlsplit(self.webhook_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise NotifySettingRefused(
                    "JITSTOCK_ALERT_WEBHOOK_URL must be an http:// or https:// URL "
                    f"with a host (got {redact_url(self.webhook_url)!r})"
                )
        if self.webhook_secret is not None:
            secret = self.webhook_secret
            try:
                key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
                if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
                    raise ValueError("not 'whsec_' and 24 to 64 bytes")
                Webhook(secret)
            except (
                Exception
            ) as exc:  # binascii.Error is a ValueError; the library's own
                raise NotifySettingRefused(
                    "JITSTOCK_ALERT_WEBHOOK_SECRET must be a Standard Webhooks secret "
                    "('whsec_' + base64 of 24 to 64 random bytes); make one with: "
                    "python3 -c \"import base64,secrets;print('whsec_'+"
                    'base64.b64encode(secrets.token_bytes(32)).decode())"'
                    f" ({exc})"
                ) from exc
        for addr in self.email_to:
            name, parsed = email.utils.parseaddr(addr)
            if "@" not in parsed or parsed != addr:
                raise NotifySettingRefused(
                    f"JITSTOCK_ALERT_EMAIL_TO: {addr!r} is not an e-mail address "
                    "(comma-separated plain addresses, e.g. line3@plant.example)"
                )


# -- what is sent --


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def alert_url(link_base: str, alert: dict[str, Any]) -> str:
    """The alert's page on the dashboard: its bin, else its order, else the alerts list."""
    base = link_base.rstrip("/")
    if alert.get("bin_id"):
        return f"{base}/#/bin/{quote(str(alert['bin_id']), safe='')}"
    if alert.get("order_id"):
        return f"{base}/#/orders/{quote(str(alert['order_id']), safe='')}"
    return f"{base}/#/alerts"


def event_ms(event: str, alert: dict[str, Any]) -> int:
    """When the event happened: the alert's opened, acknowledged or resolved time."""
    key = {"acknowledged": "acked_ms", "resolved": "resolved_ms"}.get(event)
    at = alert.get(key) if key else None
    return int(at if at is not None else alert["opened_ms"])


def notification(event: str, alert: dict[str, Any], link_base: str) -> dict[str, Any]:
    """The webhook body of one alert event (the e-mail says the same in words)."""
    public = {k: v for k, v in alert.items() if k != "event"}
    public["url"] = alert_url(link_base, alert)
    body = envelope(
        f"alert.{event}", f"alert_{alert['id']}_{event}", event_ms(event, alert), {}
    )
    del body["data"]
    body["event"] = event
    body["alert"] = public
    return body


def _one_line(text: Any) -> str:
    """Text safe for a mail header: control characters (CR/LF included) become spaces."""
    return "".join(c if c.isprintable() else " " for c in str(text)).strip()


def email_message(
    event: str, alert: dict[str, Any], link_base: str, sender: str, to: tuple[str, ...]
) -> EmailMessage:
    """The alert event as a mail a line manager reads on a phone."""
    headline = _one_line(alert.get("headline") or alert.get("message") or alert["kind"])
    prefix = {
        "raised": str(alert.get("severity", "alert")).upper(),
        "acknowledged": f"Acknowledged by {_one_line(alert.get('acked_by') or '?')}",
        "resolved": "Resolved",
    }.get(event, event)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = f"[jitstock] {prefix}: {headline}"[:250]
    msg["Date"] = email.utils.formatdate(event_ms(event, alert) / 1000, usegmt=True)
    # one thread per alert in a mail client
    msg["Message-ID"] = f"<jitstock-alert-{alert['id']}-{event}@jitstock>"
    if event != "raised":
        msg["In-Reply-To"] = msg["References"] = (
            f"<jitstock-alert-{alert['id']}-raised@jitstock>"
        )
    about = [
        ("Bin", alert.get("bin_id")),
        ("Area", alert.get("area")),
        ("Part", alert.get("sku")),
        (
            "Supplier",
            f"{alert['supplier_name']} ({alert['supplier_id']})"
            if alert.get("supplier_name")
            else alert.get("supplier_id"),
        ),
        (
            "Order",
            f"{alert['order_id']} ({alert['order_state']})"
            if alert.get("order_state")
            else alert.get("order_id"),
        ),
        ("Agent", alert.get("agent_id")),
    ]
    when = [
        ("Opened", _iso(alert.get("opened_ms"))),
        (
            "Acknowledged",
            f"{_iso(alert['acked_ms'])} by {alert.get('acked_by') or '?'}"
            if alert.get("acked_ms") is not None
            else None,
        ),
        ("Resolved", _iso(alert.get("resolved_ms"))),
    ]
    lines = [headline, ""]
    if event == "raised":
        lines += [f"What to do: {alert.get('what_to_do') or ''}", ""]
    lines += [f"Open: {alert_url(link_base, alert)}", ""]
    lines += [f"Severity: {alert.get('severity')}"]
    lines += [f"{k}: {v}" for k, v in when + about if v is not None]
    lines += [
        "",
        f"Alert {alert['id']}: {alert.get('kind')} on {alert.get('entity')}; "
        f"{alert.get('message', '')}",
    ]
    if alert.get("detail"):
        lines.append(f"Detail: {json.dumps(alert['detail'], sort_keys=True)}")
    msg.set_content("\n".join(lines))
    return msg


# -- delivery --


@dataclass(slots=True)
class _Note:
    event: str
    alert: dict[str, Any]
    queued_at: float
    attempts: int = 0


@dataclass(slots=True, frozen=True)
class _Verdict:
    """An attempt's outcome: sent, or retry (after ``after_s`` if the receiver said), or drop."""

    outcome: str  # "sent" | "retry" | "drop"
    why: str = ""
    after_s: float | None = None


SENT = _Verdict("sent")


class _Channel:
    """One channel's queue and thread: notifications in order, the head retried until taken."""

    def __init__(
        self,
        name: str,
        send: Callable[[_Note], _Verdict],
        config: NotifyConfig,
        counter: Counter,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._send = send
        self._now = now
        self._config = config
        self._counter = counter
        self._queue: collections.deque[_Note] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._bad = RateLimitedLog(log, interval_s=FAILURE_LOG_INTERVAL_S)
        self._thread = threading.Thread(
            target=self._run, name=f"jitstock-notify-{name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def put(self, event: str, alert: dict[str, Any]) -> None:
        """Queue one alert event behind the others (dropped when MAX_PENDING wait)."""
        with self._cond:
            if len(self._queue) >= MAX_PENDING:
                self._counter.labels(self.name, "dropped").inc()
                self._bad.log(
                    logging.WARNING,
                    "full",
                    "alert %s: %d notifications waiting; dropping alert %s %s",
                    self.name,
                    len(self._queue),
                    alert.get("id"),
                    event,
                )
                return
            self._queue.append(_Note(event, alert, self._now()))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(STOP_FLUSH_S + SMTP_TIMEOUT_S + 1)

    def _attempt(self, note: _Note) -> _Verdict:
        note.attempts += 1
        try:
            return self._send(note)
        except Exception as exc:  # a bug or an odd alert must not end the channel
            log.exception(
                "alert %s: sending alert %s failed", self.name, note.alert.get("id")
            )
            return _Verdict("drop", f"{type(exc).__name__}")

    def _delay(self, note: _Note, verdict: _Verdict) -> float:
        if verdict.after_s is not None:
            return min(max(verdict.after_s, 0.0), RETRY_AFTER_CAP_S)
        cfg = self._config
        cap = min(
            cfg.backoff_cap_s, cfg.backoff_base_s * 2 ** min(note.attempts - 1, 30)
        )
        return random.uniform(0, cap)

    def step(self) -> float | None:
        """One try at the head of the queue.

        None when the head is done with (sent or dropped) or the queue is empty; else
        the seconds to wait before trying it again."""
        with self._cond:
            if not self._queue:
                return None
            note = self._queue[0]
        verdict = self._attempt(note)
        if verdict.outcome == "retry":
            if self._now() - note.queued_at < self._config.retry_for_s:
                self._counter.labels(self.name, "retried").inc()
                self._bad.log(
                    logging.WARNING,
                    "retry",
                    "alert %s: %s; alert %s %s will be sent again",
                    self.name,
                    verdict.why,
                    note.alert.get("id"),
                    note.event,
                )
                return self._delay(note, verdict)
            verdict = _Verdict(
                "drop", f"{verdict.why}; retried for {self._config.retry_for_s:.0f} s"
            )
        self._done(note, verdict)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
            delay = self.step()
            if delay is not None:
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, delay)
        self._flush()

    def pending(self) -> list[tuple[Any, str]]:
        """(alert id, event) of the notifications waiting, head first."""
        with self._cond:
            return [(n.alert.get("id"), n.event) for n in self._queue]

    def _done(self, note: _Note, verdict: _Verdict) -> None:
        with self._cond:
            if self._queue and self._queue[0] is note:
                self._queue.popleft()
        if verdict.outcome == "sent":
            self._counter.labels(self.name, "sent").inc()
            return
        self._counter.labels(self.name, "dropped").inc()
        self._bad.log(
            logging.WARNING,
            "drop",
            "alert %s: %s; alert %s %s not notified",
            self.name,
            verdict.why,
            note.alert.get("id"),
            note.event,
        )

    def _flush(self) -> None:
        """On stop: one try for each queued notification while STOP_FLUSH_S lasts."""
        deadline = time.monotonic() + STOP_FLUSH_S
        while self._queue and time.monotonic() < deadline:
            note = self._queue[0]
            verdict = self._attempt(note)
            self._done(
                note,
                verdict
                if verdict.outcome != "retry"
                else _Verdict("drop", verdict.why),
            )
        if self._queue:
            self._counter.labels(self.name, "dropped").inc(len(self._queue))
            log.warning(
                "alert %s: stopping with %d notifications not sent (the alerts are on "
                "the dashboard)",
                self.name,
                len(self._queue),
            )
            self._queue.clear()


def _http_verdict(resp: httpx.Response) -> _Verdict:
    if resp.is_success:
        return SENT
    why = f"answered {http_status_text(resp.status_code)}"
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        after = parse_retry_after(resp.headers.get("retry-after"), time.time())
        return _Verdict("retry", why, after)
    return _Verdict("drop", why)


def _smtp_verdict(exc: Exception) -> _Verdict:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = any(400 <= c < 500 for c in codes)
        return _Verdict(
            "retry" if transient else "drop", f"recipients refused {sorted(set(codes))}"
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        transient = 400 <= exc.smtp_code < 500
        return _Verdict("retry" if transient else "drop", f"SMTP {exc.smtp_code}")
    # refused connection, timeout, a server that hung up: passing
    return _Verdict("retry", safe_text(f"{type(exc).__name__}: {exc}"))


class Notifier:
    """Queues alert events and sends them on their channels' threads."""

    def __init__(
        self,
        config: NotifyConfig,
        http: httpx.Client | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        config.check()
        self.config = config
        self._http = http
        self.outcomes = Counter(
            "jitstock_alert_notifications",
            "Alert notifications by channel and outcome (sent, retried, dropped)",
            ["channel", "outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._channels: list[_Channel] = []
        if config.webhook_url:
            self._channels.append(
                _Channel("webhook", self._post, config, self.outcomes)
            )
        if config.smtp_host and config.email_to:
            self._channels.append(_Channel("email", self._mail, config, self.outcomes))
        self._started = False

    def start(self) -> None:
        """Start the channels' threads (a no-op when nothing is configured)."""
        if not self._started:
            self._started = True
            for channel in self._channels:
                channel.start()

    def stop(self) -> None:
        """Send what is queued (for at most STOP_FLUSH_S), then stop."""
        if self._started:
            for channel in self._channels:
                channel.stop()
            self._started = False

    def notify(self, event: str, alert: dict[str, Any]) -> None:
        """Queue one alert event ('raised', 'acknowledged' or 'resolved') on every channel.

        ``alert`` is the alert as the API shows it (``alert_text.describe``'s output)."""
        for channel in self._channels:
            channel.put(event, alert)

    def _post(self, note: _Note) -> _Verdict:
        cfg = self.config
        assert cfg.webhook_url is not None
        payload = notification(note.event, note.alert, cfg.link_base)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if cfg.webhook_secret:
            headers.update(
                sign_headers(cfg.webhook_secret, payload["id"], body, int(time.time()))
            )
        else:
            headers["webhook-id"] = payload["id"]
            headers["webhook-timestamp"] = str(int(time.time()))
        client = self._http or httpx
        try:
            resp = client.post(
                cfg.webhook_url,
                content=body,
                headers=headers,
                timeout=WEBHOOK_TIMEOUT_S,
            )
        except httpx.HTTPError as exc:
            # httpx's own messages may carry the full URL: name only the error's class
            return _Verdict(
                "retry",
                f"{redact_url(cfg.webhook_url)}: {safe_text(type(exc).__name__)}",
            )
        verdict = _http_verdict(resp)
        if verdict.outcome != "sent":
            return _Verdict(
                verdict.outcome,
                f"{redact_url(cfg.webhook_url)} {verdict.why}",
                verdict.after_s,
            )
        return verdict

    def _mail(self, note: _Note) -> _Verdict:
        cfg = self.config
        assert cfg.smtp_host is not None
        msg = email_message(
            note.event, note.alert, cfg.link_base, cfg.smtp_from, cfg.email_to
        )
        try:
            with smtplib.SMTP(
                cfg.smtp_host, cfg.smtp_port, timeout=SMTP_TIMEOUT_S
            ) as smtp:
                if cfg.smtp_starttls:
                    smtp.starttls()
                if cfg.smtp_user and cfg.smtp_password:
                    smtp.login(cfg.smtp_user, cfg.smtp_password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            return _smtp_verdict(exc)
        return SENT
