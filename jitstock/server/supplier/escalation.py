"""Escalation to the fallback supplier, from a small scheduler thread.

An open order is escalated when

- **ack_deadline**: it is still unacknowledged (created/sent) after its
  supplier's ``ack_deadline_s``; or
- **late**: its promised delivery (else: sent + the supplier item's quoted lead
  time) falls after the bin's projected stockout (on hand ÷ the consumption
  rate of the last ``CONSUMPTION_WINDOW_MS``).

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
from jitstock.server.db.models import Bin, BinEvent, Order, Supplier, new_order_id
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.db.supplier_models import (
    Escalation,
    SupplierItem,
    supplier_items_for,
)
from jitstock.server.supplier.lifecycle import (
    enqueue_event,
    record_transition,
    transition,
)
from jitstock.server.supplier.receiving import raise_alert

log = logging.getLogger(__name__)

ACTOR = "escalation"
# Deadlines are minutes to hours: checking twice a minute is prompt enough.
ESCALATION_INTERVAL_S = 30.0
# Consumption rate from the last hour of picks: recent enough to follow a shift's pace.
CONSUMPTION_WINDOW_MS = 3_600_000
# Below this much history the rate is a guess: do not project a stockout from it.
MIN_RATE_SPAN_MS = 60_000
ESCALATABLE_STATES = ("created", "sent", "acknowledged", "shipped")

AlertHook = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why an order must be escalated, and the numbers behind it."""

    reason: str  # ack_deadline | late
    detail: dict[str, Any]
    bridge_hint: int | None = None  # units the gap needs (late only)


def consumption_rate(session: Session, bin_id: str, now_ms: int) -> float | None:
    """Units per millisecond consumed recently (None: too little history)."""
    since = now_ms - CONSUMPTION_WINDOW_MS
    used, first = session.execute(
        select(
            func.coalesce(func.sum(-BinEvent.delta), 0), func.min(BinEvent.ts_ms)
        ).where(
            BinEvent.bin_id == bin_id,
            BinEvent.kind == "consumption",
            BinEvent.ts_ms >= since,
        )
    ).one()
    if first is None or not used:
        return None
    span = max(MIN_RATE_SPAN_MS, now_ms - int(first))
    return float(used) / span


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
    rate = consumption_rate(session, order.bin_id, now_ms)
    if not rate:
        return None
    on_hand = session.scalar(select(Bin.on_hand).where(Bin.id == order.bin_id)) or 0
    stockout = now_ms + int(max(0, on_hand) / rate)
    if expected <= stockout:
        return None
    gap = math.ceil(rate * (expected - stockout))
    return Verdict(
        "late",
        {
            "expected_ms": expected,
            "stockout_ms": stockout,
            "rate_per_h": round(rate * 3_600_000, 3),
        },
        max(1, gap),
    )


def _round_up(qty: int, item: SupplierItem) -> int:
    qty = max(qty, item.moq or 1)
    pack = item.pack_size or 1
    return -(-qty // pack) * pack


def escalate(
    session: Session, order: Order, verdict: Verdict, now_ms: int
) -> tuple[Escalation, Order | None]:
    """Hand (part of) an order to the next supplier; returns the escalation and the new order."""
    fallback = next(
        (
            i
            for i in supplier_items_for(session, order.sku_id)
            if i.supplier_id != order.supplier_id
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
    if verdict.reason == "late" and verdict.bridge_hint is not None:
        bridge = min(remaining, verdict.bridge_hint)
    bridge = _round_up(bridge, fallback)
    shipped = order.state == "shipped"
    if shipped:
        action, bridge_for = "bridged", order.id
    elif verdict.reason == "ack_deadline" or bridge >= remaining:
        action, bridge_for = "cancelled", None
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
        record_transition(
            session,
            order.id,
            reduced.state,
            reduced.state,
            actor=ACTOR,
            at_ms=now_ms,
            reason=f"reduced by {bridge}: escalated ({verdict.reason}) to {fallback.supplier_id}",
            detail={**detail, "reduced_by": bridge},
        )
        enqueue_event(session, reduced, "order.reduced", now_ms, {"reduced_by": bridge})
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
                    }
                )
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
