"""Dock scans: what a scanner at the dock sends, applied in ingest's flush.

An order's label (``JSORD:<order id>``, :mod:`jitstock.server.supplier.labels` prints
it) receives the order (:func:`jitstock.server.supplier.receiving.receive`); any other
code is read (:mod:`jitstock.server.supplier.scancode`: GS1 element strings, GTINs,
symbology identifiers) and counts units into the scanner's most recent receipt of the
SKU it names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock import protocol
from jitstock.ratelog import RateLimitedLog, message_kind
from jitstock.server.db.models import OPEN_ORDER_STATES, Order, Sku
from jitstock.server.db.supplier_models import Receipt
from jitstock.server.supplier import SupplyError
from jitstock.server.supplier.discrepancies import raise_alert, record_discrepancy
from jitstock.server.supplier.lifecycle import load_order
from jitstock.server.supplier.receiving import (
    expected_delivery,
    receive,
    received_by_scale,
    tolerance,
)
from jitstock.server.supplier.scancode import ScannedCode, read_code

log = logging.getLogger(__name__)
# A dock scanner sends one bad label many times over (and one MQTT batch may hold 2,000
# scans): every per-scan line is at most one a minute per scanner and kind of message
# (its values blanked), with the count of the suppressed ones on the next.
_ratelog = RateLimitedLog(log, 60.0)
# A scanned code is cut to this in a log line (a code may be 256 characters).
LOGGED_CODE_LEN = 80
# What became of a dock scan (jitstock_dock_scans_total{outcome}).
SCAN_OUTCOMES = (
    "order_label",  # an order's label: received (or alerted)
    "counted",  # units counted into a recent receipt of the scanner
    "no_receipt",  # no recent receipt of the scanner for the SKU the code names
    "unreadable_gs1",  # GS1 element strings that cannot be read: matched as a plain code
    "count_refused",  # a count of 0, or more than the whole receipt: nothing counted
)


# An order label's barcode: this prefix + the order id (a SKU barcode never starts so).
LABEL_PREFIX = "JSORD:"
# SKU scans after a label scan count units into that receipt for this long.
SCAN_SESSION_MS = 15 * 60 * 1000


def label_code(order_id: str) -> str:
    """The barcode text printed on an order's label."""
    return LABEL_PREFIX + order_id


def order_from_label(code: str) -> str | None:
    """The order id a scanned label names, or None for any other code."""
    return code[len(LABEL_PREFIX) :] if code.startswith(LABEL_PREFIX) else None


def apply_scans(
    session: Session,
    scans: Iterable[tuple[str, str, protocol.Scan]],
    now_ms: int,
    outcomes: list[str] | None = None,
) -> list[str]:
    """Dock scans: an order label receives what is still to come; SKU barcodes count units.

    A code is read first (:mod:`jitstock.server.supplier.scancode`): a symbology
    identifier in front of a label is no part of it, a GS1 carton label names a GTIN
    and may count several units.  A label of an order that is no longer open
    (cancelled, closed, failed) is goods delivered twice or against the wrong order:
    recorded and alerted.  An agent receives only into the bins it may
    (:func:`jitstock.server.agents.may_receive`).  Returns the bins whose position
    changed; ``outcomes`` gets one of :data:`SCAN_OUTCOMES` per scan (and one more,
    ``unreadable_gs1``, for a GS1 string that could not be read).
    """
    from jitstock.server.agents import may_receive

    touched: list[str] = []
    seen = outcomes if outcomes is not None else []
    for _site, agent, scan in scans:
        where = f"{agent}/{scan.scanner}"
        read = read_code(scan.code)
        order_id = order_from_label(read.code)
        if read.problem is not None and read.count != 0:
            seen.append("unreadable_gs1")
            _ratelog.log(
                logging.WARNING,
                f"gs1:{_agent(where)}:{message_kind(read.problem)}",
                "scan %r at %s: %s; matched as a plain code",
                scan.code[:LOGGED_CODE_LEN],
                where,
                read.problem,
            )
        try:
            with session.begin_nested():
                if order_id is None:
                    seen.append(_count_units(session, where, read, now_ms))
                    continue
                seen.append("order_label")
                order = load_order(session, order_id, lock=True)
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
                    if received_by_scale(session, order, now_ms):
                        _ratelog.log(
                            logging.INFO,
                            f"by_scale:{_agent(where)}",
                            "scan of order %s at %s: already received by the scale",
                            order.id,
                            where,
                        )
                        continue
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
            _ratelog.log(
                logging.INFO,
                f"ignored:{_agent(where)}:{type(exc).__name__}:{message_kind(str(exc))}",
                "scan %r at %s ignored: %s",
                scan.code[:LOGGED_CODE_LEN],
                where,
                exc,
            )
    return touched


def _count_units(session: Session, scanner: str, read: ScannedCode, now_ms: int) -> str:
    """Count a scanned SKU barcode or carton label into the scanner's most recent
    receipt of that SKU; what became of it (one of :data:`SCAN_OUTCOMES`)."""
    if read.count <= 0:
        _refused(scanner, read, read.problem or "no units")
        return "count_refused"
    receipt = session.scalars(
        select(Receipt)
        .join(Order, Order.id == Receipt.order_id)
        .join(Sku, Sku.id == Order.sku_id)
        .where(
            Receipt.scanner == scanner,
            Receipt.at_ms >= now_ms - SCAN_SESSION_MS,
            Sku.barcode.in_(read.barcodes()),
        )
        .order_by(Receipt.id.desc())
        .limit(1)
    ).first()
    if receipt is None:
        return "no_receipt"
    # a carton's count, bounded by the receipt: a label that says more units than the
    # whole delivery is a misprint or a wrong label, not a count
    most = receipt.qty + tolerance(receipt.qty)
    if read.count > most:
        _refused(scanner, read, f"more than the {most} receipt {receipt.id} may hold")
        return "count_refused"
    receipt.counted_qty += read.count
    if read.count > 1 or read.lot is not None or read.sscc is not None:
        _ratelog.log(
            logging.INFO,
            f"counted:{_agent(scanner)}",
            "scan at %s: %d units of GTIN %s into receipt %d (lot %s, SSCC %s)",
            scanner,
            read.count,
            read.gtin,
            receipt.id,
            read.lot,
            read.sscc,
        )
    return "counted"


def _agent(where: str) -> str:
    """The agent of an ``agent/scanner`` place: log lines are limited per agent, since
    the scanner's name is whatever each scan in a payload says (a batch of 2,000
    scanner names must not make 2,000 lines)."""
    return where.partition("/")[0]


def _refused(scanner: str, read: ScannedCode, why: str) -> None:
    _ratelog.log(
        logging.WARNING,
        f"count:{_agent(scanner)}:{message_kind(why)}",
        "scan %r at %s: count %d refused, nothing counted: %s",
        read.raw[:LOGGED_CODE_LEN],
        scanner,
        read.count,
        why,
    )
