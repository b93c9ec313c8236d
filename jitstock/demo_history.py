"""Past weeks of a demo plant: picks, orders and deliveries, written to the state DB before the server starts.

The replenishment engine learns from history (a week of daily demand before it
trusts a bin's own numbers, past deliveries for lead times, consumption value
for ABC classes).  A demo that starts empty shows class C, demand 0 and no days
of supply everywhere; this module plays each bin's simulated demand model
(``firmware_sim.demand``, the same model the live scales are picked by) over
the past ``HISTORY_DAYS`` with the demo's own reorder rule and suppliers, and
writes what the server would have recorded: one consumption event per pick,
one closed order per replenishment (created, sent, acknowledged with a
promise, shipped, received by the bin's scale) and the refill that closed it.
An order whose delivery falls after the history's end stays open as it stands
then (sent, acknowledged or shipped), for the live demo's supplier to deliver.
The bin's last level (every delivery before the end included) is where its
simulated scale starts, so the live counts continue the history without a jump.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, select

from jitstock.firmware_sim.demand import BinDemand, DemandModel
from jitstock.server.db.models import BinEvent, Order
from jitstock.server.db.session import SessionFactory, transaction

# Two weeks and a day: the policy needs a week (whole days) to trust a bin's own numbers
# and another week of one-step forecast errors after its 7-day warm-up for σ of demand;
# the KPI page's default week is inside it.
HISTORY_DAYS = 15
DAY_MS = 86_400_000
# Reorder latency in the past: sensing the crossing pick and sending the order.
ORDER_SENT_AFTER_MS = 300
# The truck unloads, the scale settles and the edge's stability window passes before
# the receipt is on record (the live demo measures 1-2 s).
PUTAWAY_MS = 1_500
# A late delivery misses its promise by this share of the lead time (as the live supplier).
LATE_BY_FRACTION = (0.2, 0.6)
# Rows per INSERT statement: large enough to be fast, small enough for SQLite's limits.
INSERT_CHUNK = 5_000


@dataclass(slots=True, frozen=True)
class SupplierHabits:
    """How a demo supplier behaved: its promise, how early it aims, how often it is late."""

    lead_time_s: float
    ack_delay_s: float
    early_s: float
    late_fraction: float


@dataclass(slots=True, frozen=True)
class BinPast:
    """What one bin's history is played from."""

    bin: str
    sku: str
    supplier: str
    demand: BinDemand
    reorder_point: int
    order_qty: int
    start_count: int


@dataclass(slots=True)
class History:
    """The rows of one bin's history and the level it ended at."""

    events: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    final_count: int


def play(
    past: BinPast,
    habits: SupplierHabits,
    site: str,
    start_ms: int,
    end_ms: int,
    seed: int,
) -> History:
    """Play one bin's demand from start to end under an (s, Q) rule with one open order at a time."""
    model = DemandModel({past.bin: past.demand}, seed=seed)
    rng = random.Random(seed)
    lead_ms = int(habits.lead_time_s * 1000)
    late_credit = 0.5  # as the live supplier: late orders spread evenly
    level = past.start_count
    events: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    arrival: tuple[int, int] | None = None  # (ms the scale records it, qty)
    span_s = (end_ms - start_ms) / 1000
    for pick in model.until(span_s):
        t = start_ms + int(pick.t * 1000)
        if arrival is not None and arrival[0] <= t:
            level += arrival[1]
            events.append(_event(past.bin, arrival[0], "refill", arrival[1], level))
            arrival = None
        took = min(level, pick.n)
        if took <= 0:
            continue  # an empty bin: the line waits, nothing is recorded
        level -= took
        events.append(_event(past.bin, t, "consumption", -took, level))
        if arrival is None and level <= past.reorder_point:
            late_credit += habits.late_fraction
            late = late_credit >= 1.0
            if late:
                late_credit -= 1.0
            order, arrives = _order(past, habits, site, t, lead_ms, late, rng)
            orders.append(order)
            arrival = (arrives, past.order_qty)
    if arrival is not None:
        if arrival[0] < end_ms:
            # delivered after the last pick but before now: the bin holds it
            level += arrival[1]
            events.append(_event(past.bin, arrival[0], "refill", arrival[1], level))
        else:
            # still on its way now: open, for the live demo's supplier to deliver
            _leave_open(orders[-1], end_ms)
    return History(events, orders, level)


def _leave_open(order: dict[str, Any], end_ms: int) -> None:
    """An order whose delivery falls after the history's end, as it stands at the end."""
    order.update(delivered_ms=None, delivered_qty=None, closed_ms=None)
    if order["shipped_ms"] < end_ms:
        order["state"] = "shipped"
    elif order["acked_ms"] < end_ms:
        order.update(state="acknowledged", shipped_ms=None)
    else:
        # not acknowledged yet (the live supplier acknowledges it with this promise)
        order.update(shipped_ms=None, acked_ms=None)
        if order["sent_ms"] < end_ms:
            order["state"] = "sent"
        else:
            order.update(state="created", sent_ms=None)


def _event(bin_id: str, ts: int, kind: str, delta: int, after: int) -> dict[str, Any]:
    return {
        "bin_id": bin_id,
        "ts_ms": ts,
        "kind": kind,
        "delta": delta,
        "on_hand_after": after,
    }


def _order(
    past: BinPast,
    habits: SupplierHabits,
    site: str,
    t: int,
    lead_ms: int,
    late: bool,
    rng: random.Random,
) -> tuple[dict[str, Any], int]:
    sent = t + ORDER_SENT_AFTER_MS
    promised = sent + lead_ms
    if late:
        truck = promised + int(rng.uniform(*LATE_BY_FRACTION) * lead_ms)
    else:
        truck = promised - int(habits.early_s * 1000)
    acked = sent + int(habits.ack_delay_s * 1000)
    arrives = max(truck, acked) + PUTAWAY_MS
    order = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "bin_id": past.bin,
        "sku_id": past.sku,
        "supplier_id": past.supplier,
        "site_id": site,
        "qty": past.order_qty,
        "state": "closed",
        "created_ms": t,
        "sent_ms": sent,
        "acked_ms": acked,
        "promised_ms": promised,
        "shipped_ms": acked + max(0, truck - acked) // 2,
        "delivered_ms": arrives,
        "delivered_qty": past.order_qty,
        "closed_ms": arrives,
        "attempts": 1,
        "trigger": {"history": "demo"},
    }
    return order, arrives


def build_history(
    site: str,
    bins: Sequence[BinPast],
    habits: dict[str, SupplierHabits],
    now_ms: int,
    *,
    days: int = HISTORY_DAYS,
    seed: int = 0,
) -> dict[str, History]:
    """Every bin's past ``days`` up to ``now_ms``, by bin (what ``write_history`` writes)."""
    start_ms = now_ms - days * DAY_MS
    return {
        past.bin: play(
            past, habits[past.supplier], site, start_ms, now_ms, seed * 1000 + i + 7
        )
        for i, past in enumerate(bins)
    }


def write_history(
    session_factory: SessionFactory,
    site: str,
    bins: Sequence[BinPast],
    habits: dict[str, SupplierHabits],
    now_ms: int,
    *,
    days: int = HISTORY_DAYS,
    seed: int = 0,
) -> dict[str, int]:
    """Write every bin's past ``days`` to the state DB; returns each bin's level now."""
    final: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    for bin_id, h in build_history(
        site, bins, habits, now_ms, days=days, seed=seed
    ).items():
        events += h.events
        orders += h.orders
        final[bin_id] = h.final_count
    with transaction(session_factory) as s:
        conn = s.connection()
        for model, rows in ((Order, orders), (BinEvent, events)):
            if not rows:
                continue
            # the driver's own executemany: SQLAlchemy's per-row parameter handling would
            # take longer than SQLite's insert itself
            table = cast(Table, model.__table__)
            cols = list(rows[0])
            trigger = "trigger" in cols
            # columns in our order (a compiled insert() lists them in the table's order)
            sql = (
                f"INSERT INTO {table.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join('?' for _ in cols)})"
            )
            params = [
                tuple(
                    json.dumps(r[c]) if trigger and c == "trigger" else r[c]
                    for c in cols
                )
                for r in rows
            ]
            conn.exec_driver_sql(sql, params)
    return final


def has_history(session_factory: SessionFactory) -> bool:
    """Whether the state DB already holds bin events (a demo restarted over its data dir)."""
    with transaction(session_factory, readonly=True) as s:
        return s.scalar(select(BinEvent.id).limit(1)) is not None
