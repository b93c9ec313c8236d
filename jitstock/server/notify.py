"""Outbound alert notifications: a JSON webhook and/or an e-mail through SMTP.

Sending happens on its own thread so a slow mail server never delays the alert
checker; a failure is logged (rate-limited) and dropped — the alert itself is
in the database and on the dashboard either way.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from jitstock.ratelog import RateLimitedLog
from jitstock.server.redact import http_status_text, redact_url, safe_text

log = logging.getLogger(__name__)

# Failures of one channel are logged at most this often.
FAILURE_LOG_INTERVAL_S = 60.0
# A notification backlog beyond this is dropped: an alert storm must not grow memory.
MAX_PENDING = 1000
SMTP_TIMEOUT_S = 10.0


@dataclass(slots=True, frozen=True)
class NotifyConfig:
    """Where notifications go; every field optional (nothing set: no notifications)."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "jitstock@localhost"
    email_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured."""
        return bool(self.webhook_url or (self.smtp_host and self.email_to))


class Notifier:
    """Queues alert events and sends them from a worker thread."""

    def __init__(self, config: NotifyConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self._http = http
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._bad = RateLimitedLog(log, interval_s=FAILURE_LOG_INTERVAL_S)
        self.sent = 0

    def start(self) -> None:
        """Start the sender thread (a no-op when nothing is configured)."""
        if self.config.enabled and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="jitstock-notify", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Send what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=SMTP_TIMEOUT_S + 5)
            self._thread = None

    def notify(self, event: str, alert: dict[str, Any]) -> None:
        """Queue one alert event ('raised' or 'resolved')."""
        if not self.config.enabled:
            return
        try:
            self._queue.put_nowait({"event": event, "alert": alert})
        except queue.Full:
            self._bad.log(logging.WARNING, "full", "notification queue full; dropping")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.send_now(item["event"], item["alert"])

    def send_now(self, event: str, alert: dict[str, Any]) -> None:
        """Send one alert event on every configured channel (errors logged, not raised)."""
        cfg = self.config
        if cfg.webhook_url:
            try:
                client = self._http or httpx
                resp = client.post(
                    cfg.webhook_url,
                    json={"event": event, "alert": alert},
                    timeout=SMTP_TIMEOUT_S,
                )
                if resp.is_success:
                    self.sent += 1
                else:
                    self._bad.log(
                        logging.WARNING,
                        "webhook",
                        "alert webhook %s failed: %s",
                        redact_url(cfg.webhook_url),
                        http_status_text(resp.status_code),
                    )
            except httpx.HTTPError as exc:
                # httpx's own messages may carry the full URL; log only the redacted one
                self._bad.log(
                    logging.WARNING,
                    "webhook",
                    "alert webhook %s failed: %s",
                    redact_url(cfg.webhook_url),
                    safe_text(type(exc).__name__),
                )
        if cfg.smtp_host and cfg.email_to:
            try:
                self._mail(event, alert)
                self.sent += 1
            except (OSError, smtplib.SMTPException) as exc:
                self._bad.log(logging.WARNING, "smtp", "alert e-mail failed: %s", exc)

    def _mail(self, event: str, alert: dict[str, Any]) -> None:
        cfg = self.config
        assert cfg.smtp_host is not None
        msg = EmailMessage()
        msg["From"] = cfg.smtp_from
        msg["To"] = ", ".join(cfg.email_to)
        msg["Subject"] = (
            f"[jitstock] {event}: {alert.get('kind')} {alert.get('entity')}"
        )
        lines = [str(alert.get("message", "")), ""]
        lines += [
            f"{k}: {v}" for k, v in alert.items() if v is not None and k != "message"
        ]
        msg.set_content("\n".join(lines))
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls()
            if cfg.smtp_user and cfg.smtp_password:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(msg)
