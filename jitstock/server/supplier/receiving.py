"""Receiving: dock receipts (label scan, API), receipts by weight at the bin, put-away
confirmation by the scale (weigh-in check), quality inspection and replacement orders.

Where the goods are counted (the position model is :mod:`jitstock.server.position`):

- a **dock receipt** (label scan or API) puts the received quantity in the
  position as *pending put-away* (not yet on hand); an inspection takes rejected
  units out of it again; the refill the bin's scale then sees confirms the
  put-away (``scale_qty``, the weigh-in check) and closes the order.  A short
  put-away within the picks-during-put-away allowance is booked as consumption,
  beyond it as a ``weigh_in_short`` discrepancy; a receipt the scale never
  confirms leaves the position after ``PUTAWAY_WINDOW_MS`` as ``putaway_not_seen``.
  A refill the scale saw *before* the dock receipt was recorded is matched to it.
- a **refill at the bin** with no dock receipt is matched against the bin's open
  orders (the one whose expected delivery fits best): within the tolerance plus
  the units the line picked while the bin was filled it *is* the delivery; a
  smaller one (at least a quarter of it) is a partial delivery and the balance
  stays on order; what matches nothing is an ``unexplained_increase``
  discrepancy (alerted when more than a couple of units).

The refill hook runs inside ingest's transaction, once per flush that saw
refills, with a fixed number of set-based queries (not per reading).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock import protocol
from jitstock.ratelog import RateLimitedLog
from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    OPEN_ORDER_STATES,
    Bin,
    BinEvent,
    Order,
    Sku,
    Supplier,
    new_order_id,
)
from jitstock.server.db.supplier_models import (
    Inspection,
    Receipt,
    ReceivingDiscrepancy,
    SupplierItem,
    SupplyAlert,
)
from jitstock.server.position import pending_by_bin, receipt_pending, refresh_pending
from jitstock.server.supplier import IllegalTransition, InvalidRequest, SupplyError
from jitstock.server.supplier.lifecycle import (
    enqueue_event,
    load_order,
    record_transition,
    transition,
)

log = logging.getLogger(__name__)
_alert_log = RateLimitedLog(log, interval_s=60.0)

# An order label's barcode: this prefix + the order id (a SKU barcode never starts so).
LABEL_PREFIX = "JSORD:"
# A refill matches an order within max(units, fraction × expected): a pick during the
# put-away or a miscounted pack must not turn a delivery into an "unexplained" one.
MATCH_TOLERANCE_UNITS = 2
MATCH_TOLERANCE_FRACTION = 0.1
# SKU scans after a label scan count units into that receipt for this long.
SCAN_SESSION_MS = 15 * 60 * 1000
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
# A refill before a dock receipt (the goods went into the bin first, the paperwork
# came later) is matched to the receipt when it is at most this old.
LATE_RECEIPT_MATCH_MS = 2 * 3_600_000
ACTOR_SCALE = "scale"
UNEXPLAINED = "unexplained_stock_increase"
# Discrepancy kinds that always raise an alert (the others only when large or asked).
ALERTING_DISCREPANCIES = frozenset(
    {"weigh_in_short", "putaway_not_seen", "closed_order_receipt"}
)


def round_to_item(qty: int, item: SupplierItem) -> int:
    """At least the supplier item's MOQ, in whole packs."""
    qty = max(qty, item.moq or 1)
    pack = item.pack_size or 1
    return -(-qty // pack) * pack


def label_code(order_id: str) -> str:
    """The barcode text printed on an order's label."""
    return LABEL_PREFIX + order_id


def order_from_label(code: str) -> str | None:
    """The order id a scanned label names, or None for any other code."""
    return code[len(LABEL_PREFIX) :] if code.startswith(LABEL_PREFIX) else None


def tolerance(expected: int) -> int:
    """How far (units) a refill may be from the expected quantity and still match."""
    return max(MATCH_TOLERANCE_UNITS, math.ceil(MATCH_TOLERANCE_FRACTION * expected))


def raise_alert(
    session: Session,
    kind: str,
    now_ms: int,
    *,
    bin_id: str | None = None,
    order_id: str | None = None,
    supplier_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an alert a person should look at (dashboards read supply_alerts)."""
    session.add(
        SupplyAlert(
            at_ms=now_ms,
            kind=kind,
            bin_id=bin_id,
            order_id=order_id,
            supplier_id=supplier_id,
            detail=detail,
        )
    )
    # the alert row is the record; the log line is rate-limited (a miscalibrated bin repeats)
    _alert_log.log(
        logging.WARNING,
        f"{kind}:{bin_id}",
        "supply alert %s: bin=%s order=%s %s",
        kind,
        bin_id,
        order_id,
        detail,
    )


def _inspection_required(session: Session, order: Order) -> bool:
    sku = session.get(Sku, order.sku_id)
    if sku is not None and sku.inspection_required:
        return True
    supplier = session.get(Supplier, order.supplier_id)
    n = supplier.inspect_every_n if supplier is not None else None
    if not n:
        return False
    before = session.scalar(
        select(func.count())
        .select_from(Receipt)
        .where(Receipt.supplier_id == order.supplier_id)
    )
    return (int(before or 0) + 1) % n == 0


def receive(
    session: Session,
    order_id: str,
    qty: int,
    *,
    method: str,
    actor: str,
    now_ms: int,
    complete: bool = True,
    scanner: str | None = None,
) -> Receipt:
    """Record goods received for an open order; the order becomes (partially_)received."""
    if qty <= 0:
        raise InvalidRequest("qty", f"must be positive, got {qty}")
    order = load_order(session, order_id)
    if order.state not in OPEN_ORDER_STATES:
        raise IllegalTransition(
            f"order {order_id} is {order.state}; only an open order can be received"
        )
    bin_row = session.get(Bin, order.bin_id, populate_existing=True)
    assert bin_row is not None  # orders.bin_id is a foreign key
    inspect = _inspection_required(session, order)
    at_dock = method != "scale"
    if inspect:
        status = "awaiting_inspection"
    elif at_dock and bin_row.agent_id is not None:
        status = "awaiting_putaway"  # the bin's scale will confirm it
    else:
        status = "done"
    receipt = Receipt(
        order_id=order_id,
        bin_id=order.bin_id,
        supplier_id=order.supplier_id,
        at_ms=now_ms,
        method=method,
        qty=qty,
        counted_qty=0,
        scale_qty=qty if method == "scale" else None,
        inspection_required=inspect,
        status=status,
        actor=actor,
        scanner=scanner,
    )
    session.add(receipt)
    session.flush()
    if at_dock:
        waiting = pending_by_bin(session, [bin_row.id]).get(bin_row.id, 0)
        session.add(
            BinEvent(
                bin_id=bin_row.id,
                ts_ms=now_ms,
                kind="delivery",
                delta=qty,
                # the effective count: on the scale plus received-but-not-put-away
                on_hand_after=bin_row.on_hand + waiting,
            )
        )
        if status == "awaiting_putaway":
            _match_earlier_refills(session, receipt, now_ms)
    total = (order.delivered_qty or 0) + qty
    done = complete or total >= order.qty
    order = transition(
        session,
        order_id,
        "received" if done else "part_received",
        actor=actor,
        now_ms=now_ms,
        reason=f"{method} receipt of {qty}",
        detail={"qty": qty, "total": total, "ordered": order.qty, "method": method},
        values={
            "delivered_qty": total,
            # The first receipt ends the lead time.
            "delivered_ms": order.delivered_ms or now_ms,
            "next_attempt_ms": None,
        },
    )
    session.flush()
    if done and not inspect:
        _settle(session, order, now_ms, actor)
    refresh_pending(session, [order.bin_id])
    return receipt


def _match_earlier_refills(session: Session, receipt: Receipt, now_ms: int) -> None:
    """The goods went into the bin before the dock receipt was recorded (the scale saw
    an unexplained increase): that refill is this receipt's put-away."""
    earlier = session.scalars(
        select(ReceivingDiscrepancy)
        .where(
            ReceivingDiscrepancy.bin_id == receipt.bin_id,
            ReceivingDiscrepancy.kind == "unexplained_increase",
            ReceivingDiscrepancy.resolved_ms.is_(None),
            ReceivingDiscrepancy.at_ms >= now_ms - LATE_RECEIPT_MATCH_MS,
        )
        .order_by(ReceivingDiscrepancy.id)
    ).all()
    for d in earlier:
        want = receipt_pending(receipt)
        if want <= 0:
            break
        got = min(want, d.qty)
        receipt.scale_qty = (receipt.scale_qty or 0) + got
        if got < d.qty:
            d.qty -= got  # the rest of that increase stays unexplained
            continue
        d.resolved_ms = now_ms
        d.resolved_by = f"receipt:{receipt.id}"
        d.order_id = d.order_id or receipt.order_id
    if receipt_pending(receipt) <= tolerance(receipt.qty) and earlier:
        receipt.status = "done"


def inspect_receipt(
    session: Session,
    receipt_id: int,
    accepted: int,
    rejected: int,
    reason: str | None,
    inspector: str,
    now_ms: int,
) -> Inspection:
    """Record a quality inspection; rejected units leave the bin's pending quantity."""
    receipt = session.get(Receipt, receipt_id, populate_existing=True)
    if receipt is None:
        raise InvalidRequest("receipt", f"receipt {receipt_id} not found")
    if receipt.status != "awaiting_inspection":
        raise IllegalTransition(
            f"receipt {receipt_id} is {receipt.status}; only a receipt awaiting inspection can be inspected"
        )
    if accepted + rejected != receipt.qty:
        raise InvalidRequest(
            "accepted_qty",
            f"accepted ({accepted}) + rejected ({rejected}) must equal the {receipt.qty} received",
        )
    if rejected and not reason:
        raise InvalidRequest("reason", "a rejection needs a reason")
    row = Inspection(
        receipt_id=receipt_id,
        order_id=receipt.order_id,
        supplier_id=receipt.supplier_id,
        at_ms=now_ms,
        inspector=inspector,
        accepted_qty=accepted,
        rejected_qty=rejected,
        reason=reason,
    )
    session.add(row)
    receipt.accepted_qty = accepted
    bin_row = session.get(Bin, receipt.bin_id)
    if receipt.method != "scale":
        has_scale = bin_row is not None and bin_row.agent_id is not None
        receipt.status = "awaiting_putaway" if has_scale and accepted else "done"
    else:
        receipt.status = "done"
    order = load_order(session, receipt.order_id)
    record_audit(
        session,
        at_ms=now_ms,
        actor=inspector,
        action="receipt.inspected",
        entity="order",
        entity_id=order.id,
        detail={
            "receipt": receipt_id,
            "accepted": accepted,
            "rejected": rejected,
            "reason": reason,
        },
    )
    enqueue_event(
        session,
        order,
        "receipt.inspected",
        now_ms,
        {"accepted_qty": accepted, "rejected_qty": rejected, "reason": reason},
    )
    session.flush()
    if order.state == "received" and not _open_inspections(session, order.id):
        _settle(session, order, now_ms, inspector)
    refresh_pending(session, [receipt.bin_id])
    return row


def _open_inspections(session: Session, order_id: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Receipt)
            .where(
                Receipt.order_id == order_id, Receipt.status == "awaiting_inspection"
            )
        )
        or 0
    )


def _settle(session: Session, order: Order, now_ms: int, actor: str) -> None:
    """Receiving of an order is complete: replace any shortfall, close when put away."""
    accepted = int(
        session.scalar(
            select(
                func.coalesce(
                    func.sum(func.coalesce(Receipt.accepted_qty, Receipt.qty)), 0
                )
            ).where(Receipt.order_id == order.id)
        )
        or 0
    )
    shortfall = order.qty - accepted
    rejected = int(
        session.scalar(
            select(func.coalesce(func.sum(Inspection.rejected_qty), 0)).where(
                Inspection.order_id == order.id
            )
        )
        or 0
    )
    # A count a few units off is noise, not worth a truck; rejected parts always are.
    if shortfall > 0 and (rejected > 0 or shortfall > tolerance(order.qty)):
        _replacement(session, order, shortfall, now_ms, actor)
    _maybe_close(session, order.id, now_ms, actor)


def _maybe_close(session: Session, order_id: str, now_ms: int, actor: str) -> None:
    order = load_order(session, order_id)
    if order.state != "received":
        return
    waiting = session.scalar(
        select(func.count())
        .select_from(Receipt)
        .where(Receipt.order_id == order_id, Receipt.status != "done")
    )
    if waiting:
        return
    transition(
        session,
        order_id,
        "closed",
        actor=actor,
        now_ms=now_ms,
        reason="received and put away",
        values={"closed_ms": now_ms},
    )


def _replacement(
    session: Session, order: Order, qty: int, now_ms: int, actor: str
) -> Order | None:
    """A new order to the same supplier for what was short or rejected (in its pack/MOQ)."""
    item = session.scalars(
        select(SupplierItem).where(
            SupplierItem.supplier_id == order.supplier_id,
            SupplierItem.sku_id == order.sku_id,
        )
    ).first()
    if item is not None:
        qty = round_to_item(qty, item)
    new = Order(
        id=new_order_id(),
        bin_id=order.bin_id,
        sku_id=order.sku_id,
        supplier_id=order.supplier_id,
        site_id=order.site_id,
        qty=qty,
        state="created",
        created_ms=now_ms,
        attempts=0,
        next_attempt_ms=now_ms,
        trigger={"replaces": order.id, "reason": "short or rejected at receipt"},
    )
    try:
        with session.begin_nested():
            session.add(new)
            session.flush()
    except IntegrityError:
        # Another open order for the bin exists already (the reorder rule fired meanwhile).
        raise_alert(
            session,
            "replacement_not_placed",
            now_ms,
            bin_id=order.bin_id,
            order_id=order.id,
            supplier_id=order.supplier_id,
            detail={"shortfall": qty},
        )
        return None
    record_transition(
        session,
        new.id,
        None,
        "created",
        actor=actor,
        at_ms=now_ms,
        reason=f"replacement for {order.id}",
        detail={"replaces": order.id, "qty": qty},
    )
    record_audit(
        session,
        at_ms=now_ms,
        actor=actor,
        action="order.created",
        entity="order",
        entity_id=new.id,
        detail={
            "bin": order.bin_id,
            "supplier": order.supplier_id,
            "qty": qty,
            "replaces": order.id,
        },
    )
    return new


# ---------------------------------------------------------------- ingest hooks


def confirm_refills(
    session: Session, refilled: dict[str, int], now_ms: int
) -> list[str]:
    """Refills seen by the scales: confirm put-aways, receive by weight, record the rest.

    Called from the ingest transaction for the bins whose net change in a flush
    was an increase.  Each refill is spent, in this order, on the bin's dock
    receipts waiting for put-away (oldest first), then on its open orders (the
    one whose expected quantity fits best), and what is left is a recorded
    ``unexplained_increase``.  Returns the bins whose position changed.
    """
    touched: list[str] = []
    for bin_id in sorted(refilled):
        delta = refilled[bin_id]
        if delta <= 0 or session.get(Bin, bin_id) is None:
            continue
        allowance = picks_allowance(session, bin_id, now_ms)
        left = _confirm_putaway(session, bin_id, delta, allowance, now_ms)
        if left > 0:
            left = _receive_by_weight(session, bin_id, left, allowance, now_ms)
        if left > 0:
            record_discrepancy(
                session,
                "unexplained_increase",
                bin_id,
                left,
                now_ms,
                detail={"delta": delta, "unmatched": left},
                alert=left > MATCH_TOLERANCE_UNITS,
            )
        touched.append(bin_id)
    refresh_pending(session, touched)
    return touched


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
        _maybe_close(session, order_id, now_ms, ACTOR_SCALE)
    return left


def expected_delivery(order: Order) -> int:
    """What the next delivery of an open order should bring: what the ship notice
    says is still on its way, else what is still outstanding."""
    received = order.delivered_qty or 0
    left = max(0, order.qty - received)
    if order.asn_qty is not None and order.asn_qty > received:
        return order.asn_qty - received
    return left


def _receive_by_weight(
    session: Session, bin_id: str, delta: int, allowance: int, now_ms: int
) -> int:
    """Match a refill with no dock receipt to the bin's open orders; returns what is left."""
    left = delta
    open_orders = list(
        session.scalars(
            select(Order)
            .where(Order.bin_id == bin_id, Order.state.in_(OPEN_ORDER_STATES))
            .order_by(Order.created_ms, Order.id)
        )
    )
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


def record_discrepancy(
    session: Session,
    kind: str,
    bin_id: str,
    qty: int,
    now_ms: int,
    *,
    order_id: str | None = None,
    receipt_id: int | None = None,
    supplier_id: str | None = None,
    detail: dict[str, Any] | None = None,
    alert: bool | None = None,
) -> ReceivingDiscrepancy:
    """Record units that did not match at receiving; alert when large (or asked to)."""
    row = ReceivingDiscrepancy(
        at_ms=now_ms,
        bin_id=bin_id,
        order_id=order_id,
        receipt_id=receipt_id,
        supplier_id=supplier_id,
        kind=kind,
        qty=qty,
        detail=detail,
    )
    session.add(row)
    if alert is None:
        alert = kind in ALERTING_DISCREPANCIES
    if alert:
        raise_alert(
            session,
            UNEXPLAINED if kind == "unexplained_increase" else f"receiving_{kind}",
            now_ms,
            bin_id=bin_id,
            order_id=order_id,
            supplier_id=supplier_id,
            detail={"qty": qty, **(detail or {})},
        )
    return row


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
        _maybe_close(session, r.order_id, now_ms, ACTOR_SCALE)
    refresh_pending(session, bins)
    return sorted(set(bins))


def apply_scans(
    session: Session, scans: Iterable[tuple[str, str, protocol.Scan]], now_ms: int
) -> list[str]:
    """Dock scans: an order label receives what is still to come; SKU barcodes count units.

    A label of an order that is no longer open (cancelled, closed, failed) is
    goods delivered twice or against the wrong order: recorded and alerted.  An
    agent receives only into the bins it may (:func:`jitstock.server.agents.may_receive`).
    Returns the bins whose position changed.
    """
    from jitstock.server.agents import may_receive

    touched: list[str] = []
    for _site, agent, scan in scans:
        where = f"{agent}/{scan.scanner}"
        order_id = order_from_label(scan.code)
        try:
            with session.begin_nested():
                if order_id is None:
                    _count_unit(session, where, scan.code, now_ms)
                    continue
                order = load_order(session, order_id)
                if not may_receive(session, agent, order.bin_id):
                    raise_alert(
                        session,
                        "scan_not_allowed",
                        now_ms,
                        bin_id=order.bin_id,
                        order_id=order.id,
                        supplier_id=order.supplier_id,
                        detail={
                            "scanner": where,
                            "reason": f"agent {agent} may not receive into bin {order.bin_id}",
                        },
                    )
                    continue
                if order.state not in OPEN_ORDER_STATES:
                    record_discrepancy(
                        session,
                        "closed_order_receipt",
                        order.bin_id,
                        expected_delivery(order) or order.qty,
                        now_ms,
                        order_id=order.id,
                        supplier_id=order.supplier_id,
                        detail={"scanner": where, "order_state": order.state},
                    )
                    continue
                receive(
                    session,
                    order_id,
                    expected_delivery(order),
                    method="scan",
                    actor=f"scanner:{where}",
                    now_ms=now_ms,
                    scanner=where,
                )
                touched.append(order.bin_id)
        except SupplyError as exc:
            log.info("scan %r at %s ignored: %s", scan.code, where, exc)
    return touched


def _count_unit(session: Session, scanner: str, code: str, now_ms: int) -> None:
    receipt = session.scalars(
        select(Receipt)
        .join(Order, Order.id == Receipt.order_id)
        .join(Sku, Sku.id == Order.sku_id)
        .where(
            Receipt.scanner == scanner,
            Receipt.at_ms >= now_ms - SCAN_SESSION_MS,
            Sku.barcode == code,
        )
        .order_by(Receipt.id.desc())
        .limit(1)
    ).first()
    if receipt is not None:
        receipt.counted_qty += 1
