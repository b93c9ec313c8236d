"""Live levels: every bin's count, confidence, freshness and inventory position."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from jitstock.server.agents import Liveness
from jitstock.server.api import catalog
from jitstock.server.api.context import ApiContext
from jitstock.server.api.deps import CtxDep, ReadSessionDep, Viewer
from jitstock.server.api.schemas import LevelPublic
from jitstock.server.db.models import BIN_UNIT_WEIGHT_G, Agent, Bin, Sku
from jitstock.server.levels import scale_health
from jitstock.server.position import on_order_by_bin, pending_by_bin

router = APIRouter(prefix="/api/v1/levels", tags=["levels"])
# a bin and what its agent's liveness is judged by (jitstock.server.agents)
# and its unit weight (its own, else its SKU's)
LevelSelect = Select[Bin, float, str | None, int | None, int | None, bool | None]


def _levels(
    session: Session, stmt: LevelSelect, now_ms: int, silent_ms: int
) -> list[LevelPublic]:
    rows = session.execute(stmt).all()
    ids = [r[0].id for r in rows] if len(rows) == 1 else None
    # the one definition of the position (jitstock.server.position), as the reorder rule uses it
    on_order = on_order_by_bin(session, ids)
    pending = pending_by_bin(session, ids)
    out = []
    for b, unit, reported, status_ms, agent_seen, agent_enabled in rows:
        # the fault its agent reported, else a weight below the bin's tare (levels.below_tare)
        ok, fault = scale_health(
            b.sensor_ok, b.sensor_fault, b.last_grams, b.tare_g, unit
        )
        ordered = on_order.get(b.id, 0)
        waiting = pending.get(b.id, 0)
        out.append(
            LevelPublic(
                bin_id=b.id,
                site_id=b.site_id,
                sku_id=b.sku_id,
                on_hand=b.on_hand,
                confidence=b.on_hand_confidence,
                last_grams=b.last_grams,
                last_seen_ms=b.last_seen_ms,
                pending_delivery_qty=waiting,
                on_order_qty=ordered,
                position=b.on_hand + waiting + ordered,
                reorder_point=b.reorder_point,
                paused=b.paused,
                sensor_ok=ok,
                sensor_fault=fault,
                agent_id=b.agent_id,
                agent_online=Liveness(
                    reported, status_ms, agent_seen, agent_enabled is not False
                ).online(now_ms, silent_ms)
                if b.agent_id is not None
                else None,
            )
        )
    return out


def _base() -> LevelSelect:
    return (
        select(
            Bin,
            BIN_UNIT_WEIGHT_G,
            Agent.reported_state,
            Agent.status_ms,
            Agent.last_seen_ms,
            Agent.enabled,
        )
        .join(Sku, Sku.id == Bin.sku_id)
        .outerjoin(Agent, Bin.agent_id == Agent.id)
        .order_by(Bin.id)
    )


@router.get("")
def list_levels(
    session: ReadSessionDep,
    _key: Viewer,
    ctx: CtxDep,
    site: Annotated[str | None, Query(description="only bins of this site")] = None,
) -> list[LevelPublic]:
    """Live level of every bin."""
    stmt = _base()
    if site is not None:
        stmt = stmt.where(Bin.site_id == site)
    return _levels(session, stmt, *_liveness_now(ctx))


@router.get("/{bin_id}")
def get_level(
    bin_id: str, session: ReadSessionDep, _key: Viewer, ctx: CtxDep
) -> LevelPublic:
    """Live level of one bin."""
    catalog.get_or_404(session, Bin, "bin", bin_id)
    rows = _levels(session, _base().where(Bin.id == bin_id), *_liveness_now(ctx))
    return rows[0]


def _liveness_now(ctx: ApiContext) -> tuple[int, int]:
    """Now, and how long a silent agent still counts as online (the alert's threshold)."""
    return ctx.clock.time_ms(), ctx.settings.agent_silent_ms
