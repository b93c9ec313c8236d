"""Replenishment policy per bin: explain the numbers, change the settings, recalculate now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import bins_changed
from jitstock.server.api.errors import FieldInvalid
from jitstock.server.api.policy_schemas import (
    PolicyChange,
    PolicyExplain,
    PolicySettings,
)
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import AuditLog, Bin
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.replenish.bin_policy import Params, compute_bin
from jitstock.server.replenish.recalc import Recalculator

router = APIRouter(prefix="/api/v1/bins", tags=["replenishment"])

# Changes listed in the explanation: enough to see a trend, short enough to read.
RECENT_CHANGES = 10


def _explain(session: Any, b: Bin, ctx: Any) -> PolicyExplain:
    row = session.get(BinPolicy, b.id)
    if row is not None:
        inputs, result, stored = row.inputs, row.result, True
    else:
        comp = compute_bin(
            session, b, ctx.clock.time_ms(), Params.from_settings(ctx.settings)
        )
        inputs, result, stored = comp.inputs, comp.result, False
    dem, lt, tgt = inputs["demand"], inputs["lead_time"], inputs["target"]
    rate = dem.get("rate_per_day")
    audits = session.scalars(
        select(AuditLog)
        .where(
            AuditLog.entity == "bin",
            AuditLog.entity_id == b.id,
            AuditLog.action == "bin.policy",
        )
        .order_by(AuditLog.id.desc())
        .limit(RECENT_CHANGES)
    )
    changes = [
        PolicyChange(
            at_ms=a.at_ms,
            actor=a.actor,
            reason=(a.detail or {}).get("reason"),
            why=(a.detail or {}).get("why"),
            **{"from": (a.detail or {}).get("from")},
            to=(a.detail or {}).get("to"),
        )
        for a in audits
    ]
    return PolicyExplain(
        bin_id=b.id,
        stored=stored,
        computed_ms=row.computed_ms if row else None,
        reason=row.reason if row else None,
        policy=tgt["policy"],
        demand_class=dem["class"],
        forecast_method=dem["method"],
        rate_per_day=rate,
        sigma_per_day=dem.get("sigma_per_day"),
        lead_time_days=lt.get("mean_days"),
        sigma_lead_time_days=lt.get("sigma_days"),
        lead_time_source=lt["source"],
        deliveries=lt["deliveries"],
        on_time_rate=lt.get("on_time_rate"),
        abc_class=tgt.get("abc_class"),
        service_level=tgt["service_level"],
        z=result.get("z"),
        safety_stock=result.get("safety_stock"),
        undershoot=result.get("undershoot", dem.get("undershoot")),
        reorder_point=result["reorder_point"],
        reorder_point_exact=result.get("reorder_point_exact"),
        order_qty=result["order_qty"],
        order_up_to=result.get("order_up_to"),
        kanban_cards=result["kanban_cards"],
        manual_override=result["manual_override"],
        applied_reorder_point=b.reorder_point,
        applied_order_qty=b.order_qty,
        capacity=b.capacity,
        fits_capacity=b.capacity is None or b.reorder_point + b.order_qty <= b.capacity,
        on_hand=b.on_hand,
        days_of_supply=round(b.on_hand / rate, 2) if rate else None,
        changed_ms=row.changed_ms if row else None,
        why_changed=row.change_reason if row else None,
        inputs=inputs,
        recent_changes=changes,
    )


@router.get("/{bin_id}/policy")
def get_policy(
    bin_id: str, session: ReadSessionDep, _key: Viewer, ctx: CtxDep
) -> PolicyExplain:
    """The bin's replenishment numbers with their inputs and recent changes ("why did it order now?")."""
    b = catalog.get_or_404(session, Bin, "bin", bin_id)
    return _explain(session, b, ctx)


def _recalculate(ctx: Any, bin_id: str, reason: str) -> None:
    recalc = Recalculator(
        ctx.session_factory,
        Params.from_settings(ctx.settings),
        ctx.clock,
        on_change=lambda _bins, orders: bins_changed(ctx, orders),
    )
    recalc.recalc_bins([bin_id], reason)


@router.post("/{bin_id}/policy/recalculate")
def recalculate_policy(
    bin_id: str, session: SessionDep, _key: Manager, ctx: CtxDep
) -> PolicyExplain:
    """Recompute the bin's policy now (the schedule does this hourly)."""
    catalog.get_or_404(session, Bin, "bin", bin_id)
    session.rollback()
    _recalculate(ctx, bin_id, "manual")
    b = catalog.get_or_404(session, Bin, "bin", bin_id)
    session.refresh(b)
    return _explain(session, b, ctx)


@router.patch("/{bin_id}/policy")
def update_policy_settings(
    bin_id: str, body: PolicySettings, session: SessionDep, key: Manager, ctx: CtxDep
) -> PolicyExplain:
    """Change the bin's policy settings (manual min/max override, service level, ...) and recompute."""
    b = catalog.get_or_404(session, Bin, "bin", bin_id)
    changes = body.changes()
    lo = changes.get("manual_min", b.manual_min)
    hi = changes.get("manual_max", b.manual_max)
    if lo is not None and hi is not None and hi <= lo:
        raise FieldInvalid("manual_max", f"{hi} must be above manual_min {lo}")
    diff = {k: v for k, v in changes.items() if getattr(b, k) != v}
    if diff:
        record_audit(
            session,
            at_ms=ctx.clock.time_ms(),
            actor=key.name,
            action="bin.policy_settings",
            entity="bin",
            entity_id=bin_id,
            detail={k: {"from": getattr(b, k), "to": v} for k, v in diff.items()},
        )
        for k, v in diff.items():
            setattr(b, k, v)
        session.commit()
        _recalculate(ctx, bin_id, "settings")
    else:
        session.rollback()
    b = catalog.get_or_404(session, Bin, "bin", bin_id)
    session.refresh(b)
    return _explain(session, b, ctx)
