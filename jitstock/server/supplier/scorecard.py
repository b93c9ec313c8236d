"""Supplier scorecards: on time, lead time vs quoted, acknowledgement time, fill accuracy,
weigh-in variance, quality and escalations over a period (orders created in it)."""

from __future__ import annotations

import csv
import io
import re
import statistics
from dataclasses import asdict, dataclass, fields

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.server.csvcells import escape_formula
from jitstock.server.db.models import Order
from jitstock.server.db.supplier_models import (
    Escalation,
    Inspection,
    Receipt,
    SupplierItem,
)
from jitstock.server.on_time import is_on_time

RECEIVED_STATES = ("part_received", "received", "closed", "delivered")
_PERIOD_RE = re.compile(r"^(\d{1,5})([hdw])$")
_UNIT_MS = {"h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
DEFAULT_PERIOD = "30d"


def period_ms(period: str) -> int:
    """Length of a period like '24h', '30d', '4w' in milliseconds (ValueError otherwise)."""
    m = _PERIOD_RE.match(period.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"period must look like 24h, 30d or 4w, got {period!r}")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass(slots=True)
class Scorecard:
    """One supplier's numbers over [start_ms, end_ms); rates are 0..1, None without data."""

    supplier_id: str
    start_ms: int
    end_ms: int
    orders: int
    orders_received: int
    orders_cancelled: int
    on_time_rate: float | None
    lead_time_mean_s: float | None
    lead_time_std_s: float | None
    quoted_lead_time_mean_s: float | None
    lead_time_vs_quoted_mean_s: float | None
    ack_time_mean_s: float | None
    units_ordered: int
    units_received: int
    units_over: int
    units_short: int
    fill_accuracy: float | None
    weigh_in_over: int
    weigh_in_short: int
    units_inspected: int
    units_rejected: int
    quality_rate: float | None
    escalations: int


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def scorecard(
    session: Session, supplier_id: str, start_ms: int, end_ms: int
) -> Scorecard:
    """Compute a supplier's scorecard from its orders, receipts, inspections and escalations."""
    orders = list(
        session.scalars(
            select(Order).where(
                Order.supplier_id == supplier_id,
                Order.created_ms >= start_ms,
                Order.created_ms < end_ms,
            )
        )
    )
    quoted: dict[str, int | None] = {
        row[0]: row[1]
        for row in session.execute(
            select(SupplierItem.sku_id, SupplierItem.quoted_lead_time_s).where(
                SupplierItem.supplier_id == supplier_id
            )
        )
    }
    received = [o for o in orders if o.state in RECEIVED_STATES and o.delivered_ms]
    on_time: list[bool] = []
    leads: list[float] = []
    vs_quoted: list[float] = []
    quotes: list[float] = []
    acks: list[float] = []
    ordered = got = over = short = 0
    for o in orders:
        base = o.sent_ms or o.created_ms
        if o.acked_ms is not None:
            acks.append((o.acked_ms - base) / 1000)
    for o in received:
        base = o.sent_ms or o.created_ms
        assert o.delivered_ms is not None
        lead_s = (o.delivered_ms - base) / 1000
        leads.append(lead_s)
        q = quoted.get(o.sku_id)
        if q:
            quotes.append(float(q))
            vs_quoted.append(lead_s - q)
        due = o.promised_ms or (base + q * 1000 if q else None)
        if due is not None:
            on_time.append(is_on_time(o.delivered_ms, due, base))
        qty_in = o.delivered_qty or 0
        ordered += o.qty
        got += qty_in
        over += max(0, qty_in - o.qty)
        short += max(0, o.qty - qty_in)
    ids = [o.id for o in orders]
    w_over = w_short = 0
    inspected = rejected = 0
    if ids:
        for qty, accepted, scale in session.execute(
            select(Receipt.qty, Receipt.accepted_qty, Receipt.scale_qty).where(
                Receipt.order_id.in_(ids),
                Receipt.method != "scale",
                Receipt.scale_qty.is_not(None),
            )
        ):
            diff = (scale or 0) - (accepted if accepted is not None else qty)
            w_over += max(0, diff)
            w_short += max(0, -diff)
        inspected, rejected = session.execute(
            select(
                func.coalesce(
                    func.sum(Inspection.accepted_qty + Inspection.rejected_qty), 0
                ),
                func.coalesce(func.sum(Inspection.rejected_qty), 0),
            ).where(Inspection.order_id.in_(ids))
        ).one()
    escalations = session.scalar(
        select(func.count())
        .select_from(Escalation)
        .where(
            Escalation.supplier_id == supplier_id,
            Escalation.at_ms >= start_ms,
            Escalation.at_ms < end_ms,
        )
    )
    return Scorecard(
        supplier_id=supplier_id,
        start_ms=start_ms,
        end_ms=end_ms,
        orders=len(orders),
        orders_received=len(received),
        orders_cancelled=sum(o.state == "cancelled" for o in orders),
        on_time_rate=(sum(on_time) / len(on_time)) if on_time else None,
        lead_time_mean_s=_mean(leads),
        lead_time_std_s=statistics.pstdev(leads)
        if len(leads) > 1
        else (0.0 if leads else None),
        quoted_lead_time_mean_s=_mean(quotes),
        lead_time_vs_quoted_mean_s=_mean(vs_quoted),
        ack_time_mean_s=_mean(acks),
        units_ordered=ordered,
        units_received=got,
        units_over=over,
        units_short=short,
        fill_accuracy=(1 - (over + short) / ordered) if ordered else None,
        weigh_in_over=w_over,
        weigh_in_short=w_short,
        units_inspected=int(inspected),
        units_rejected=int(rejected),
        quality_rate=(1 - int(rejected) / int(inspected)) if inspected else None,
        escalations=int(escalations or 0),
    )


def scorecard_csv(cards: list[Scorecard]) -> str:
    """Scorecards as CSV, one row each, with a header."""
    out = io.StringIO()
    names = [f.name for f in fields(Scorecard)]
    w = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for c in cards:
        w.writerow({k: _cell(v) for k, v in asdict(c).items()})
    return out.getvalue()


def _cell(value: object) -> object:
    # numbers as they are; text (supplier names) never as a spreadsheet formula
    if value is None:
        return ""
    return escape_formula(value) if isinstance(value, str) else value
