"""What a supplier webhook looks like on the wire: the order body, Standard Webhooks
signature headers (two signatures during a secret rotation) and Retry-After parsing.

Shared by the order dispatcher and the supplier event sender.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import orjson
from standardwebhooks.webhooks import Webhook

from jitstock.server.db.models import Order, Supplier

# Suppliers' systems log this; it names the sender and its version.
USER_AGENT = "jitstock-dispatcher/1"

__all__ = [
    "USER_AGENT",
    "order_payload",
    "parse_retry_after",
    "previous_secret",
    "sign_headers",
]


def order_payload(order: Order) -> bytes:
    """The order JSON suppliers receive (webhook body and MQTT payload)."""
    return orjson.dumps(
        {
            "id": order.id,
            "site": order.site_id,
            "bin": order.bin_id,
            "sku": order.sku_id,
            "supplier": order.supplier_id,
            "qty": order.qty,
            "created_ms": order.created_ms,
            "trigger": order.trigger,
        }
    )


def sign_headers(
    secret: str,
    msg_id: str,
    body: bytes,
    timestamp_s: int,
    previous_secret: str | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) for a body.

    With ``previous_secret`` (a rotation in progress) the header carries both
    signatures, space-separated, so receivers on either secret verify.
    """
    ts = datetime.fromtimestamp(timestamp_s, tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=ts, data=body.decode())
    if previous_secret:
        old = Webhook(previous_secret).sign(
            msg_id=msg_id, timestamp=ts, data=body.decode()
        )
        signature = f"{signature} {old}"
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature,
    }


def previous_secret(supplier: Supplier | None, now_ms: int) -> str | None:
    """The supplier's previous webhook secret while its rotation grace period lasts."""
    if supplier is None or not supplier.webhook_secret_previous:
        return None
    until = supplier.webhook_secret_previous_until_ms
    return supplier.webhook_secret_previous if until is None or now_ms < until else None


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
