"""The reorder rule for every bin of one ingest flush at once, in a few SQL statements.

:func:`jitstock.server.reorder.maybe_reorder` decides one bin with ORM loads and
about a dozen statements (10–30 ms per order on a busy 2-core box, inside the
flush's transaction that holds SQLite's write lock).  A flush decides with
:func:`decide`: the same rule, the same answers, but one statement per *kind* of
fact for all its bins together (bins, open orders, pending put-away, supplier items,
recent refusals) and one executemany per kind of row written (orders, audit rows,
transitions).  The facts about bins and orders are read inside the flush's own
transaction, as fresh as the per-bin path's, by statements run as driver SQL
(:mod:`jitstock.server.driver_sql`); who may supply each SKU comes from the
catalogue generation's cache (:mod:`jitstock.server.catalog_cache`: ended by every
registry reload and every write of supplier items in this process).

"One trigger, one order" holds as in :mod:`jitstock.server.reorder`: the position
counts open orders; the bins are row-locked on PostgreSQL (``FOR UPDATE`` by the
caller's select here) and SQLite's write lock serialises everything else; a bin
that already has an open order is not inserted again; and should the partial
unique index still refuse an insert (an order made by a path that does not lock
the bin), the batch is rolled back to its savepoint and the orders are inserted
one by one, each in its own savepoint, the refused one reported as "no order".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, bindparam, case, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.server import catalog_cache, reorder
from jitstock.server.db.models import (
    OPEN_ORDER_STATES,
    AuditLog,
    Bin,
    Order,
    holds_order_slot,
    new_order_id,
)
from jitstock.server.db.supplier_models import OrderTransition, Receipt
from jitstock.server.driver_sql import Prepared
from jitstock.server.position import (
    PENDING_RECEIPT_STATUSES,
    _pending_expr,  # the position's one definition of "pending put-away"
    outstanding_expr,
)

log = logging.getLogger(__name__)

_BIN_COLUMNS = (
    Bin.id,
    Bin.site_id,
    Bin.sku_id,
    Bin.supplier_id,
    Bin.agent_id,
    Bin.paused,
    Bin.order_qty,
    Bin.reorder_point,
    Bin.capacity,
    Bin.on_hand,
    Bin.last_seen_ms,
    Bin.last_grams,
)
# Built once: a statement object per call costs more Python than the query itself.
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
_BINS_STMT = select(*_BIN_COLUMNS).where(Bin.id.in_(_IDS)).order_by(Bin.id)
# the facts' statements run as driver SQL (no JSON in or out; see driver_sql)
_BINS = Prepared(_BINS_STMT, ["ids"])
_BINS_LOCKED = Prepared(_BINS_STMT.with_for_update(), ["ids"])
# per bin: units still to come on open orders, and how many open orders the unique
# index counts (one waiting for its first delivery; a bridge, a replacement and a
# part-received order do not count)
_ON_ORDER_STMT = (
    select(
        Order.bin_id,
        func.sum(outstanding_expr()),
        func.sum(
            case(
                (
                    holds_order_slot(),
                    1,
                ),
                else_=0,
            )
        ),
    )
    .where(Order.state.in_(OPEN_ORDER_STATES), Order.bin_id.in_(_IDS))
    .group_by(Order.bin_id)
)
_ON_ORDER = Prepared(_ON_ORDER_STMT, ["ids"])
_PENDING_STMT = (
    select(Receipt.bin_id, func.sum(_pending_expr()))
    .where(Receipt.status.in_(PENDING_RECEIPT_STATUSES), Receipt.bin_id.in_(_IDS))
    .group_by(Receipt.bin_id)
)
_PENDING = Prepared(_PENDING_STMT, ["ids"])
_REFUSALS_STMT = select(
    Order.bin_id, Order.supplier_id, Order.state, Order.last_error
).where(
    Order.bin_id.in_(_IDS),
    Order.state.in_(("failed", "cancelled")),
    func.coalesce(Order.closed_ms, Order.created_ms) >= bindparam("since"),
)
_REFUSALS = Prepared(_REFUSALS_STMT, ["ids"])
_INSERT_ORDER = insert(Order.__table__)  # type: ignore[arg-type]
_INSERT_AUDIT = insert(AuditLog.__table__)  # type: ignore[arg-type]
_INSERT_TRANSITION = insert(OrderTransition.__table__)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NewOrder:
    """One order :func:`decide` created (its row is in the caller's transaction)."""

    id: str
    bin_id: str
    supplier_id: str
    qty: int


def decide(
    session: Session,
    bin_ids: list[str],
    now_ms: int,
    *,
    lock: bool = False,
) -> list[NewOrder]:
    """Run the reorder rule for these bins in the caller's transaction; the orders made.

    The trigger each order records is the bin's last reading and count (as the
    per-bin path records it) plus its position.  ``lock``: ``SELECT … FOR UPDATE``
    the bins (PostgreSQL: serialise per bin across server processes).
    """
    if not bin_ids:
        return []
    session.flush()  # the caller's ORM changes (put-aways, receipts) count
    conn = session.connection()
    ids = sorted(set(bin_ids))
    bins = (_BINS_LOCKED if lock else _BINS).execute(conn, {"ids": ids}).all()
    # as maybe_reorder: paused, nothing to order, or a scale that never reported
    # (a level of 0 is "unknown", not "empty")
    live = [
        b
        for b in bins
        if not b.paused
        and b.order_qty > 0
        and not (b.agent_id is not None and b.last_seen_ms is None)
    ]
    if not live:
        return []
    live_ids = [b.id for b in live]
    on_order: dict[str, tuple[int, int]] = {
        b: (int(q or 0), int(n or 0))
        for b, q, n in _ON_ORDER.execute(conn, {"ids": live_ids})
    }
    pending: dict[str, int] = {
        b: int(q or 0) for b, q in _PENDING.execute(conn, {"ids": live_ids})
    }
    low = []
    for b in live:
        ordered, open_orders = on_order.get(b.id, (0, 0))
        position = int(b.on_hand) + ordered + pending.get(b.id, 0)
        if position <= b.reorder_point:
            low.append((b, position, ordered, open_orders))
    if not low:
        return []
    candidates = _candidates(conn, [b for b, *_ in low])
    refused = _refused(conn, [b.id for b, *_ in low], now_ms)
    rows: list[dict[str, Any]] = []
    for b, position, ordered, open_orders in low:
        choice = reorder.pick_supplier(candidates[b.id], refused.get(b.id, set()))
        supplier_id, why_not = choice
        if supplier_id is None:
            # the alert monitor's reorder_blocked rule says why (it re-checks the same condition)
            reorder.log_blocked(b.id, why_not)
            continue
        if open_orders:
            # the unique index would refuse it: the open order is this trigger's order
            log.info("bin %s: another transaction already has an open order", b.id)
            continue
        pending_qty = pending.get(b.id, 0)
        qty = reorder.order_quantity(position, b.reorder_point, b.order_qty, b.capacity)
        rows.append(
            {
                "id": new_order_id(),
                "bin_id": b.id,
                "sku_id": b.sku_id,
                "supplier_id": supplier_id,
                "site_id": b.site_id,
                "qty": qty,
                "state": "created",
                "created_ms": now_ms,
                "attempts": 0,
                "next_attempt_ms": now_ms,
                "trigger": {
                    "reading_ts_ms": b.last_seen_ms,
                    "grams": b.last_grams,
                    "on_hand": b.on_hand,
                    "position": {
                        "on_hand": int(b.on_hand),
                        "pending_delivery": pending_qty,
                        "on_order": ordered,
                        "inventory_position": position,
                        "reorder_point": b.reorder_point,
                    },
                },
            }
        )
    return _insert(session, rows, now_ms)


def _candidates(conn: Any, low: list[Any]) -> dict[str, list[str]]:
    """Who may supply each bin, in order (reorder.supplier_candidates for many bins)."""
    # this catalogue generation's active supplier items (see catalog_cache)
    by_sku = catalog_cache.active_suppliers(conn, (b.sku_id for b in low))
    out: dict[str, list[str]] = {}
    for b in low:
        mine: list[str] = [] if b.supplier_id is None else [b.supplier_id]
        mine += [s for s in by_sku.get(b.sku_id, []) if s not in mine]
        out[b.id] = mine
    return out


def _refused(conn: Any, bin_ids: list[str], now_ms: int) -> dict[str, set[str]]:
    """reorder.refused_recently for many bins."""
    out: dict[str, set[str]] = {}
    since = now_ms - reorder.REFUSAL_WINDOW_MS
    for b, supplier, state, error in _REFUSALS.execute(
        conn, {"ids": bin_ids, "since": since}
    ):
        if reorder.is_refusal(state, error):
            out.setdefault(b, set()).add(supplier)
    return out


def _side_rows(
    rows: list[dict[str, Any]], now_ms: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The audit and transition rows of new orders (as maybe_reorder writes them)."""
    audits = [
        {
            "at_ms": now_ms,
            "actor": reorder.ACTOR,
            "action": "order.created",
            "entity": "order",
            "entity_id": r["id"],
            "detail": {
                "bin": r["bin_id"],
                "supplier": r["supplier_id"],
                "qty": r["qty"],
                **r["trigger"]["position"],
            },
        }
        for r in rows
    ]
    transitions = [
        {
            "order_id": r["id"],
            "at_ms": now_ms,
            "from_state": None,
            "to_state": "created",
            "actor": reorder.ACTOR,
            "reason": None,
            "detail": None,
        }
        for r in rows
    ]
    return audits, transitions


def _write(session: Session, rows: list[dict[str, Any]], now_ms: int) -> None:
    conn = session.connection()
    audits, transitions = _side_rows(rows, now_ms)
    conn.execute(_INSERT_ORDER, rows)
    conn.execute(_INSERT_AUDIT, audits)
    conn.execute(_INSERT_TRANSITION, transitions)


def _insert(
    session: Session, rows: list[dict[str, Any]], now_ms: int
) -> list[NewOrder]:
    """Insert the orders and their audit rows; one by one if the batch is refused."""
    if not rows:
        return []
    # a Core savepoint on the session's connection: only Core rows are written in it
    # (the ORM's begin_nested would flush and track the session for nothing)
    conn = session.connection()
    try:
        with conn.begin_nested():
            _write(session, rows, now_ms)
        done = rows
    except IntegrityError as exc:
        if not reorder.is_one_open_order_violation(exc):
            raise
        done = []
        for row in rows:
            try:
                with conn.begin_nested():
                    _write(session, [row], now_ms)
            except IntegrityError as one:
                if not reorder.is_one_open_order_violation(one):
                    raise
                log.info(
                    "bin %s: another transaction already has an open order",
                    row["bin_id"],
                )
                continue
            done.append(row)
    return [NewOrder(r["id"], r["bin_id"], r["supplier_id"], r["qty"]) for r in done]
