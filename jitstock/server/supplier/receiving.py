"""Receiving: dock receipts (label scan, API), receipts by weight at the bin, put-away
confirmation by the scale (weigh-in check), quality inspection and replacement orders.

Where the goods are counted:

- a **dock receipt** (label scan or API) adds the received quantity to the bin's
  ``pending_delivery_qty`` (in the inventory position, not yet on hand); an
  inspection takes rejected units out of it again; the refill the bin's scale
  then sees confirms the put-away (``scale_qty``, the weigh-in check) and closes
  the order;
- a **refill at the bin** with no dock receipt is matched against the bin's open
  order: within tolerance of the announced quantity it *is* the receipt, with the
  quantity the scale counted; otherwise it raises an "unexplained stock increase"
  alert and closes nothing.

The refill hook runs inside ingest's transaction, once per flush that saw
refills, with a fixed number of set-based queries (not per reading).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
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
from jitstock.server.db.supplier_models import Inspection, Receipt, SupplyAlert
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
ACTOR_SCALE = "scale"
UNEXPLAINED = "unexplained_stock_increase"


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
    if at_dock:
        # Relative update: ingest may be writing the same bin's level right now.
        session.execute(
            update(Bin)
            .where(Bin.id == order.bin_id)
            .values(pending_delivery_qty=Bin.pending_delivery_qty + qty)
            .execution_options(synchronize_session=False)
        )
        session.refresh(bin_row)
        session.add(
            BinEvent(
                bin_id=bin_row.id,
                ts_ms=now_ms,
                kind="delivery",
                delta=qty,
                on_hand_after=bin_row.on_hand + bin_row.pending_delivery_qty,
            )
        )
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
    return receipt


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
        if rejected:
            session.execute(
                update(Bin)
                .where(Bin.id == receipt.bin_id)
                .values(
                    pending_delivery_qty=func.max(
                        Bin.pending_delivery_qty - rejected, 0
                    )
                    if session.get_bind().dialect.name == "sqlite"
                    else func.greatest(Bin.pending_delivery_qty - rejected, 0)
                )
                .execution_options(synchronize_session=False)
            )
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
    """A new order to the same supplier for what was short or rejected."""
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


def confirm_refills(session: Session, refilled: dict[str, int], now_ms: int) -> None:
    """Refills seen by the scales: confirm put-aways, receive by weight, or raise alerts.

    Called from the ingest transaction for the bins whose net change in a flush
    was an increase.
    """
    ids = list(refilled)
    pending = dict(
        session.execute(
            select(Bin.id, Bin.pending_delivery_qty).where(Bin.id.in_(ids))
        ).all()
    )
    putaway = [b for b in ids if pending.get(b, 0) > 0]
    unannounced = [b for b in ids if b in pending and pending[b] <= 0]
    if putaway:
        _confirm_putaway(session, putaway, refilled, pending, now_ms)
    if unannounced:
        _receive_by_weight(session, unannounced, refilled, now_ms)


def _confirm_putaway(
    session: Session,
    bins: list[str],
    refilled: dict[str, int],
    pending: dict[str, int],
    now_ms: int,
) -> None:
    for bin_id in bins:
        left = max(0, pending[bin_id] - refilled[bin_id])
        session.execute(
            update(Bin)
            .where(Bin.id == bin_id)
            .values(pending_delivery_qty=left)
            .execution_options(synchronize_session=False)
        )
    receipts = session.scalars(
        select(Receipt)
        .where(Receipt.bin_id.in_(bins), Receipt.status == "awaiting_putaway")
        .order_by(Receipt.bin_id, Receipt.id)
    ).all()
    budget = dict(refilled)
    last_of_bin = {r.bin_id: r.id for r in receipts}
    orders: set[str] = set()
    for r in receipts:
        expected = r.accepted_qty if r.accepted_qty is not None else r.qty
        got = max(0, min(budget[r.bin_id], expected - (r.scale_qty or 0)))
        if last_of_bin[r.bin_id] == r.id:
            # The last receipt of the bin takes whatever remains: the weigh-in over/short.
            got = budget[r.bin_id]
        r.scale_qty = (r.scale_qty or 0) + got
        budget[r.bin_id] -= got
        bin_left = max(0, pending[r.bin_id] - refilled[r.bin_id])
        if bin_left == 0 or r.scale_qty >= expected - tolerance(expected):
            r.status = "done"
            orders.add(r.order_id)
            if r.scale_qty != expected:
                record_audit(
                    session,
                    at_ms=now_ms,
                    actor=ACTOR_SCALE,
                    action="receipt.weigh_in_variance",
                    entity="order",
                    entity_id=r.order_id,
                    detail={
                        "receipt": r.id,
                        "expected": expected,
                        "scale": r.scale_qty,
                    },
                )
    session.flush()
    for order_id in sorted(orders):
        _maybe_close(session, order_id, now_ms, ACTOR_SCALE)


def _receive_by_weight(
    session: Session, bins: list[str], refilled: dict[str, int], now_ms: int
) -> None:
    open_orders: dict[str, Order] = {}
    for o in session.scalars(
        select(Order)
        .where(Order.bin_id.in_(bins), Order.state.in_(OPEN_ORDER_STATES))
        .order_by(Order.created_ms)
    ):
        open_orders.setdefault(o.bin_id, o)
    for bin_id in bins:
        delta = refilled[bin_id]
        order = open_orders.get(bin_id)
        expected = None
        if order is not None:
            expected = order.asn_qty or (order.qty - (order.delivered_qty or 0))
            if abs(delta - expected) <= tolerance(expected):
                try:
                    with session.begin_nested():
                        receive(
                            session,
                            order.id,
                            delta,
                            method="scale",
                            actor=ACTOR_SCALE,
                            now_ms=now_ms,
                        )
                    continue
                except SupplyError as exc:
                    log.warning("bin %s: receipt by weight refused: %s", bin_id, exc)
        raise_alert(
            session,
            UNEXPLAINED,
            now_ms,
            bin_id=bin_id,
            order_id=order.id if order is not None else None,
            supplier_id=order.supplier_id if order is not None else None,
            detail={"delta": delta, "expected": expected},
        )


def apply_scans(
    session: Session, scans: Iterable[tuple[str, str, protocol.Scan]], now_ms: int
) -> None:
    """Dock scans: an order label receives its announced quantity; SKU barcodes count units."""
    for _site, agent, scan in scans:
        where = f"{agent}/{scan.scanner}"
        order_id = order_from_label(scan.code)
        try:
            with session.begin_nested():
                if order_id is not None:
                    order = load_order(session, order_id)
                    qty = order.asn_qty or (order.qty - (order.delivered_qty or 0))
                    receive(
                        session,
                        order_id,
                        qty,
                        method="scan",
                        actor=f"scanner:{where}",
                        now_ms=now_ms,
                        scanner=where,
                    )
                else:
                    _count_unit(session, where, scan.code, now_ms)
        except SupplyError as exc:
            log.info("scan %r at %s ignored: %s", scan.code, where, exc)


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
