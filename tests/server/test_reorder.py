"""The reorder rule: one order when the inventory position reaches the reorder point, never two."""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import func, select

from jitstock.server.db.models import AuditLog, Bin, Order
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.db.supplier_models import Receipt
from jitstock.server.position import Position, position_of
from jitstock.server.reorder import (
    inventory_position,
    lock_bin,
    maybe_reorder,
    order_quantity,
)
from jitstock.server.supplier.putaway import expire_putaways
from tests.server.db_factories import SUPPLIER, seed
from tests.waits import WAIT_S

NOW = 1_700_000_000_000
READING = {"reading": {"agent": "pi-1", "seq": 7, "ts_ms": NOW - 20, "grams": 84.0}}


def _pick(factory, bin_id: str, new_on_hand: int) -> Order | None:
    """What ingest does: change the count, then ask the rule, in one transaction."""
    with transaction(factory) as s:
        b = lock_bin(s, bin_id)
        b.on_hand = new_on_hand
        return maybe_reorder(s, b, NOW, READING)


def _orders(factory) -> list[Order]:
    with transaction(factory, readonly=True) as s:
        return list(s.scalars(select(Order)))


def test_above_the_reorder_point_nothing_is_ordered(db):
    (bin_id,) = seed(db.factory, on_hand=50, reorder_point=20)
    assert _pick(db.factory, bin_id, 21) is None
    assert _orders(db.factory) == []


def test_falling_to_the_reorder_point_creates_one_due_order_with_its_trigger(db):
    (bin_id,) = seed(db.factory, on_hand=50, reorder_point=20, order_qty=100)
    order = _pick(db.factory, bin_id, 20)
    assert order is not None
    (stored,) = _orders(db.factory)
    assert (stored.id, stored.bin_id, stored.supplier_id, stored.qty) == (
        order.id,
        bin_id,
        SUPPLIER,
        100,
    )
    assert stored.state == "created"
    assert stored.next_attempt_ms == NOW
    assert stored.trigger["reading"] == READING["reading"]
    assert stored.trigger["position"]["inventory_position"] == 20
    assert stored.trigger["position"]["reorder_point"] == 20
    with transaction(db.factory, readonly=True) as s:
        audit = s.scalars(select(AuditLog).where(AuditLog.entity_id == order.id)).one()
    assert audit.action == "order.created"
    assert audit.detail["qty"] == 100


def test_readings_that_keep_arriving_do_not_order_again(db):
    (bin_id,) = seed(db.factory, on_hand=50, reorder_point=20, order_qty=100)
    assert _pick(db.factory, bin_id, 19) is not None
    for level in (18, 17, 5, 0):
        assert _pick(db.factory, bin_id, level) is None
    assert len(_orders(db.factory)) == 1


def test_inventory_position_counts_pending_deliveries_and_open_orders(db):
    (bin_id,) = seed(db.factory, on_hand=50, reorder_point=20, order_qty=100)
    _pick(db.factory, bin_id, 10)
    with transaction(db.factory) as s:
        b = s.get(Bin, bin_id)
        assert inventory_position(s, b) == 110
        # The goods were received at the dock; the bin's scale has not seen them yet.
        order = s.scalars(select(Order)).one()
        s.add(
            Receipt(
                order_id=order.id,
                bin_id=bin_id,
                supplier_id=order.supplier_id,
                at_ms=NOW,
                method="api",
                qty=100,
                status="awaiting_putaway",
                actor="test",
            )
        )
        s.flush()
        order.state = "received"
        order.delivered_qty = 100
    with transaction(db.factory) as s:
        assert position_of(s, bin_id) == Position(on_hand=10, on_order=0, pending=100)
    assert _pick(db.factory, bin_id, 10) is None
    assert len(_orders(db.factory)) == 1
    # a put-away never seen by the scale leaves the position when its window passes
    with transaction(db.factory) as s:
        assert expire_putaways(s, NOW + 1, window_ms=0) == [bin_id]
        assert position_of(s, bin_id).total == 10
    assert _pick(db.factory, bin_id, 10) is not None


def test_a_new_order_once_the_previous_one_is_closed(db):
    (bin_id,) = seed(db.factory, on_hand=50, reorder_point=20, order_qty=100)
    first = _pick(db.factory, bin_id, 10)
    with transaction(db.factory) as s:
        s.get(Order, first.id).state = "delivered"
    second = _pick(db.factory, bin_id, 10)
    assert second is not None
    assert second.id != first.id


@pytest.mark.parametrize("change", ["paused", "no_supplier", "no_order_qty"])
def test_no_order_for_paused_unsupplied_or_unconfigured_bins(db, change):
    (bin_id,) = seed(db.factory)
    with transaction(db.factory) as s:
        b = s.get(Bin, bin_id)
        if change == "paused":
            b.paused = True
        elif change == "no_supplier":
            b.supplier_id = None
        else:
            b.order_qty = 0
    assert _pick(db.factory, bin_id, 0) is None
    assert _orders(db.factory) == []


def test_a_big_drop_orders_enough_multiples_to_clear_the_reorder_point(db):
    (bin_id,) = seed(db.factory, on_hand=500, reorder_point=200, order_qty=100)
    order = _pick(db.factory, bin_id, 50)
    assert order.qty == 200  # 50 + 200 = 250 > 200


def test_order_quantity():
    assert order_quantity(20, 20, 100, None) == 100
    assert order_quantity(-30, 20, 25, None) == 75
    assert order_quantity(0, 300, 100, 250) == 200  # capacity caps the multiple...
    assert (
        order_quantity(0, 300, 100, 50) == 100
    )  # ...but never below one order quantity
    # what one receipt can carry caps the multiple too, never below one order quantity
    assert order_quantity(0, 5_000_000, 300_000, None) == 900_000
    assert order_quantity(0, 5_000_000, 1_000_000, None) == 1_000_000
    assert order_quantity(-(2**62), 2**62, 999_999, None) == 999_999


@pytest.mark.parametrize("lock_first", [True, False], ids=["lock_bin", "plain_load"])
def test_two_processes_deciding_at_once_create_exactly_one_order(db, lock_first):
    """Two engines (as two server processes would have) lower the same bin concurrently."""
    (bin_id,) = seed(db.factory, on_hand=25, reorder_point=20, order_qty=100)
    # Both read the bin before either writes -- except where that would deadlock: under
    # SQLite's BEGIN IMMEDIATE and behind lock_bin the second waits for the first.
    barrier_inside = db.engine.dialect.name == "postgresql" and not lock_first
    engines = [make_engine(db.url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: list[object] = []
    errors: list[BaseException] = []

    def decide(engine, level: int) -> None:
        factory = make_session_factory(engine)
        try:
            if not barrier_inside:
                barrier.wait()
            with transaction(factory) as s:
                b = lock_bin(s, bin_id) if lock_first else s.get(Bin, bin_id)
                if barrier_inside:
                    barrier.wait()
                b.on_hand = level
                results.append(maybe_reorder(s, b, NOW, READING))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=decide, args=(e, lvl))
        for e, lvl in zip(engines, (19, 18), strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for e in engines:
        e.dispose()
    assert errors == []
    assert sum(r is not None for r in results) == 1
    assert len(_orders(db.factory)) == 1


# A stale snapshot needs REPEATABLE READ on a concurrent database; SQLite's single writer never shows one.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_unique_index_is_the_last_line_of_defence(db, caplog):
    """A caller with a stale snapshot misses the other order; the index stops the duplicate."""
    caplog.set_level(logging.INFO, logger="jitstock.server.reorder")
    (bin_id,) = seed(db.factory, on_hand=10, reorder_point=20, order_qty=100)
    stale = make_session_factory(
        db.engine.execution_options(isolation_level="REPEATABLE READ")
    )
    with transaction(stale) as late:
        # The snapshot is taken here: no orders yet.
        late.execute(select(func.count()).select_from(Order))
        with transaction(db.factory) as s:  # meanwhile another process orders
            assert maybe_reorder(s, s.get(Bin, bin_id), NOW, READING) is not None
        b = late.get(Bin, bin_id)
        assert maybe_reorder(late, b, NOW + 1, READING) is None
        # Refused by the index, not by the open-order query.
        assert "already has an open order" in caplog.text
        b.last_grams = 42.0  # the caller's transaction is still usable and commits
    assert len(_orders(db.factory)) == 1
    with transaction(db.factory, readonly=True) as s:
        assert s.get(Bin, bin_id).last_grams == 42.0
