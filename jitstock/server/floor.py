"""The floor view's data: one compact tile per bin, with its status, marks and open order.

Used for the first page load (every bin) and for each live push (the bins a
flush touched), so both always agree on what a tile shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from jitstock.server.agents import Liveness
from jitstock.server.alert_rules import policy_marks
from jitstock.server.db.models import (
    BIN_UNIT_WEIGHT_G,
    OPEN_ORDER_STATES,
    Agent,
    Bin,
    Order,
    Sku,
)
from jitstock.server.levels import scale_health

# Status names, most urgent first: a tile shows the first that applies.
STATUSES = ("offline", "fault", "stockout", "below_ss", "below_rop", "ok", "nodata")


def status_of(
    *,
    agent_online: bool | None,
    sensor_ok: bool,
    seen: bool,
    on_hand: int,
    safety_stock: float | None,
    reorder_point: int,
) -> str:
    """A bin's status: agent offline, sensor fault, stockout, below SS, below ROP, ok (or no data)."""
    if agent_online is False:
        return "offline"
    if not sensor_ok:
        return "fault"
    if not seen:
        return "nodata"
    if on_hand <= 0:
        return "stockout"
    if safety_stock is not None and on_hand < safety_stock:
        return "below_ss"
    if on_hand <= reorder_point:
        return "below_rop"
    return "ok"


def open_orders(
    session: Session, bin_ids: list[str] | None
) -> dict[str, dict[str, Any]]:
    """The oldest open order per bin: id, state, qty, supplier, created and promised times."""
    stmt = (
        select(
            Order.bin_id,
            Order.id,
            Order.state,
            Order.qty,
            Order.supplier_id,
            Order.created_ms,
            Order.promised_ms,
        )
        .where(Order.state.in_(OPEN_ORDER_STATES))
        .order_by(Order.created_ms.desc())
    )
    if bin_ids is not None:
        stmt = stmt.where(Order.bin_id.in_(bin_ids))
    out: dict[str, dict[str, Any]] = {}
    for bin_id, oid, state, qty, supplier, created, promised in session.execute(stmt):
        out[bin_id] = {
            "id": oid,
            "state": state,
            "qty": qty,
            "supplier": supplier,
            "created_ms": created,
            "promised_ms": promised,
        }
    return out


def tiles(
    session: Session,
    *,
    bin_ids: Iterable[str] | None = None,
    agent_ids: Iterable[str] | None = None,
    now_ms: int,
    silent_ms: int,
) -> list[dict[str, Any]]:
    """Tiles of the given bins and of every bin of the given agents (both None: every bin).

    An agent is offline when its status says so *or* it has been silent longer than
    ``silent_ms`` (a PLC without a last will that stops is offline too), as the
    ``agent_offline`` alert judges it.
    """
    stmt = (
        select(
            Bin.id,
            Bin.site_id,
            Bin.area,
            Bin.line,
            Bin.sku_id,
            Sku.abc_class,
            Bin.on_hand,
            Bin.capacity,
            Bin.reorder_point,
            Bin.last_seen_ms,
            Bin.sensor_ok,
            Bin.sensor_fault,
            Bin.paused,
            Bin.supplier_id,
            Bin.agent_id,
            Agent.reported_state,
            Agent.status_ms,
            Agent.last_seen_ms,
            Agent.enabled,
            Bin.on_hand_confidence,
            Bin.last_grams,
            Bin.tare_g,
            BIN_UNIT_WEIGHT_G,
        )
        .join(Sku, Sku.id == Bin.sku_id)
        .outerjoin(Agent, Agent.id == Bin.agent_id)
        .order_by(Bin.site_id, Bin.area, Bin.line, Bin.id)
    )
    wanted: list[str] | None = None
    if bin_ids is not None or agent_ids is not None:
        bins = list(bin_ids or ())
        agents = list(agent_ids or ())
        cond = [Bin.id.in_(bins)]
        if agents:
            cond.append(Bin.agent_id.in_(agents))
        stmt = stmt.where(or_(*cond))
        if not bins and not agents:
            return []
    rows = session.execute(stmt).all()
    if bin_ids is not None or agent_ids is not None:
        wanted = [r[0] for r in rows]
    marks = policy_marks(session, wanted)
    orders = open_orders(session, wanted)
    out = []
    for (
        bid,
        site,
        area,
        line,
        sku,
        abc,
        on_hand,
        cap,
        rop,
        seen,
        reported_ok,
        reported_fault,
        paused,
        supplier,
        agent,
        reported,
        status_ms,
        agent_seen,
        agent_enabled,
        conf,
        grams,
        tare,
        unit,
    ) in rows:
        # the fault its agent reported, else a weight below the bin's tare (levels.below_tare)
        ok, fault = scale_health(reported_ok, reported_fault, grams, tare, unit)
        m = marks.get(bid, {})
        ss = m.get("safety_stock")
        rate = m.get("rate_per_day")
        out.append(
            {
                "id": bid,
                "site": site,
                "area": area or "",
                "line": line or "",
                "sku": sku,
                "abc": abc,
                "count": on_hand,
                "cap": cap,
                "rop": rop,
                "ss": round(ss, 1) if ss is not None else None,
                # three significant digits: a fast bin holds minutes of supply, not 0.0 days
                "dos": float(f"{on_hand / rate:.3g}") if rate else None,
                "status": status_of(
                    agent_online=Liveness(
                        reported, status_ms, agent_seen, agent_enabled is not False
                    ).online(now_ms, silent_ms)
                    if agent is not None
                    else None,
                    sensor_ok=ok,
                    seen=seen is not None,
                    on_hand=on_hand,
                    safety_stock=ss,
                    reorder_point=rop,
                ),
                "fault": fault,
                "paused": paused,
                "supplier": supplier,
                "agent": agent,
                "seen_ms": seen,
                "conf": round(conf, 2),
                "order": orders.get(bid),
            }
        )
    return out
