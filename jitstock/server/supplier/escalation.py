"""Escalation to the fallback supplier, from a small scheduler thread.

An open order is escalated when

- **ack_deadline**: it is still unacknowledged (created/sent) after its
  supplier's ``ack_deadline_s``; or
- **late**: its promised delivery (else: sent + the supplier item's quoted lead
  time) falls after the bin's projected stockout — (on hand + pending put-away)
  ÷ the consumption rate, which is the bin's learned demand rate, or its recent
  pick rate when at least ``MIN_RATE_EVENTS`` picks over ``MIN_RATE_SPAN_MS``
  show the line running faster (one pick, or a replayed outbox folded into one
  flush, is no rate: no escalation on it); or
- **overdue**: it is past its promise by the on-time tolerance
  (:mod:`jitstock.server.on_time`) — it is then assumed to arrive no sooner than
  that tolerance (at least ``OVERDUE_ARRIVAL_MIN_MS``) from now, and escalated
  when the bin runs out before that.

The next supplier of the SKU (``supplier_items`` by priority) gets an order for
what bridges the gap, and the first order is cancelled (ack deadline, or a
bridge as large as the order) or reduced by the bridge (its supplier hears
either through its webhook) — so nothing is delivered twice.  An order already
shipped keeps its quantity; the bridge only covers the gap.  Each order is
escalated at most once; every escalation is audited, recorded in
``escalations`` and alerted.  Suppliers opt out with ``escalation_enabled``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    Bin,
    BinEvent,
    Order,
    Supplier,
    holds_order_slot,
    new_order_id,
)
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.db.supplier_models import (
    Escalation,
    SupplierItem,
    supplier_items_for,
)
from jitstock.server.on_time import tolerance_ms
from jitstock.server.supplier.discrepancies import raise_alert
from jitstock.server.supplier.lifecycle import (
    enqueue_event,
    load_order,
    public_note,
    record_transition,
    transition,
)
from jitstock.server.supplier.putaway import expire_putaways
from jitstock.server.supplier.receiving import round_to_item

log = logging.getLogger(__name__)

ACTOR = "escalation"
# Deadlines are minutes to hours: checking twice a minute is prompt enough.
ESCALATION_INTERVAL_S = 30.0
# Consumption rate from the last hour of picks: recent enough to follow a shift's pace.
CONSUMPTION_WINDOW_MS = 3_600_000
# Below this much history the rate is a guess: do not project a stockout from it ...
MIN_RATE_SPAN_MS = 15 * 60_000
# ... nor from fewer picks than this.
MIN_RATE_EVENTS = 3
# An order past its promise by the on-time tolerance is overdue; it is then assumed to
# arrive no sooner than that tolerance (at least this long) from now: a promise in the
# past says nothing about when it comes.
OVERDUE_ARRIVAL_MIN_MS = 60_000
ESCALATABLE_STATES = ("created", "sent", "acknowledged", "shipped", "part_received")

AlertHook = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why an order must be escalated, and the numbers behind it."""

    reason: str  # ack_deadline | late | overdue
    detail: dict[str, Any]
    bridge_hint: int | None = None  # units the gap needs (late / overdue only)


def learned_rate(session: Session, bin_id: str) -> float | None:
    """Units per millisecond from the bin's learned demand (its policy), if any."""
    from jitstock.server.db.replenish_models import BinPolicy

    inputs = session.scalar(select(BinPolicy.inputs).where(BinPolicy.bin_id == bin_id))
    demand = (inputs or {}).get("demand") or {}
    rate = demand.get("rate_per_day")
    if isinstance(rate, int | float) and math.isfinite(rate) and rate > 0:
        return float(rate) / 86_400_000
    return None


def recent_rate(session: Session, bin_id: str, now_ms: int) -> float | None:
    """Units per millisecond picked recently, only on evidence: at least
    ``MIN_RATE_EVENTS`` picks spread over at least ``MIN_RATE_SPAN_MS`` (one pick, or an
    outbox replay folded into one flush, is not a rate)."""
    since = now_ms - CONSUMPTION_WINDOW_MS
    used, first, last, n = session.execute(
        select(
            func.coalesce(func.sum(-BinEvent.delta), 0),
            func.min(BinEvent.ts_ms),
            func.max(BinEvent.ts_ms),
            func.count(),
        ).where(
            BinEvent.bin_id == bin_id,
            BinEvent.kind == "consumption",
            BinEvent.ts_ms >= since,
            BinEvent.ts_ms <= now_ms,
        )
    ).one()
    if first is None or not used or used <= 0 or int(n) < MIN_RATE_EVENTS:
        return None
    if int(last) - int(first) < MIN_RATE_SPAN_MS:
        return None
    return float(used) / max(MIN_RATE_SPAN_MS, now_ms - int(first))


def consumption_rate(session: Session, bin_id: str, now_ms: int) -> float | None:
    """Units per millisecond to project a stockout with: the learned demand rate, or the
    recent pick rate when there is evidence that the line runs faster (None: no basis)."""
    rates = [
        r
        for r in (learned_rate(session, bin_id), recent_rate(session, bin_id, now_ms))
        if r
    ]
    return max(rates) if rates else None


def _quoted_lead_ms(session: Session, order: Order) -> int | None:
    quoted = session.scalar(
        select(SupplierItem.quoted_lead_time_s).where(
            SupplierItem.supplier_id == order.supplier_id,
            SupplierItem.sku_id == order.sku_id,
        )
    )
    return int(quoted) * 1000 if quoted else None


def judge(
    session: Session, order: Order, supplier: Supplier, now_ms: int
) -> Verdict | None:
    """Whether (and why) an open order must be escalated now."""
    base = order.sent_ms or order.created_ms
    if (
        order.state in ("created", "sent")
        and supplier.ack_deadline_s
        and now_ms > base + supplier.ack_deadline_s * 1000
    ):
        return Verdict(
            "ack_deadline",
            {"deadline_ms": base + supplier.ack_deadline_s * 1000},
        )
    expected = order.promised_ms
    if expected is None:
        lead = _quoted_lead_ms(session, order)
        expected = base + lead if lead else None
    if expected is None:
        return None
    grace = tolerance_ms(expected, base)
    overdue = now_ms > expected + grace
    arrival = (
        max(expected, now_ms + max(grace, OVERDUE_ARRIVAL_MIN_MS))
        if overdue
        else expected
    )
    rate = consumption_rate(session, order.bin_id, now_ms)
    if not rate:
        return None
    on_hand, pending = session.execute(
        select(Bin.on_hand, Bin.pending_delivery_qty).where(Bin.id == order.bin_id)
    ).one()
    stock = max(0, int(on_hand or 0)) + max(0, int(pending or 0))
    stockout = now_ms + int(stock / rate)
    if arrival <= stockout:
        return None
    gap = math.ceil(rate * (arrival - stockout))
    return Verdict(
        "overdue" if overdue else "late",
        {
            "expected_ms": expected,
            "arrival_ms": arrival,
            "stockout_ms": stockout,
            "rate_per_h": round(rate * 3_600_000, 3),
        },
        max(1, gap),
    )


def escalate(
    session: Session, order: Order, verdict: Verdict, now_ms: int
) -> tuple[Escalation, Order | None]:
    """Hand (part of) an order to the next supplier; returns the escalation and the new order."""
    from jitstock.server.reorder import refused_recently

    refused = refused_recently(session, order.bin_id, now_ms) | {order.supplier_id}
    fallback = next(
        (
            i
            for i in supplier_items_for(session, order.sku_id)
            if i.supplier_id not in refused
        ),
        None,
    )
    remaining = order.qty - (order.delivered_qty or 0)
    detail = {**verdict.detail, "order_qty": order.qty, "remaining": remaining}
    session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(escalated_ms=now_ms)
        .execution_options(synchronize_session=False)
    )
    if fallback is None:
        row = Escalation(
            at_ms=now_ms,
            order_id=order.id,
            supplier_id=order.supplier_id,
            reason=verdict.reason,
            action="no_fallback",
            qty=0,
            detail=detail,
        )
        session.add(row)
        _audit(session, order, row, now_ms)
        return row, None
    bridge = remaining
    if verdict.reason in ("late", "overdue") and verdict.bridge_hint is not None:
        bridge = min(remaining, verdict.bridge_hint)
    bridge = round_to_item(bridge, fallback)
    shipped = order.state == "shipped"
    bridge_for: str | None
    if shipped:
        action, bridge_for = "bridged", order.id
    elif verdict.reason == "ack_deadline" or bridge >= remaining:
        # the fallback replaces the order; beside another order still waiting for its
        # first delivery (ordered while this one was part-received) it is a bridge
        action, bridge_for = "cancelled", _bridge_if_beside(session, order)
        bridge = max(bridge, remaining)
        transition(
            session,
            order.id,
            "cancelled",
            actor=ACTOR,
            now_ms=now_ms,
            reason=f"escalated ({verdict.reason}) to {fallback.supplier_id}",
            detail=detail,
            values={"next_attempt_ms": None},
        )
    else:
        action, bridge_for = "reduced", order.id
        session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(qty=Order.qty - bridge)
            .execution_options(synchronize_session=False)
        )
        reduced = session.get(Order, order.id, populate_existing=True)
        assert reduced is not None
        why = f"reduced by {bridge}: escalated ({verdict.reason}) to {fallback.supplier_id}"
        record_transition(
            session,
            order.id,
            reduced.state,
            reduced.state,
            actor=ACTOR,
            at_ms=now_ms,
            reason=why,
            detail={**detail, "reduced_by": bridge},
        )
        # the supplier hears why, as a cancel's note says it: naming no other supplier
        enqueue_event(
            session,
            reduced,
            "order.reduced",
            now_ms,
            {"reduced_by": bridge, "reason": public_note(ACTOR, why)},
        )
    new = Order(
        id=new_order_id(),
        bin_id=order.bin_id,
        sku_id=order.sku_id,
        supplier_id=fallback.supplier_id,
        site_id=order.site_id,
        qty=bridge,
        state="created",
        created_ms=now_ms,
        attempts=0,
        next_attempt_ms=now_ms,
        bridge_for=bridge_for,
        # a replacement's fallback stands in for the same shortfall: no slot either
        replaces=order.replaces if bridge_for is None else None,
        # A bridge is not escalated again: its supplier was chosen for speed.
        escalated_ms=now_ms,
        trigger={
            "escalated_from": order.id,
            "reason": verdict.reason,
            **verdict.detail,
        },
    )
    session.add(new)
    session.flush()
    record_transition(
        session,
        new.id,
        None,
        "created",
        actor=ACTOR,
        at_ms=now_ms,
        reason=f"escalation of {order.id} ({verdict.reason})",
    )
    row = Escalation(
        at_ms=now_ms,
        order_id=order.id,
        supplier_id=order.supplier_id,
        fallback_supplier_id=fallback.supplier_id,
        bridge_order_id=new.id,
        reason=verdict.reason,
        action=action,
        qty=bridge,
        detail=detail,
    )
    session.add(row)
    _audit(session, order, row, now_ms)
    return row, new


def _bridge_if_beside(session: Session, order: Order) -> str | None:
    """``order.id`` when the bin has another open order holding its one slot (waiting
    for its first delivery, not a bridge or a replacement), else None."""
    other = session.scalar(
        select(Order.id).where(
            Order.bin_id == order.bin_id,
            Order.id != order.id,
            holds_order_slot(),
        )
    )
    return order.id if other is not None else None


def _audit(session: Session, order: Order, row: Escalation, now_ms: int) -> None:
    info = {
        "reason": row.reason,
        "action": row.action,
        "fallback": row.fallback_supplier_id,
        "bridge_order": row.bridge_order_id,
        "qty": row.qty,
        **(row.detail or {}),
    }
    record_audit(
        session,
        at_ms=now_ms,
        actor=ACTOR,
        action="order.escalated",
        entity="order",
        entity_id=order.id,
        detail=info,
    )
    raise_alert(
        session,
        "escalation",
        now_ms,
        bin_id=order.bin_id,
        order_id=order.id,
        supplier_id=order.supplier_id,
        detail=info,
    )


class Escalator:
    """Checks open orders every ``interval_s`` and escalates the ones that need it."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock = REAL_CLOCK,
        interval_s: float = ESCALATION_INTERVAL_S,
        on_orders: Callable[[list[str]], None] | None = None,
        alert: AlertHook | None = None,
    ) -> None:
        self._factory = session_factory
        self._clock = clock
        self._interval_s = interval_s
        self._on_orders = on_orders
        self._alert = alert
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the scheduler thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-escalation", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the scheduler thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.run_once()
            except Exception:
                log.exception("escalation pass failed")

    def run_once(self) -> list[dict[str, Any]]:
        """One pass over the open orders; returns what was escalated."""
        done: list[dict[str, Any]] = []
        new_ids: list[str] = []
        from jitstock.server.reorder import recheck

        with transaction(self._factory) as s:
            now = self._clock.time_ms()
            rows = s.execute(
                select(Order, Supplier)
                .join(Supplier, Supplier.id == Order.supplier_id)
                .where(
                    Order.state.in_(ESCALATABLE_STATES),
                    Order.escalated_ms.is_(None),
                    Supplier.escalation_enabled.is_(True),
                )
                .order_by(Order.created_ms)
            ).all()
            for order, supplier in rows:
                verdict = judge(s, order, supplier, now)
                if verdict is None:
                    continue
                # Judged again on the order read locked (PostgreSQL; on SQLite this
                # transaction holds the write lock throughout, so it reads the same): a
                # promise change, ship notice or receipt committed since the list was
                # read may have made the escalation moot, and the remaining quantity it
                # reduces by and the events it queues must be the order's current ones.
                order = load_order(s, order.id, lock=True)
                if (
                    order.state not in ESCALATABLE_STATES
                    or order.escalated_ms is not None
                ):
                    continue
                verdict = judge(s, order, supplier, now)
                if verdict is None:
                    continue
                row, new = escalate(s, order, verdict, now)
                if new is not None:
                    new_ids.append(new.id)
                done.append(
                    {
                        "order": order.id,
                        "supplier": order.supplier_id,
                        "reason": row.reason,
                        "action": row.action,
                        "fallback": row.fallback_supplier_id,
                        "bridge_order": row.bridge_order_id,
                        "qty": row.qty,
                        "bin": order.bin_id,
                    }
                )
            # receiving housekeeping: dock receipts never put away leave the position
            expired = expire_putaways(s, now)
            if expired:
                new_ids += recheck(s, expired, now, "put-away window expired")
        for info in done:
            log.warning("order escalated: %s", info)
            if self._alert is not None:
                try:
                    self._alert("order_escalated", info)
                except Exception:
                    log.exception("escalation alert hook failed")
        if new_ids and self._on_orders is not None:
            self._on_orders(new_ids)
        return done
