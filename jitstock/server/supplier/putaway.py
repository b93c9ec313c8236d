"""Put-away at the bin: what the scales see after goods arrive.

Runs inside ingest's transaction, once per flush that saw refills, with a fixed
number of set-based queries (not per reading).  Each refill is spent on the bin's
dock receipts awaiting put-away (the weigh-in check), then matched against its
open orders (a receipt by weight, or a partial delivery), and what matches
nothing is an ``unexplained_increase`` discrepancy.  For a day after an order of the
bin was cancelled, only an order with a ship notice matches (the refill may be the
cancelled order's goods); a dock receipt later assigns such an increase.  Picks while the goods were
put away are booked as consumption within an allowance from the recent pick rate.
A receipt the scale never confirms leaves the position after ``PUTAWAY_WINDOW_MS``.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from jitstock.server.db.models import OPEN_ORDER_STATES, Bin, BinEvent, Order
from jitstock.server.db.supplier_models import Receipt, ReceivingDiscrepancy
from jitstock.server.position import receipt_pending, refresh_pending
from jitstock.server.reorder import SUPPLIER_CANCEL_PREFIX
from jitstock.server.supplier import SupplyError
from jitstock.server.supplier.discrepancies import record_discrepancy
from jitstock.server.supplier.receiving import (
    ACTOR_SCALE,
    MATCH_TOLERANCE_UNITS,
    expected_delivery,
    maybe_close,
    receive,
    tolerance,
)

log = logging.getLogger(__name__)

# A dock receipt the bin's scale has not seen put away after this long leaves the
# position (recorded and alerted as putaway_not_seen): pending stock never lives forever.
PUTAWAY_WINDOW_MS = 2 * 3_600_000
# The line keeps picking while a delivery is put away: up to this long's worth of the
# bin's recent pick rate may be missing from the refill the scale sees.
PUTAWAY_PICKS_MS = 10 * 60_000
# The recent pick rate behind that allowance is measured over this window.
PICK_RATE_WINDOW_MS = 3_600_000
# A refill of at least this fraction of an order's expected delivery (and more than the
# tolerance) is a partial delivery of it; smaller ones are not taken as deliveries.
MIN_PARTIAL_FRACTION = 0.25
# Picks during a put-away are never taken to be more than this fraction of the delivery
# (one big pick just before is no pick rate).
MAX_PICKS_FRACTION = 0.25
# A delivery put away in handfuls: refills too small to match an order on their own
# are matched together with the bin's unexplained increases of this long before.
HANDFULS_WINDOW_MS = PUTAWAY_PICKS_MS
# Goods shipped before their order was cancelled (or shipped anyway) can reach the bin
# this long after the cancellation: until then a refill that no ship notice explains may
# be theirs, and is left for a person instead of closing another open order.
CANCELLED_GOODS_WINDOW_MS = 24 * 3_600_000


def confirm_refills(
    session: Session, refilled: dict[str, list[int]], now_ms: int
) -> list[str]:
    """Refills seen by the scales: confirm put-aways, receive by weight, record the rest.

    Called from the ingest transaction with each bin's refill events of a flush, in
    the order the scale saw them (a burst of re-sent readings can hold a delivery and a
    top-up from the stock room apart).  Each refill is spent, in this order, on the
    bin's dock receipts waiting for put-away (oldest first), then on its open orders
    (the one whose expected quantity fits best), and what is left is a recorded
    ``unexplained_increase``.  Returns the bins whose position changed.
    """
    touched: list[str] = []
    for bin_id in sorted(refilled):
        if session.get(Bin, bin_id) is None:
            continue
        for delta in refilled[bin_id]:
            if delta > 0:
                _spend_refill(session, bin_id, delta, now_ms)
        touched.append(bin_id)
    refresh_pending(session, touched)
    return touched


def _spend_refill(session: Session, bin_id: str, delta: int, now_ms: int) -> None:
    """One refill of a bin: put-aways, then orders by weight, then the discrepancy."""
    allowance = picks_allowance(session, bin_id, now_ms)
    left = _confirm_putaway(session, bin_id, delta, allowance, now_ms)
    # looked up only for a refill the dock's receipts did not explain
    cancelled = cancelled_goods_due(session, bin_id, now_ms) if left > 0 else []
    if left > 0:
        left = _receive_by_weight(
            session, bin_id, left, allowance, now_ms, bool(cancelled)
        )
    if left > 0:
        left = _receive_handfuls(
            session, bin_id, left, allowance, now_ms, bool(cancelled)
        )
    if left > 0:
        detail: dict[str, object] = {"delta": delta, "unmatched": left}
        if cancelled:
            detail["cancelled_orders"] = [o.id for o in cancelled]
        record_discrepancy(
            session,
            "unexplained_increase",
            bin_id,
            left,
            now_ms,
            detail=detail,
            alert=left > MATCH_TOLERANCE_UNITS,
        )


def cancelled_goods_due(session: Session, bin_id: str, now_ms: int) -> list[Order]:
    """The bin's orders cancelled in the last ``CANCELLED_GOODS_WINDOW_MS``, not received
    in full, that their supplier saw: their goods may still turn up (newest first).  Saw:
    the order was sent, or its supplier cancelled it (a cancel can race the record of
    the first delivery).  An order the plant cancelled before it ever reached the
    supplier has no goods on the way, and must not hold the next order's delivery back
    from being received by weight."""
    return list(
        session.scalars(
            select(Order)
            .where(
                Order.bin_id == bin_id,
                Order.state == "cancelled",
                Order.closed_ms >= now_ms - CANCELLED_GOODS_WINDOW_MS,
                func.coalesce(Order.delivered_qty, 0) < Order.qty,
                or_(
                    Order.sent_ms.is_not(None),
                    Order.last_error.startswith(SUPPLIER_CANCEL_PREFIX),
                ),
            )
            .order_by(Order.closed_ms.desc(), Order.id)
        )
    )


def allowance_for(expected: int, picks: int) -> int:
    """How far below ``expected`` a put-away may come and still be the whole delivery:
    the tolerance, or the picks the recent pick rate allows (at most a quarter of it)."""
    return max(
        tolerance(expected), min(picks, math.ceil(MAX_PICKS_FRACTION * expected))
    )


def picks_allowance(session: Session, bin_id: str, now_ms: int) -> int:
    """Units the line may have picked while a delivery was put away (recent pick rate)."""
    since = now_ms - PICK_RATE_WINDOW_MS
    used, first = session.execute(
        select(
            func.coalesce(func.sum(-BinEvent.delta), 0), func.min(BinEvent.ts_ms)
        ).where(
            BinEvent.bin_id == bin_id,
            BinEvent.kind == "consumption",
            BinEvent.ts_ms >= since,
            BinEvent.ts_ms <= now_ms,
        )
    ).one()
    if first is None or not used or used <= 0:
        return 0
    span = max(PUTAWAY_PICKS_MS, now_ms - int(first))
    return math.ceil(float(used) * PUTAWAY_PICKS_MS / span)


def _book_putaway_picks(
    session: Session, bin_id: str, picked: int, now_ms: int, order_id: str | None
) -> None:
    """Units received but picked before the scale settled: consumption, not a short delivery.

    The scale saw ``received − picked`` as one refill; the ledger gets the
    receipt (the refill event grows by ``picked``) and a consumption event of
    ``picked``, so on hand still sums up and demand learning sees the picks.
    """
    if picked <= 0:
        return
    refill = session.scalars(
        select(BinEvent)
        .where(BinEvent.bin_id == bin_id, BinEvent.kind == "refill")
        .order_by(BinEvent.id.desc())
        .limit(1)
    ).first()
    on_hand = session.scalar(select(Bin.on_hand).where(Bin.id == bin_id)) or 0
    if refill is not None:
        refill.delta += picked
    session.add(
        BinEvent(
            bin_id=bin_id,
            ts_ms=now_ms,
            kind="consumption",
            delta=-picked,
            on_hand_after=on_hand,
        )
    )
    record_discrepancy(
        session,
        "putaway_picks",
        bin_id,
        picked,
        now_ms,
        order_id=order_id,
        detail={"picked_during_putaway": picked},
    )


def _confirm_putaway(
    session: Session, bin_id: str, delta: int, allowance: int, now_ms: int
) -> int:
    """Spend a refill on the bin's receipts awaiting put-away; returns what is left."""
    receipts = session.scalars(
        select(Receipt)
        .where(Receipt.bin_id == bin_id, Receipt.status == "awaiting_putaway")
        .order_by(Receipt.id)
    ).all()
    orders: set[str] = set()
    left = delta
    for r in receipts:
        if left <= 0:
            break
        want = receipt_pending(r)
        got = min(left, want)
        r.scale_qty = (r.scale_qty or 0) + got
        left -= got
        short = want - got
        picks = min(allowance, math.ceil(MAX_PICKS_FRACTION * want))
        if short <= allowance_for(want, allowance):
            # put away (a few units may have been picked before the scale settled)
            r.status = "done"
            orders.add(r.order_id)
            if short > 0:
                if short <= picks:
                    _book_putaway_picks(session, bin_id, short, now_ms, r.order_id)
                else:
                    record_discrepancy(
                        session,
                        "weigh_in_short",
                        bin_id,
                        short,
                        now_ms,
                        order_id=r.order_id,
                        receipt_id=r.id,
                        supplier_id=r.supplier_id,
                        detail={"expected": want, "scale": got},
                    )
        # else: part of the delivery is put away; the rest may follow (or the window expires)
    if left > 0 and receipts:
        # more came than the receipts announced: the dock under-counted
        last = receipts[-1]
        if left <= tolerance(receipt_pending(last) + (last.scale_qty or 0)):
            last.scale_qty = (last.scale_qty or 0) + left
            record_discrepancy(
                session,
                "weigh_in_over",
                bin_id,
                left,
                now_ms,
                order_id=last.order_id,
                receipt_id=last.id,
                supplier_id=last.supplier_id,
                detail={"over": left},
            )
            left = 0
    session.flush()
    for order_id in sorted(orders):
        maybe_close(session, order_id, now_ms, ACTOR_SCALE)
    return left


def _receive_by_weight(
    session: Session,
    bin_id: str,
    delta: int,
    allowance: int,
    now_ms: int,
    announced_only: bool,
) -> int:
    """Match a refill with no dock receipt to the bin's open orders (with
    ``announced_only``, only those with a ship notice); returns what is left."""
    left = delta
    stmt = select(Order).where(
        Order.bin_id == bin_id, Order.state.in_(OPEN_ORDER_STATES)
    )
    if announced_only:
        stmt = stmt.where(Order.shipped_ms.is_not(None))
    open_orders = list(session.scalars(stmt.order_by(Order.created_ms, Order.id)))
    while left > 0 and open_orders:
        # the order whose expected delivery fits the refill best (a bridge and its
        # reduced original may both be open); ties go to the oldest
        order = min(open_orders, key=lambda o: abs(left - expected_delivery(o)))
        open_orders.remove(order)
        expected = expected_delivery(order)
        if expected <= 0:
            continue
        slack = allowance_for(expected, allowance)
        if left >= expected - slack:
            # the delivery: as announced, the difference picked during put-away
            qty = min(left, expected + tolerance(expected))
            picked = max(0, expected - left)
            received = qty + picked
        elif left > tolerance(expected) and left >= MIN_PARTIAL_FRACTION * expected:
            received, picked = left, 0  # a partial delivery: the rest stays on order
        else:
            continue
        try:
            with session.begin_nested():
                receive(
                    session,
                    order.id,
                    received,
                    method="scale",
                    actor=ACTOR_SCALE,
                    now_ms=now_ms,
                    complete=received + (order.delivered_qty or 0)
                    >= order.qty - tolerance(order.qty),
                )
        except SupplyError as exc:
            log.warning("bin %s: receipt by weight refused: %s", bin_id, exc)
            continue
        if picked:
            _book_putaway_picks(session, bin_id, picked, now_ms, order.id)
        left -= received - picked
    return left


def _receive_handfuls(
    session: Session,
    bin_id: str,
    left: int,
    allowance: int,
    now_ms: int,
    announced_only: bool,
) -> int:
    """A refill that matched nothing on its own, with the bin's unexplained increases
    of the last ``HANDFULS_WINDOW_MS``: together they may be a delivery put away in
    handfuls (each under a quarter of it).  Only increases since the bin's oldest open
    order was placed count (what came before cannot be its goods).  What they match is
    received by weight and those increases are resolved; returns what is left of this
    refill."""
    placed = session.scalar(
        select(func.min(Order.created_ms)).where(
            Order.bin_id == bin_id, Order.state.in_(OPEN_ORDER_STATES)
        )
    )
    if placed is None:
        return left
    earlier = session.scalars(
        select(ReceivingDiscrepancy)
        .where(
            ReceivingDiscrepancy.bin_id == bin_id,
            ReceivingDiscrepancy.kind == "unexplained_increase",
            ReceivingDiscrepancy.resolved_ms.is_(None),
            ReceivingDiscrepancy.at_ms >= max(now_ms - HANDFULS_WINDOW_MS, placed),
        )
        .order_by(ReceivingDiscrepancy.id)
    ).all()
    if not earlier:
        return left
    together = left + sum(d.qty for d in earlier)
    matched = together - _receive_by_weight(
        session, bin_id, together, allowance, now_ms, announced_only
    )
    used = min(left, matched)
    left, matched = left - used, matched - used
    for d in earlier:
        if matched <= 0:
            break
        got = min(matched, d.qty)
        matched -= got
        if got < d.qty:
            d.qty -= got  # the rest of that increase stays unexplained
            continue
        d.resolved_ms = now_ms
        d.resolved_by = "scale:handfuls"
    return left


def expire_putaways(
    session: Session, now_ms: int, window_ms: int | None = None
) -> list[str]:
    """Dock receipts the scale never confirmed within the put-away window leave the
    position: recorded as ``putaway_not_seen`` (alerted); returns the bins touched."""
    window = PUTAWAY_WINDOW_MS if window_ms is None else window_ms
    stale = session.scalars(
        select(Receipt)
        .where(Receipt.status == "awaiting_putaway", Receipt.at_ms <= now_ms - window)
        .order_by(Receipt.id)
    ).all()
    bins: list[str] = []
    for r in stale:
        missing = receipt_pending(r)
        r.status = "done"
        bins.append(r.bin_id)
        if missing > 0:
            record_discrepancy(
                session,
                "putaway_not_seen",
                r.bin_id,
                missing,
                now_ms,
                order_id=r.order_id,
                receipt_id=r.id,
                supplier_id=r.supplier_id,
                detail={"received": r.qty, "scale": r.scale_qty or 0},
            )
        session.flush()
        maybe_close(session, r.order_id, now_ms, ACTOR_SCALE)
    refresh_pending(session, bins)
    return sorted(set(bins))
