"""The bin page: recent events, order/delivery markers, and managers' actions on a bin.

Recount and recalibration go through :func:`catalog.update_bin`, so they are
audited, recount the level and re-run the reorder rule like any bin change.
A scale's count is absolute (gross − tare) ÷ unit weight, so "set on hand" on
a bin with a scale re-zeroes its tare; on a bin without one it sets the count.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field
from sqlalchemy import select

from jitstock.server import reorder
from jitstock.server.api import catalog
from jitstock.server.api.deps import CtxDep, Manager, ReadSessionDep, SessionDep, Viewer
from jitstock.server.api.effects import bins_changed
from jitstock.server.api.errors import Conflict, FieldInvalid
from jitstock.server.api.schemas import (
    MAX_EPOCH_MS,
    MAX_TARE_G,
    MAX_UNIT_WEIGHT_G,
    MIN_UNIT_WEIGHT_G,
    Input,
)
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import AuditLog, Bin, BinEvent, Order
from jitstock.server.floor import tiles
from jitstock.server.levels import count_of

router = APIRouter(prefix="/api/v1/bins", tags=["bin page"])


class RecountRequest(Input):
    """What was counted in the bin."""

    on_hand: int = Field(ge=0, le=10_000_000)


class RecalibrateRequest(Input):
    """A known count now on the scale; which calibration value to solve for."""

    count: int = Field(gt=0, le=10_000_000)
    solve: Literal["unit_weight", "tare"] = "unit_weight"


class PauseRequest(Input):
    """Stop (or resume) automatic ordering for the bin."""

    paused: bool = True


@router.get("/{bin_id}/events")
def bin_events(
    bin_id: str,
    session: ReadSessionDep,
    _key: Viewer,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Recent picks, refills, recounts and deliveries, and recent audited changes of the bin."""
    catalog.get_or_404(session, Bin, "bin", bin_id)
    events = session.scalars(
        select(BinEvent)
        .where(BinEvent.bin_id == bin_id)
        .order_by(BinEvent.ts_ms.desc())
        .limit(limit)
    )
    audits = session.scalars(
        select(AuditLog)
        .where(AuditLog.entity == "bin", AuditLog.entity_id == bin_id)
        .order_by(AuditLog.id.desc())
        .limit(limit)
    )
    return {
        "events": [
            {
                "ts_ms": e.ts_ms,
                "kind": e.kind,
                "delta": e.delta,
                "on_hand_after": e.on_hand_after,
            }
            for e in events
        ],
        "changes": [
            {"at_ms": a.at_ms, "actor": a.actor, "action": a.action, "detail": a.detail}
            for a in audits
        ],
    }


@router.get("/{bin_id}/markers")
def bin_markers(
    bin_id: str,
    session: ReadSessionDep,
    _key: Viewer,
    ctx: CtxDep,
    start: Annotated[int, Query(ge=0, le=MAX_EPOCH_MS)] = 0,
    end: Annotated[int | None, Query(ge=0, le=MAX_EPOCH_MS)] = None,
) -> dict[str, Any]:
    """Orders placed and deliveries in [start, end) (epoch ms), for the history chart."""
    row = catalog.get_or_404(session, Bin, "bin", bin_id)
    end_ms = end if end is not None else 2**62
    orders = session.scalars(
        select(Order).where(Order.bin_id == bin_id).order_by(Order.created_ms)
    )
    placed, delivered = [], []
    for o in orders:
        if start <= o.created_ms < end_ms:
            placed.append(
                {
                    "ts_ms": o.created_ms,
                    "id": o.id,
                    "qty": o.qty,
                    "supplier": o.supplier_id,
                }
            )
        done = o.delivered_ms or o.closed_ms
        if done is not None and start <= done < end_ms:
            delivered.append(
                {"ts_ms": done, "id": o.id, "qty": o.delivered_qty or o.qty}
            )
    tile = tiles(
        session,
        bin_ids=[bin_id],
        now_ms=ctx.clock.time_ms(),
        silent_ms=ctx.settings.agent_silent_ms,
    )
    return {
        "bin_id": bin_id,
        "reorder_point": row.reorder_point,
        "safety_stock": tile[0]["ss"] if tile else None,
        "capacity": row.capacity,
        "orders": placed,
        "deliveries": delivered,
        "tile": tile[0] if tile else None,
    }


def _check_tare(field: str, row: Bin, count: int, unit_g: float, tare: float) -> None:
    """Refuse a count whose implied tare the bin's own schema would refuse (422 on ``field``)."""
    if 0 <= tare <= MAX_TARE_G:
        return
    grams = row.last_grams
    why = (
        "more than the scale holds above its tare"
        if tare < 0
        else "fewer than the scale holds with any tare"
    )
    raise FieldInvalid(
        field,
        f"the scale shows {grams:g} g; {count} parts of {unit_g:g} g weigh "
        f"{count * unit_g:g} g, which leaves a tare of {tare:g} g, outside "
        f"0..{MAX_TARE_G:g} g ({why}): count again, or correct the unit weight",
    )


def _apply(
    session: Any, ctx: Any, bin_id: str, changes: dict[str, Any], actor: str
) -> dict[str, Any]:
    row, changed, order = catalog.update_bin(
        session, bin_id, changes, actor, ctx.clock.time_ms()
    )
    session.commit()
    if changed:
        bins_changed(ctx, [order.id] if order is not None else [])
    return _answer(ctx, row, order)


def _answer(ctx: Any, row: Bin, order: Order | None) -> dict[str, Any]:
    """Mark the bin for the live pages; the answer of a bin action."""
    live = getattr(ctx, "live", None)
    if live is not None:
        live.mark([row.id])
    return {
        "bin_id": row.id,
        "on_hand": row.on_hand,
        "tare_g": row.tare_g,
        "unit_weight_g": row.unit_weight_g,
        "paused": row.paused,
        "order": order.id if order is not None else None,
    }


@router.post("/{bin_id}/recount")
def recount(
    bin_id: str, body: RecountRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> dict[str, Any]:
    """Set on hand to a counted value (on a scale bin whose weight has settled: re-zero
    the tare to match; while it moves: set the count, keep the tare)."""
    row = catalog.get_or_404(session, Bin, "bin", bin_id)
    if row.last_grams is not None and _settled(row):
        unit_g = row.effective_unit_weight_g
        tare = round(row.last_grams - body.on_hand * unit_g, 3)
        if tare != row.tare_g:
            _check_tare("on_hand", row, body.on_hand, unit_g, tare)
            out = _apply(session, ctx, bin_id, {"tare_g": tare}, key.name)
            if out["on_hand"] == body.on_hand:
                return out
            row = catalog.get_or_404(session, Bin, "bin", bin_id)
    # No scale, or a scale that has not settled since its level was taken (its last
    # weight is an unstable one: a hand in the bin, parts still sliding): the count is
    # set and the tare kept; a tare taken from a passing weight would turn the settled
    # weight into a phantom consumption (found by an outside try).  The next stable
    # reading counts from the tare as before.
    now = ctx.clock.time_ms()
    delta = body.on_hand - row.on_hand
    row.on_hand = body.on_hand
    session.add(
        BinEvent(
            bin_id=bin_id,
            ts_ms=now,
            kind="recount",
            delta=delta,
            on_hand_after=body.on_hand,
        )
    )
    record_audit(
        session,
        at_ms=now,
        actor=key.name,
        action="bin.recount",
        entity="bin",
        entity_id=bin_id,
        detail={"on_hand": body.on_hand, "delta": delta},
    )
    # a counted level is judged at once (a bin counted below its reorder point orders)
    order = reorder.maybe_reorder(
        session, row, now, {"reason": "recount", "by": key.name}
    )
    session.commit()
    bins_changed(ctx, [order.id] if order is not None else [])
    return _answer(ctx, row, order)


def _settled(row: Bin) -> bool:
    """Whether the scale's last weight is the one its level was counted from: an
    unstable reading moves ``last_grams`` but not the count, so a last weight that
    gives another count than the level is one the scale has not settled on."""
    assert row.last_grams is not None
    count, _ = count_of(row.last_grams, row.tare_g, row.effective_unit_weight_g)
    return count == row.on_hand


@router.post("/{bin_id}/recalibrate")
def recalibrate(
    bin_id: str,
    body: RecalibrateRequest,
    session: SessionDep,
    key: Manager,
    ctx: CtxDep,
) -> dict[str, Any]:
    """A known count is on the scale: solve the unit weight (tare kept) or the tare (unit weight kept)."""
    row = catalog.get_or_404(session, Bin, "bin", bin_id)
    if row.last_grams is None:
        raise Conflict(f"bin {bin_id!r} has no scale reading yet to calibrate against")
    if not _settled(row):
        raise Conflict(
            f"the scale's last weight ({row.last_grams:g} g) is not one it settled on "
            f"(an unstable reading; the level {row.on_hand} is from an earlier one): "
            "recalibrate once it shows a stable weight",
            field="count",
        )
    if body.solve == "unit_weight":
        unit = (row.last_grams - row.tare_g) / body.count
        if unit <= 0:
            raise Conflict(
                f"the scale reads {row.last_grams:g} g, not above the tare {row.tare_g:g} g",
                field="count",
            )
        unit = round(unit, 4)
        if not MIN_UNIT_WEIGHT_G <= unit <= MAX_UNIT_WEIGHT_G:
            raise FieldInvalid(
                "count",
                f"the scale shows {row.last_grams - row.tare_g:g} g above the tare "
                f"{row.tare_g:g} g; {body.count} parts would weigh {unit:g} g each, "
                f"outside {MIN_UNIT_WEIGHT_G:g}..{MAX_UNIT_WEIGHT_G:g} g: count again",
            )
        changes: dict[str, Any] = {"unit_weight_g": unit}
    else:
        unit_g = row.effective_unit_weight_g
        tare = round(row.last_grams - body.count * unit_g, 3)
        _check_tare("count", row, body.count, unit_g, tare)
        changes = {"tare_g": tare}
    return _apply(session, ctx, bin_id, changes, key.name)


@router.post("/{bin_id}/pause")
def pause(
    bin_id: str, body: PauseRequest, session: SessionDep, key: Manager, ctx: CtxDep
) -> dict[str, Any]:
    """Pause (or resume) automatic ordering for the bin."""
    catalog.get_or_404(session, Bin, "bin", bin_id)
    return _apply(session, ctx, bin_id, {"paused": body.paused}, key.name)
