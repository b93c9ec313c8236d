"""Receiving at the dock: receipts (label scan, API), quality inspection, replacement
orders, and the order's settlement once its goods are in.

Where the goods are counted (the position model is :mod:`jitstock.server.position`):
a **dock receipt** puts the received quantity in the position as *pending
put-away* (not yet on hand); an inspection takes rejected units out of it again;
the refill the bin's scale then sees confirms the put-away and closes the order
(:mod:`jitstock.server.supplier.putaway`, which also receives by weight a refill
with no dock receipt).  A refill the scale saw *before* the dock receipt was
recorded is matched to it here.  Units that do not match are recorded by
:mod:`jitstock.server.supplier.discrepancies`.
"""

from __future__ import annotations

import logging
import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jitstock.server.db.audit import record_audit
from jitstock.server.db.models import (
    OPEN_ORDER_STATES,
    Bin,
    BinEvent,
    Order,
    Sku,
    Supplier,
    holds_order_slot,
    new_order_id,
)
from jitstock.server.db.supplier_models import (
    Inspection,
    Receipt,
    ReceivingDiscrepancy,
    SupplierItem,
)
from jitstock.server.position import (
    outstanding,
    pending_by_bin,
    receipt_pending,
    refresh_pending,
)
from jitstock.server.supplier import IllegalTransition, InvalidRequest
from jitstock.server.supplier.discrepancies import raise_alert
from jitstock.server.supplier.lifecycle import (
    enqueue_event,
    load_order,
    record_transition,
    transition,
)

log = logging.getLogger(__name__)
# A refill matches an order within max(units, fraction × expected): a pick during the
# put-away or a miscounted pack must not turn a delivery into an "unexplained" one.
MATCH_TOLERANCE_UNITS = 2
MATCH_TOLERANCE_FRACTION = 0.1
# A refill before a dock receipt (the goods went into the bin first, the paperwork
# came later) is matched to the receipt when it is at most this old.
LATE_RECEIPT_MATCH_MS = 2 * 3_600_000
ACTOR_SCALE = "scale"


def round_to_item(qty: int, item: SupplierItem) -> int:
    """At least the supplier item's MOQ, in whole packs."""
    qty = max(qty, item.moq or 1)
    pack = item.pack_size or 1
    return -(-qty // pack) * pack


def tolerance(expected: int) -> int:
    """How far (units) a refill may be from the expected quantity and still match."""
    return max(MATCH_TOLERANCE_UNITS, math.ceil(MATCH_TOLERANCE_FRACTION * expected))


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
    request_key: str | None = None,
) -> Receipt:
    """Record goods received for an open order; the order becomes (partially_)received.

    ``request_key`` is the client's Idempotency-Key, kept on the receipt (unique per
    order: see :func:`replayed_receipt`)."""
    if qty <= 0:
        raise InvalidRequest("qty", f"must be positive, got {qty}")
    # locked: the received total below adds to what this reads (two part receipts
    # at once must not both add to the same old total)
    order = load_order(session, order_id, lock=True)
    if order.state not in OPEN_ORDER_STATES:
        if received_by_scale(session, order, now_ms):
            raise IllegalTransition(
                f"order {order_id} is {order.state}: the bin's scale received it by "
                "weight (the goods went into the bin before the dock receipt); "
                "nothing is left to receive"
            )
        raise IllegalTransition(
            f"order {order_id} is {order.state}; only an open order can be received"
        )
    at_dock = method != "scale"
    if at_dock:
        check_received_qty(order, qty)
    bin_row = session.get(Bin, order.bin_id, populate_existing=True)
    assert bin_row is not None  # orders.bin_id is a foreign key
    inspect = _inspection_required(session, order)
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
        request_key=request_key,
        complete=complete if at_dock else None,
    )
    session.add(receipt)
    session.flush()
    if status == "done" and at_dock:
        count_in_without_scale(bin_row, qty)
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
            _match_earlier_refills(session, order, receipt, now_ms)
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


def count_in_without_scale(bin_row: Bin, qty: int) -> None:
    """Goods received into a bin nobody weighs are in it: its count goes up by them.

    A bin with a scale counts them when its scale sees them (the receipt waits for
    put-away); a bin without one has nothing else to count them, and a dock receipt
    that left its count alone made it order again at once (found by an outside try)."""
    if bin_row.agent_id is None and qty > 0:
        bin_row.on_hand += qty


def replayed_receipt(
    session: Session,
    order_id: str,
    request_key: str | None,
    qty: int,
    complete: bool = True,
) -> Receipt | None:
    """The receipt a request with this Idempotency-Key already recorded for the order.

    A dock terminal that lost the answer sends the same request again: it gets the first
    receipt back, and nothing is recorded twice.  The key names one request, so the same
    key with another quantity or another ``complete`` is refused rather than guessed at."""
    if request_key is None:
        return None
    found = session.scalar(
        select(Receipt).where(
            Receipt.order_id == order_id, Receipt.request_key == request_key
        )
    )
    if found is not None and found.qty != qty:
        raise InvalidRequest(
            "Idempotency-Key",
            f"already used for receipt {found.id} of {found.qty} on order {order_id}; "
            "a different receipt needs a new key",
            where="header",
        )
    if found is not None and found.complete is not None and found.complete != complete:
        raise InvalidRequest(
            "Idempotency-Key",
            f"already used for receipt {found.id} on order {order_id} with complete="
            f"{str(found.complete).lower()}; a different receipt needs a new key",
            where="header",
        )
    return found


def received_by_scale(session: Session, order: Order, now_ms: int) -> bool:
    """The order was received by weight alone within ``LATE_RECEIPT_MATCH_MS``: the
    goods went into the bin before the dock saw them, so a dock receipt (label scan or
    API) of it now is its paperwork, not goods delivered twice."""
    if order.state not in ("received", "closed"):
        return False
    methods = session.execute(
        select(
            func.min(Receipt.method), func.max(Receipt.method), func.max(Receipt.at_ms)
        ).where(Receipt.order_id == order.id)
    ).one()
    low, high, last = methods
    return (
        low == high == "scale"
        and last is not None
        and int(last) >= now_ms - LATE_RECEIPT_MATCH_MS
    )


def check_received_qty(order: Order, qty: int) -> None:
    """A dock receipt may bring what is still outstanding on the order plus the
    tolerance (as a ship notice may), no more: a mistyped quantity would sit in the
    position as pending put-away for the whole put-away window, and the bin would not
    reorder meanwhile.  Goods beyond it that reach the bin are an unexplained increase."""
    left = outstanding(order)
    if qty > left + tolerance(left):
        raise InvalidRequest(
            "qty",
            f"{qty} received is more than the {left} still outstanding on order "
            f"{order.id} (+{tolerance(left)} tolerance)",
        )


def _match_earlier_refills(
    session: Session, order: Order, receipt: Receipt, now_ms: int
) -> None:
    """The goods went into the bin before the dock receipt was recorded (the scale saw
    an unexplained increase): that refill is this receipt's put-away.

    Only an increase after the order was created can be its goods: one from before
    (a top-up while no order was open) is not, and taking it would call goods still at
    the dock put away (the order closed, the bin ordering again for them).  The bound
    is ``created_ms``, not ``sent_ms``: the supplier may see an order before ``sent_ms``
    is recorded (its portal lists created orders; an ack or ship notice of an order
    whose sending failed sets ``sent_ms`` only then), while nobody can ship an order
    before it exists.  Strictly after: a refill in the same flush as the reading that
    placed the order is settled before the reorder rule runs, so it came first."""
    earlier = session.scalars(
        select(ReceivingDiscrepancy)
        .where(
            ReceivingDiscrepancy.bin_id == receipt.bin_id,
            ReceivingDiscrepancy.kind == "unexplained_increase",
            ReceivingDiscrepancy.resolved_ms.is_(None),
            ReceivingDiscrepancy.at_ms >= now_ms - LATE_RECEIPT_MATCH_MS,
            ReceivingDiscrepancy.at_ms > order.created_ms,
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
    # The order locked first, then the receipt read again: two inspections of one
    # order (or of one receipt) at once take turns, so the second sees the first's
    # receipt status, and the order is settled once, by whichever finds no
    # inspection left open (load_order's ``lock``).
    order = load_order(session, receipt.order_id, lock=True)
    session.refresh(receipt)
    if receipt.status not in ("awaiting_inspection", "awaiting_putaway"):
        raise IllegalTransition(
            f"receipt {receipt_id} is {receipt.status}; only a receipt awaiting "
            "inspection or put-away can be inspected"
        )
    if accepted + rejected != receipt.qty:
        raise InvalidRequest(
            "accepted_qty",
            f"accepted ({accepted}) + rejected ({rejected}) must equal the {receipt.qty} received",
        )
    # Goods found wrong after their dock receipt (before put-away) are rejected the
    # same way; what the bin's scale has already seen cannot be rejected any more.
    in_bin = receipt.scale_qty or 0
    putting_away = receipt.status == "awaiting_putaway"
    if putting_away and receipt.accepted_qty is not None:
        raise IllegalTransition(f"receipt {receipt_id} was inspected already")
    if putting_away and accepted < in_bin:
        raise InvalidRequest(
            "accepted_qty",
            f"{in_bin} of receipt {receipt_id} are in the bin already (its scale saw "
            f"them): at least that many are accepted; take the rest out and recount",
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
        receipt.status = (
            "awaiting_putaway" if has_scale and accepted > in_bin else "done"
        )
        if bin_row is not None and not putting_away:
            count_in_without_scale(bin_row, accepted)
    else:
        receipt.status = "done"
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
    # less what replacements placed earlier (settled before a later rejection) cover
    replaced = int(
        session.scalar(
            select(func.coalesce(func.sum(Order.qty), 0)).where(
                Order.replaces == order.id,
                Order.state.not_in(("failed", "cancelled")),
            )
        )
        or 0
    )
    shortfall = order.qty - accepted - replaced
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
    maybe_close(session, order.id, now_ms, actor)


def maybe_close(session: Session, order_id: str, now_ms: int, actor: str) -> None:
    """Close a received order once nothing of it waits for inspection or put-away."""
    order = load_order(session, order_id, lock=True)
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
    # The reorder rule fired meanwhile (the shortfall let the position fall): its order
    # covers the need, and a replacement beside it would order the shortfall twice.
    if session.scalar(
        select(Order.id).where(Order.bin_id == order.bin_id, holds_order_slot())
    ):
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
        # not the bin's one open order (uq_orders_one_open_per_bin leaves it out): if
        # the position falls to the reorder point with only this open, the bin orders
        replaces=order.id,
    )
    session.add(new)
    session.flush()
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


def expected_delivery(order: Order) -> int:
    """What the next delivery of an open order should bring: what the ship notice
    says is still on its way, else what is still outstanding."""
    received = order.delivered_qty or 0
    left = max(0, order.qty - received)
    if order.asn_qty is not None and order.asn_qty > received:
        return order.asn_qty - received
    return left
