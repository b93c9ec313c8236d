"""Receiving discrepancies and supply alerts: units that did not match at receiving are
rows of ``receiving_discrepancies`` (``GET /api/v1/receiving-discrepancies``); the ones a
person should look at also raise a supply alert."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from jitstock.ratelog import RateLimitedLog
from jitstock.server.db.supplier_models import ReceivingDiscrepancy, SupplyAlert

log = logging.getLogger(__name__)
_alert_log = RateLimitedLog(log, interval_s=60.0)

UNEXPLAINED = "unexplained_stock_increase"
# Discrepancy kinds that always raise an alert (the others only when large or asked).
ALERTING_DISCREPANCIES = frozenset(
    {"weigh_in_short", "putaway_not_seen", "closed_order_receipt"}
)


def raise_alert(
    session: Session,
    kind: str,
    now_ms: int,
    *,
    bin_id: str | None = None,
    order_id: str | None = None,
    supplier_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an alert a person should look at (dashboards read supply_alerts)."""
    session.add(
        SupplyAlert(
            at_ms=now_ms,
            kind=kind,
            bin_id=bin_id,
            order_id=order_id,
            supplier_id=supplier_id,
            detail=detail,
        )
    )
    # the alert row is the record; the log line is rate-limited (a miscalibrated bin repeats)
    _alert_log.log(
        logging.WARNING,
        f"{kind}:{bin_id}",
        "supply alert %s: bin=%s order=%s %s",
        kind,
        bin_id,
        order_id,
        detail,
    )


def record_discrepancy(
    session: Session,
    kind: str,
    bin_id: str,
    qty: int,
    now_ms: int,
    *,
    order_id: str | None = None,
    receipt_id: int | None = None,
    supplier_id: str | None = None,
    detail: dict[str, Any] | None = None,
    alert: bool | None = None,
) -> ReceivingDiscrepancy:
    """Record units that did not match at receiving; alert when large (or asked to)."""
    row = ReceivingDiscrepancy(
        at_ms=now_ms,
        bin_id=bin_id,
        order_id=order_id,
        receipt_id=receipt_id,
        supplier_id=supplier_id,
        kind=kind,
        qty=qty,
        detail=detail,
    )
    session.add(row)
    if alert is None:
        alert = kind in ALERTING_DISCREPANCIES
    if alert:
        raise_alert(
            session,
            UNEXPLAINED if kind == "unexplained_increase" else f"receiving_{kind}",
            now_ms,
            bin_id=bin_id,
            order_id=order_id,
            supplier_id=supplier_id,
            detail={"qty": qty, **(detail or {})},
        )
    return row
