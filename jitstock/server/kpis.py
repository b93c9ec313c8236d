"""JIT KPIs per period and area, from bin events and orders (and issue 5's inspections).

Definitions (what the dashboard's column headers mean):

- stockout events: times a bin's count reached 0 from above; stockout minutes: time at 0.
- average on hand: time-weighted units over the period, summed over the area's bins;
  days of supply: average on hand ÷ average daily consumption.
- inventory turns: consumption ÷ average on hand, annualised (by value when SKUs have a cost).
- fill rate: units received ÷ units ordered, over orders completed in the period.
- orders per week: orders created in the period ÷ its length in weeks.
- supplier on-time: completed orders received by their promised time, within the tolerance
  of ``jitstock.server.on_time`` (the scorecard uses the same rule); quality: accepted ÷
  inspected units.
- Pareto: consumption value per SKU, descending, with the cumulative share and ABC class.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.models import Bin, BinEvent, Order, Sku
from jitstock.server.on_time import is_on_time
from jitstock.server.replenish import abc

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
YEAR_DAYS = 365.0
DONE_STATES = ("delivered", "received", "closed")


def _bin_series(
    events: list[tuple[int, int, int]], current: int, start_ms: int, end_ms: int
) -> tuple[float, int, float, int]:
    """(time-weighted average, stockout events, stockout minutes, units consumed) of one bin."""
    level = events[0][2] - events[0][1] if events else current
    t = start_ms
    area = 0.0
    out_ms = 0.0
    stockouts = 0
    used = 0
    for ts, delta, after in events:
        ts = min(max(ts, start_ms), end_ms)
        area += level * (ts - t)
        if level <= 0:
            out_ms += ts - t
        if after <= 0 < level:
            stockouts += 1
        if delta < 0:
            used -= delta
        level, t = after, ts
    area += level * (end_ms - t)
    if level <= 0:
        out_ms += end_ms - t
    span = max(1, end_ms - start_ms)
    return area / span, stockouts, out_ms / 60000.0, used


def compute(
    session: Session, start_ms: int, end_ms: int, area: str | None = None
) -> dict[str, Any]:
    """Every KPI table for [start_ms, end_ms), optionally for one area."""
    bins_stmt = select(Bin.id, Bin.area, Bin.sku_id, Bin.on_hand, Sku.unit_cost).join(
        Sku, Sku.id == Bin.sku_id
    )
    if area:
        bins_stmt = bins_stmt.where(Bin.area == area)
    bins = session.execute(bins_stmt).all()
    area_of = {b: (a or "-") for b, a, *_ in bins}
    sku_of = {b: s for b, _a, s, *_ in bins}
    cost_of = {b: c for b, *_r, c in bins}
    current = {b: oh for b, _a, _s, oh, _c in bins}
    events: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for bin_id, ts, delta, after in session.execute(
        select(BinEvent.bin_id, BinEvent.ts_ms, BinEvent.delta, BinEvent.on_hand_after)
        .where(BinEvent.ts_ms >= start_ms, BinEvent.ts_ms < end_ms)
        .order_by(BinEvent.bin_id, BinEvent.ts_ms, BinEvent.id)
    ):
        if bin_id in area_of:
            events[bin_id].append((ts, delta, after))
    days = max(1e-9, (end_ms - start_ms) / DAY_MS)
    weeks = max(1e-9, (end_ms - start_ms) / WEEK_MS)

    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sku_value: dict[str, float] = defaultdict(float)
    sku_units: dict[str, int] = defaultdict(int)
    for b, a in area_of.items():
        avg, outs, out_min, used = _bin_series(
            events.get(b, []), current[b], start_ms, end_ms
        )
        cost = cost_of[b] or 1.0
        for key in (a, "all"):
            row = acc[key]
            row["bins"] += 1
            row["stockout_events"] += outs
            row["stockout_minutes"] += out_min
            row["avg_on_hand"] += avg
            row["avg_value"] += avg * cost
            row["consumed"] += used
            row["consumed_value"] += used * cost
        sku_value[sku_of[b]] += used * cost
        sku_units[sku_of[b]] += used

    orders = session.execute(
        select(
            Order.bin_id,
            Order.supplier_id,
            Order.state,
            Order.qty,
            Order.delivered_qty,
            Order.created_ms,
            Order.sent_ms,
            Order.promised_ms,
            Order.delivered_ms,
            Order.closed_ms,
        ).where(Order.created_ms < end_ms)
    ).all()
    suppliers: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for (
        bin_id,
        sup,
        state,
        qty,
        got,
        created,
        sent,
        promised,
        delivered,
        closed,
    ) in orders:
        if bin_id not in area_of:
            continue
        keys = (area_of[bin_id], "all")
        if created >= start_ms:
            for key in keys:
                acc[key]["orders"] += 1
            suppliers[sup]["orders"] += 1
        done_ms = delivered or closed
        if (
            state in DONE_STATES
            and done_ms is not None
            and start_ms <= done_ms < end_ms
        ):
            for key in keys:
                acc[key]["ordered_units"] += qty
                acc[key]["received_units"] += got if got is not None else qty
            s = suppliers[sup]
            s["completed"] += 1
            s["lead_time_h"] += (done_ms - created) / 3_600_000
            if promised is not None:
                s["promised"] += 1
                s["on_time"] += is_on_time(done_ms, promised, sent or created)
    _quality(session, start_ms, end_ms, suppliers)

    area_rows = []
    for key, r in sorted(acc.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        per_day = r["consumed"] / days
        turns = (
            (r["consumed_value"] / r["avg_value"]) * (YEAR_DAYS / days)
            if r["avg_value"]
            else None
        )
        area_rows.append(
            {
                "area": key,
                "bins": int(r["bins"]),
                "stockout_events": int(r["stockout_events"]),
                "stockout_minutes": round(r["stockout_minutes"], 1),
                "fill_rate": round(r["received_units"] / r["ordered_units"], 3)
                if r["ordered_units"]
                else None,
                "avg_on_hand": round(r["avg_on_hand"], 1),
                "days_of_supply": round(r["avg_on_hand"] / per_day, 2)
                if per_day
                else None,
                "inventory_turns": round(turns, 1) if turns is not None else None,
                "orders_per_week": round(r["orders"] / weeks, 2),
                "consumed": int(r["consumed"]),
            }
        )
    supplier_rows = [
        {
            "supplier": sup,
            "orders": int(s["orders"]),
            "completed": int(s["completed"]),
            "on_time_rate": round(s["on_time"] / s["promised"], 3)
            if s["promised"]
            else None,
            "quality_rate": round(s["accepted"] / s["inspected"], 3)
            if s["inspected"]
            else None,
            "avg_lead_time_h": round(s["lead_time_h"] / s["completed"], 2)
            if s["completed"]
            else None,
        }
        for sup, s in sorted(suppliers.items())
    ]
    total = sum(sku_value.values())
    # the same split as the replenishment's ABC ranking (the item crossing a boundary
    # keeps the class it starts in), so the Pareto's classes are the tiles' classes
    ranked = sorted(sku_value)
    classes = dict(
        zip(
            ranked,
            abc.abc_classes([sku_value[k] for k in ranked]).tolist(),
            strict=True,
        )
    )
    pareto: list[dict[str, Any]] = []
    cum = 0.0
    for sku, value in sorted(sku_value.items(), key=lambda kv: -kv[1]):
        if value <= 0:
            continue
        cum += value
        pareto.append(
            {
                "sku": sku,
                "consumed": sku_units[sku],
                "value": round(value, 2),
                "cum_share": round(cum / total, 4),
                "class": classes[sku],
            }
        )
    return {
        "start_ms": start_ms,
        "end_ms": end_ms,
        "area": area,
        "areas": area_rows,
        "suppliers": supplier_rows,
        "pareto": pareto,
    }


def _quality(
    session: Session, start_ms: int, end_ms: int, suppliers: dict[str, dict[str, float]]
) -> None:
    try:
        from jitstock.server.db.supplier_models import Inspection
    except ImportError:  # supplier loop not installed: no quality rate
        return
    for sup, acc_qty, rej_qty in session.execute(
        select(
            Inspection.supplier_id, Inspection.accepted_qty, Inspection.rejected_qty
        ).where(Inspection.at_ms >= start_ms, Inspection.at_ms < end_ms)
    ):
        suppliers[sup]["accepted"] += acc_qty
        suppliers[sup]["inspected"] += acc_qty + rej_qty
