"""Orders by e-mail, for suppliers without an API (issue 13): order_channel 'email'.

The dispatcher hands each attempt of such an order here instead of POSTing it:
one e-mail through the configured SMTP relay, with

* the order in words (plain text and HTML),
* the purchase order as a PDF (:mod:`jitstock.server.supplier.po_pdf`),
* two signed one-click links (:mod:`jitstock.server.supplier.links`): acknowledge
  with a promised date, and announce the shipment — pages served by
  :mod:`jitstock.server.api.routes.supplier_links`.

Everything comes from the ``order.created`` delivery the dispatcher built, so a
send never touches the state DB.  The SMTP relay's acceptance counts as sent; a
refused connection, a timeout or an SMTP error is retried like a failed webhook
(the dispatcher's backoff and attempt limit).  The Message-ID is the order's, so a
repeated send after a crash is recognisably the same message.
"""

from __future__ import annotations

import html
import logging
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

import orjson

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.catalog_cache import SupplierFacts
from jitstock.server.db.models import Supplier
from jitstock.server.redact import safe_text
from jitstock.server.settings import ServerSettings
from jitstock.server.supplier.links import LinkSigner
from jitstock.server.supplier.po_pdf import purchase_order_pdf, ship_to_lines, utc_text

log = logging.getLogger(__name__)

EMAIL_CHANNEL = "email"
# One SMTP conversation is seconds; a relay that hangs longer is retried later.
SMTP_TIMEOUT_S = 20.0
# The path the links live under (the route module serves it).
LINK_PATH = "/supplier-links/"

Verdict = Literal["sent", "retry", "failed"]


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The relay order e-mails go through."""

    host: str
    port: int = 25
    from_addr: str = "jitstock@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout_s: float = SMTP_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> SmtpConfig | None:
        """The relay from JITSTOCK_SMTP_*; None when no host is set."""
        if not settings.smtp_host:
            return None
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            from_addr=settings.smtp_from,
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )


def email_recipient(supplier: Supplier | SupplierFacts | None) -> str | None:
    """Where the supplier's orders are mailed: None unless its channel is 'email'
    ('' when it is but no address is set, which the send reports)."""
    if supplier is None or supplier.order_channel != EMAIL_CHANNEL:
        return None
    return supplier.email or ""


class EmailChannel:
    """Sends order e-mails with a PDF and signed links; one call per dispatch attempt."""

    def __init__(
        self,
        smtp: SmtpConfig | None,
        links: LinkSigner,
        base_url: str,
        *,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self._smtp = smtp
        self._links = links
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def link(self, order_id: str, action: Literal["ack", "ship"]) -> str:
        """A signed link for ``action`` on ``order_id``, valid from now."""
        token = self._links.token(order_id, action, self._clock.time_ms())
        return f"{self._base_url}{LINK_PATH}{token}"

    def send(self, to: str, body: bytes) -> tuple[Verdict, str | None]:
        """Mail one ``order.created`` delivery to ``to``: (verdict, error)."""
        if self._smtp is None:
            return "failed", "an e-mail supplier's order needs JITSTOCK_SMTP_HOST"
        if not to:
            return "failed", "the supplier's order_channel is email but it has no email"
        try:
            message = self.message(to, orjson.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            return "failed", f"order e-mail not built: {exc!r}"
        try:
            self._deliver(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("order e-mail to %s failed: %s", to, safe_text(str(exc)))
            return "retry", safe_text(f"smtp: {type(exc).__name__}: {exc}")
        log.info("order e-mail to %s accepted by %s", to, self._smtp.host)
        return "sent", None

    def message(self, to: str, delivery: Mapping[str, Any]) -> EmailMessage:
        """The e-mail for one ``order.created`` delivery."""
        assert self._smtp is not None
        order = delivery["data"]["order"]
        ship_to = order.get("ship_to") or {}
        buyer = str(ship_to.get("name") or order["site"])
        ack, ship = self.link(order["id"], "ack"), self.link(order["id"], "ship")
        valid_until = utc_text(self._clock.time_ms() + self._links.ttl_ms)
        msg = EmailMessage()
        msg["From"] = self._smtp.from_addr
        msg["To"] = to
        msg["Subject"] = (
            f"Purchase order {order['id']}: {order['qty']} x {order['sku']} for {buyer}"
        )
        msg["Date"] = formatdate(localtime=False)
        domain = self._smtp.from_addr.rpartition("@")[2] or "jitstock"
        msg["Message-ID"] = f"<po-{order['id']}@{domain}>"
        summary = _summary(order)
        msg.set_content(
            "\n".join(
                [
                    f"Please supply for {buyer}:",
                    "",
                    *summary,
                    "",
                    "Acknowledge the order and give a promised delivery date:",
                    ack,
                    "",
                    "Announce the shipment when the goods leave:",
                    ship,
                    "",
                    f"The links work until {valid_until}; anyone who has them can "
                    "use them, so do not forward this e-mail.",
                    "The purchase order is attached as a PDF.",
                ]
            )
        )
        e = html.escape
        rows = "".join(f"<li>{e(line)}</li>" for line in summary)
        msg.add_alternative(
            "<!doctype html><html><body>"
            f"<p>Please supply for {e(buyer)}:</p><ul>{rows}</ul>"
            f'<p><a href="{e(ack)}">Acknowledge and give a promised date</a></p>'
            f'<p><a href="{e(ship)}">Announce the shipment</a></p>'
            f"<p>The links work until {e(valid_until)}; anyone who has them can use "
            "them, so do not forward this e-mail. The purchase order is attached as "
            "a PDF.</p></body></html>",
            subtype="html",
        )
        pdf = purchase_order_pdf(order, buyer=buyer)
        msg.add_attachment(
            pdf,
            maintype="application",
            subtype="pdf",
            filename=f"purchase-order-{order['id']}.pdf",
        )
        return msg

    def _deliver(self, message: EmailMessage) -> None:
        cfg = self._smtp
        assert cfg is not None
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
            if cfg.starttls:
                smtp.starttls()
            if cfg.user and cfg.password:
                smtp.login(cfg.user, cfg.password)
            smtp.send_message(message)


def _summary(order: Mapping[str, Any]) -> list[str]:
    """The order in a few lines of text."""
    part = f"{order['sku']} {order.get('description') or ''}".strip()
    if order.get("supplier_sku"):
        part += f" (your part no. {order['supplier_sku']})"
    return [
        f"Order: {order['id']}",
        f"Part: {part}",
        f"Quantity: {order['qty']} {order.get('unit') or ''}".rstrip(),
        f"Needed by: {utc_text(order.get('needed_by_ms'))}",
        "Ship to: " + ", ".join(ship_to_lines(order)),
    ]
