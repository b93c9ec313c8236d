"""The alert notifications jitstock sends to ``JITSTOCK_ALERT_WEBHOOK_URL``, published as
OpenAPI 3.1 ``webhooks`` (``alert.raised``, ``alert.acknowledged``, ``alert.resolved``)
beside the supplier deliveries, so a plant's integrator (a pager, Teams, an MES) can
generate models from ``/openapi.json``.  The bodies are built by
:func:`jitstock.server.notify.notification`; ``tests/server/test_alert_notify.py``
validates every body its receiver gets against these schemas.  Schemas are closed: a
field is only added or changed with a new ``version``.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model

from jitstock.server.api.webhook_schemas import doc_receiver
from jitstock.server.db.alert_models import ALERT_STATES
from jitstock.server.notify import EVENTS
from jitstock.server.webhooks import WEBHOOK_VERSION

ALERT_WEBHOOKS_DESCRIPTION = f"""\
**Every alert event** — raised, acknowledged (someone is on it), resolved (the
condition cleared, or an acknowledgement closed it) — is one POST of this envelope to
`JITSTOCK_ALERT_WEBHOOK_URL`: `{{"version": {WEBHOOK_VERSION}, "id", "type",
"timestamp", "timestamp_ms", "event", "alert"}}`, `alert` being the alert as
`GET /api/v1/alerts` shows it plus `url`, its page on the dashboard.

**Signature**: with `JITSTOCK_ALERT_WEBHOOK_SECRET` set (a Standard Webhooks secret,
`whsec_…`) the headers `webhook-id`, `webhook-timestamp` (epoch seconds of the attempt)
and `webhook-signature` = `v1,` + base64 HMAC-SHA256 with the base64-decoded part of
the secret over `{{webhook-id}}.{{webhook-timestamp}}.{{body}}`. Without a secret the
first two headers are sent and the request is not signed.

**Idempotency and order**: `id` (= `webhook-id`) is `alert_<alert id>_<event>`, the
same on every retry: deduplicate on it. One alert's events arrive in the order they
happened; an alert is raised once per incident (a condition that clears and comes
back is a new alert with a new id).

**Answer** 2xx within 10 s. No connection, a timeout, 408, 429 (`Retry-After`
honoured, up to 10 min) and 5xx are retried with exponential backoff for up to a day,
later events waiting behind; any other answer drops that one notification (logged).
Counted in `jitstock_alert_notifications_total{{channel, outcome}}`.
"""

EVENT_DESCRIPTIONS = {
    "raised": "A new alert: something on the floor or in the supply needs a person. "
    "`alert.headline` says what, `alert.what_to_do` what to do, `alert.url` where.",
    "acknowledged": "Someone acknowledged the alert (`alert.acked_by`, `alert.acked_ms`).",
    "resolved": "The alert is over (`alert.resolved_ms`): its condition cleared, or "
    "acknowledging it closed it (alerts nothing re-checks, e.g. goods at receiving).",
}
assert set(EVENT_DESCRIPTIONS) == set(EVENTS)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertNotice(_Closed):
    """The alert, as ``GET /api/v1/alerts`` shows it, with its dashboard link."""

    id: int = Field(description="alert id (`/api/v1/alerts/{id}/ack` acknowledges it)")
    kind: str = Field(
        description="what kind of incident: stockout, below_safety_stock, scale_fault, "
        "agent_offline, consumption_anomaly, unexplained_stock_increase, "
        "order_unacknowledged, order_overdue, order_failed, order_escalated, "
        "order_cancelled_by_supplier, webhook_failing, reorder_blocked, or a "
        "receiving discrepancy (e.g. weigh_in_short, closed_order_receipt); new "
        "kinds may be added"
    )
    entity: str = Field(description="what it is about, e.g. `bin:B1`, `agent:pi-1`")
    state: Literal[ALERT_STATES]  # type: ignore[valid-type]
    severity: Literal["critical", "warning"]
    message: str = Field(description="the condition in short technical words")
    headline: str = Field(description="the alert as one sentence for people")
    what_to_do: str = Field(description="the next step for the person on shift")
    url: str = Field(
        description="the alert's bin, order or the alerts list on the dashboard"
    )
    site_id: str | None
    bin_id: str | None
    area: str | None = Field(description="the bin's area")
    sku: str | None = Field(description="the part (SKU id)")
    agent_id: str | None
    order_id: str | None
    order_state: str | None
    supplier_id: str | None
    supplier_name: str | None
    opened_ms: int = Field(description="when it was raised (epoch ms)")
    acked_ms: int | None
    acked_by: str | None = Field(description="who acknowledged it (key or user name)")
    resolved_ms: int | None
    detail: dict[str, Any] | None = Field(description="kind-specific facts")


def _envelope_model(event: str) -> type[BaseModel]:
    camel = f"Alert{event.capitalize()}Event"
    type_name = f"alert.{event}"
    return create_model(
        camel,
        __base__=_Closed,
        __doc__=EVENT_DESCRIPTIONS[event],
        version=(Literal[WEBHOOK_VERSION], Field(description="envelope version")),  # type: ignore[arg-type]
        id=(str, Field(description="`alert_<alert id>_<event>`; the `webhook-id`")),
        type=(Literal[type_name], ...),  # type: ignore[arg-type]
        timestamp=(str, Field(description="when it happened (RFC 3339, UTC)")),
        timestamp_ms=(int, Field(description="the same instant in epoch ms")),
        event=(Literal[event], ...),  # type: ignore[arg-type]
        alert=(AlertNotice, ...),
    )


def register_alert_webhooks(app: FastAPI) -> None:
    """Publish the alert notification types under the OpenAPI document's ``webhooks``."""
    for event in EVENTS:
        app.webhooks.add_api_route(
            f"alert.{event}",
            doc_receiver(_envelope_model(event)),
            methods=["POST"],
            summary=f"alert.{event}",
            description=EVENT_DESCRIPTIONS[event] + "\n\n" + ALERT_WEBHOOKS_DESCRIPTION,
            operation_id=f"webhook_alert_{event}",
            tags=["alert webhooks"],
            responses={
                200: {"description": "received (any 2xx)"},
                429: {"description": "slow down: retried after `Retry-After`"},
                503: {"description": "unavailable: retried with backoff (any 5xx)"},
            },
        )
