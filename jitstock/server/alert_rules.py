"""Alert conditions read from the state DB: which (kind, entity) pairs hold right now.

Each rule returns a :class:`Verdict`: the entities it looked at (its scope) and
the alerts that hold among them.  :mod:`jitstock.server.alerts` raises what
holds and is not yet open, and resolves what is open in the scope and no longer
holds — so a condition that clears resolves its alert without anyone acking it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.server.agents import Liveness
from jitstock.server.db.models import (
    AWAITING_DELIVERY_STATES,
    BIN_UNIT_WEIGHT_G,
    OPEN_ORDER_STATES,
    Agent,
    Bin,
    BinEvent,
    Order,
    Sku,
    Supplier,
)
from jitstock.server.levels import scale_health
from jitstock.server.on_time import tolerance_ms

# Bins and agents (checked after every flush that touched them) and the periodic kinds.
BIN_KINDS = ("scale_fault", "stockout", "below_safety_stock")
AGENT_KINDS = ("agent_offline",)
ORDER_KINDS = ("order_unacknowledged", "order_overdue")
ANOMALY_KINDS = ("consumption_anomaly",)
REORDER_KINDS = ("reorder_blocked",)


def _duration(ms: int) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min."""
    s = max(0, ms) // 1000
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _clock_time(ms: int) -> str:
    """UTC wall-clock time of an epoch-ms instant (what a promise was)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def overdue_grace_ms(order: Order) -> int:
    """How long after its promise an open order is still not overdue: the on-time
    tolerance (jitstock.server.on_time), so alerts, escalation and the KPIs agree."""
    assert order.promised_ms is not None
    return tolerance_ms(order.promised_ms, order.sent_ms or order.created_ms)


# Orders waiting for the supplier's acknowledgement: created/sent (dispatch may be retrying).
UNACKED_STATES = ("created", "sent")
OVERDUE_STATES = ("sent", "acknowledged", "shipped", "part_received")
DAY_MS = 86_400_000
# A day's usage is an anomaly beyond this many forecast sigmas ...
ANOMALY_Z = 4.0
# ... and at least this far (fraction of the daily rate) from it: tiny sigmas are not a band.
ANOMALY_MIN_FRACTION = 0.5


@dataclass(slots=True, frozen=True)
class AlertSpec:
    """One alert condition that holds: what, about which entity, and how to say it."""

    kind: str
    entity: str
    message: str
    severity: str = "warning"
    site_id: str | None = None
    bin_id: str | None = None
    agent_id: str | None = None
    order_id: str | None = None
    supplier_id: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(slots=True)
class Verdict:
    """The result of a rule over its scope: ``scope`` None means "every entity of the kinds"."""

    kinds: tuple[str, ...]
    scope: set[str] | None
    holding: list[AlertSpec] = field(default_factory=list)


def policy_marks(
    session: Session, bin_ids: list[str] | None
) -> dict[str, dict[str, float]]:
    """Safety stock and daily rate (with sigma) per bin from issue 4's bin_policies, if present."""
    try:
        from jitstock.server.db.replenish_models import BinPolicy
    except ImportError:  # replenishment not installed: no safety stock marks
        return {}
    # the three numbers, extracted by the database: the documents are ~2 KB each, and
    # decoding every bin's pair, twice on each full alert check, was about a sixth of the
    # server's Python time at 1,000 readings/s
    stmt = select(
        BinPolicy.bin_id,
        BinPolicy.result["safety_stock"],
        BinPolicy.inputs[("demand", "rate_per_day")],
        BinPolicy.inputs[("demand", "sigma_per_day")],
    )
    if bin_ids is not None:
        stmt = stmt.where(BinPolicy.bin_id.in_(bin_ids))
    out: dict[str, dict[str, float]] = {}
    for bin_id, safety, rate, sigma in session.execute(stmt):
        out[bin_id] = {
            key: float(value)
            for key, value in (
                ("safety_stock", safety),
                ("rate_per_day", rate),
                ("sigma_per_day", sigma),
            )
            if isinstance(value, int | float)
        }
    return out


def bin_rules(session: Session, bin_ids: list[str] | None) -> Verdict:
    """Scale fault, stockout and below safety stock for the given bins (None: all)."""
    stmt = select(
        Bin.id,
        Bin.site_id,
        Bin.on_hand,
        Bin.last_seen_ms,
        Bin.sensor_ok,
        Bin.sensor_fault,
        Bin.last_grams,
        Bin.tare_g,
        BIN_UNIT_WEIGHT_G,
    ).join(Sku, Sku.id == Bin.sku_id)
    if bin_ids is not None:
        stmt = stmt.where(Bin.id.in_(bin_ids))
    rows = session.execute(stmt).all()
    marks = policy_marks(session, bin_ids)
    verdict = Verdict(
        BIN_KINDS, {f"bin:{r[0]}" for r in rows} if bin_ids is not None else None
    )
    for bin_id, site, on_hand, seen, reported_ok, reported, grams, tare, unit in rows:
        entity = f"bin:{bin_id}"
        # the fault its agent reported, else a weight below the bin's tare
        ok, fault = scale_health(reported_ok, reported, grams, tare, unit)
        if not ok:
            verdict.holding.append(
                AlertSpec(
                    "scale_fault",
                    entity,
                    f"scale of bin {bin_id} reports a fault: {fault or 'unknown'}",
                    "critical",
                    site,
                    bin_id,
                    detail={"fault": fault},
                )
            )
        if seen is None:
            continue  # no level yet: nothing to judge
        if on_hand <= 0:
            verdict.holding.append(
                AlertSpec(
                    "stockout",
                    entity,
                    f"bin {bin_id} is empty",
                    "critical",
                    site,
                    bin_id,
                )
            )
            continue
        ss = marks.get(bin_id, {}).get("safety_stock")
        if ss is not None and on_hand < ss:
            verdict.holding.append(
                AlertSpec(
                    "below_safety_stock",
                    entity,
                    f"bin {bin_id} holds {on_hand}, below its safety stock of {ss:.0f}",
                    "warning",
                    site,
                    bin_id,
                    detail={"on_hand": on_hand, "safety_stock": ss},
                )
            )
    return verdict


def agent_rules(
    session: Session, agent_ids: list[str] | None, now_ms: int, silent_ms: int
) -> Verdict:
    """Agents whose status says offline (last will) or silent longer than ``silent_ms``.

    Status is optional (docs/protocol.md): a device that never sent one is
    judged by its traffic alone, and one never heard from is not alerted.  A disabled
    agent (a manager switched it off) is not alerted either, and its open alert resolves.
    """
    stmt = select(
        Agent.id,
        Agent.site_id,
        Agent.reported_state,
        Agent.status_ms,
        Agent.last_seen_ms,
        Agent.enabled,
    )
    if agent_ids is not None:
        stmt = stmt.where(Agent.id.in_(agent_ids))
    rows = session.execute(stmt).all()
    verdict = Verdict(
        AGENT_KINDS, {f"agent:{r[0]}" for r in rows} if agent_ids is not None else None
    )
    for agent_id, site, reported, status_ms, seen, enabled in rows:
        life = Liveness(reported, status_ms, seen, enabled)
        if life.state(now_ms, silent_ms) != "offline":
            # online; unknown: never heard from is a configuration gap; disabled: on purpose
            continue
        verdict.holding.append(
            AlertSpec(
                "agent_offline",
                f"agent:{agent_id}",
                f"agent {agent_id} {life.offline_reason(now_ms)}",
                "critical",
                site,
                agent_id=agent_id,
            )
        )
    return verdict


def order_rules(session: Session, now_ms: int, default_ack_s: float) -> Verdict:
    """Orders not acknowledged within their supplier's deadline, and orders past their promise."""
    verdict = Verdict(ORDER_KINDS, None)
    rows = session.execute(
        select(Order, Supplier.ack_deadline_s)
        .join(Supplier, Supplier.id == Order.supplier_id)
        .where(Order.state.in_(set(UNACKED_STATES) | set(OVERDUE_STATES)))
    ).all()
    for order, ack_s in rows:
        entity = f"order:{order.id}"
        common: dict[str, Any] = {
            "site_id": order.site_id,
            "bin_id": order.bin_id,
            "order_id": order.id,
            "supplier_id": order.supplier_id,
        }
        deadline_ms = int((ack_s if ack_s else default_ack_s) * 1000)
        if order.state in UNACKED_STATES and now_ms - order.created_ms > deadline_ms:
            verdict.holding.append(
                AlertSpec(
                    "order_unacknowledged",
                    entity,
                    f"order {order.id[:8]} for bin {order.bin_id} not acknowledged by "
                    f"{order.supplier_id} after {(now_ms - order.created_ms) // 60000} min",
                    **common,
                )
            )
        if (
            order.promised_ms is not None
            and now_ms > order.promised_ms + overdue_grace_ms(order)
            and order.state in OVERDUE_STATES
        ):
            verdict.holding.append(
                AlertSpec(
                    "order_overdue",
                    entity,
                    f"order {order.id[:8]} for bin {order.bin_id} from {order.supplier_id} is "
                    f"past its promised time {_clock_time(order.promised_ms)} "
                    f"({_duration(now_ms - order.promised_ms)} late when raised)",
                    "critical",
                    **common,
                )
            )
    return verdict


def anomaly_rules(session: Session, now_ms: int) -> Verdict:
    """A bin's last 24 h of usage far outside its forecast band (theft, wrong bin, leaking count)."""
    verdict = Verdict(ANOMALY_KINDS, None)
    marks = policy_marks(session, None)
    if not marks:
        return verdict
    since = now_ms - DAY_MS
    used = dict(
        session.execute(
            select(BinEvent.bin_id, func.sum(-BinEvent.delta))
            .where(BinEvent.kind == "consumption", BinEvent.ts_ms >= since)
            .group_by(BinEvent.bin_id)
        ).all()
    )
    # the low side needs a full day of history, or every new bin would look "too quiet"
    old = set(
        session.scalars(
            select(BinEvent.bin_id)
            .where(BinEvent.ts_ms < since)
            .group_by(BinEvent.bin_id)
        )
    )
    sites = dict(session.execute(select(Bin.id, Bin.site_id)).all())
    for bin_id, m in marks.items():
        rate = m.get("rate_per_day")
        if not rate or bin_id not in sites:
            continue
        width = max(
            ANOMALY_Z * m.get("sigma_per_day", 0.0), ANOMALY_MIN_FRACTION * rate
        )
        usage = float(used.get(bin_id) or 0)
        if usage > rate + width or (bin_id in old and usage < rate - width):
            verdict.holding.append(
                AlertSpec(
                    "consumption_anomaly",
                    f"bin:{bin_id}",
                    f"bin {bin_id} used {usage:g} in 24 h; forecast {rate:.1f} ± {width:.1f}",
                    "warning",
                    sites[bin_id],
                    bin_id,
                    detail={"usage": usage, "rate_per_day": rate, "band": width},
                )
            )
    return verdict


def reorder_rules(session: Session, now_ms: int) -> Verdict:
    """Bins at or below their reorder point, ordering not paused, with no open order:
    the alert says why the rule could not order (the invariant "an open order or an
    alert that says why not")."""
    from jitstock.server.position import positions
    from jitstock.server.reorder import (
        blocked_reason,
        supplier_candidates,
        switched_off_only,
    )

    verdict = Verdict(REORDER_KINDS, None)
    # a position is on hand plus what is on order and pending put-away (never negative):
    # a bin with more on hand than its reorder point is above it whatever it has on order
    bins = {
        b.id: b
        for b in session.scalars(
            select(Bin).where(
                Bin.paused.is_(False),
                Bin.last_seen_ms.is_not(None),
                Bin.on_hand <= Bin.reorder_point,
            )
        )
    }
    if not bins:
        return verdict
    # an order still waiting for its first delivery is the bin's order; a part-received
    # one is not enough when what is still to come leaves the position this low, nor is
    # a replacement for a receipt's shortfall (the bin orders beside it)
    with_order = set(
        session.scalars(
            select(Order.bin_id)
            .where(Order.state.in_(AWAITING_DELIVERY_STATES), Order.replaces.is_(None))
            .distinct()
        )
    )
    for bin_id, pos in positions(session, list(bins)).items():
        b = bins[bin_id]
        if pos.total > b.reorder_point or bin_id in with_order:
            continue
        if not supplier_candidates(session, b) and not switched_off_only(session, b):
            continue  # no supplier anywhere: a bin jitstock monitors but does not replenish
        why = blocked_reason(session, b, now_ms) or "the reorder rule has not run yet"
        verdict.holding.append(
            AlertSpec(
                "reorder_blocked",
                f"bin:{bin_id}",
                f"bin {bin_id} is at its reorder point ({pos.total} ≤ {b.reorder_point}) "
                f"with no open order: {why}",
                "critical",
                b.site_id,
                bin_id,
                detail={
                    "position": pos.total,
                    "reorder_point": b.reorder_point,
                    "why": why,
                },
            )
        )
    return verdict


def order_incident_over(
    session: Session, kind: str, order_id: str | None, detail: dict[str, Any] | None
) -> bool:
    """Whether a reported alert about an order can resolve: the order is no longer open
    and neither is the order that took its place (bridge / fallback), or — for a failed
    order — a later order of the same bin has been delivered."""
    if order_id is None:
        return False
    order = session.get(Order, order_id)
    if order is None:
        return True
    if kind == "order_failed":
        later = session.scalar(
            select(Order.id).where(
                Order.bin_id == order.bin_id,
                Order.created_ms >= order.created_ms,
                Order.id != order.id,
                Order.state.in_(("received", "closed", "delivered")),
            )
        )
        return later is not None
    if order.state in OPEN_ORDER_STATES:
        return False
    for key in ("bridge_order", "fallback_order"):
        linked = (detail or {}).get(key)
        if linked:
            other = session.get(Order, str(linked))
            if other is not None and other.state in OPEN_ORDER_STATES:
                return False
    return kind not in RECEIVING_INCIDENT_KINDS


# Supply alerts about goods at receiving, not about an order still to come: the order
# being over (it usually is: closed, cancelled, expired) does not resolve them —
# acknowledging does.  (Goods scanned for a cancelled order were resolved the moment
# they were raised, so nobody saw them.)
RECEIVING_INCIDENT_KINDS = frozenset(
    {
        "unexplained_stock_increase",
        "receiving_weigh_in_short",
        "receiving_putaway_not_seen",
        "receiving_closed_order_receipt",
        "replacement_not_placed",
    }
)


SUPPLY_MESSAGES = {
    "unexplained_stock_increase": "bin {bin}: {qty} units more than any open order explains",
    "receiving_weigh_in_short": "bin {bin}: put-away of order {order} is {qty} units short of the receipt",
    "receiving_putaway_not_seen": "bin {bin}: {qty} units received for order {order} were never seen on the scale",
    "receiving_closed_order_receipt": "bin {bin}: goods scanned against order {order}, which is no longer open",
    "order_cancelled_by_supplier": "order {order} for bin {bin} cancelled by its supplier",
    "scan_not_allowed": "bin {bin}: a label of order {order} was scanned at a station that may not receive into it",
    "replacement_not_placed": "bin {bin}: replacement for order {order} not placed (another order is open)",
}


def supply_message(
    kind: str, bin_id: str | None, order_id: str | None, detail: dict[str, Any] | None
) -> str:
    """A sentence for a supply alert, for people rather than logs."""
    d = detail or {}
    template = SUPPLY_MESSAGES.get(kind)
    if template is None:
        return f"{kind.replace('_', ' ')}: bin {bin_id or '-'} order {(order_id or '-')[:8]}"
    return template.format(
        bin=bin_id or "-",
        order=(order_id or "-")[:8],
        qty=d.get("qty", d.get("unmatched", d.get("delta", "?"))),
    )
