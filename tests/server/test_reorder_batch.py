"""The reorder rule for a whole flush at once (jitstock.server.reorder_batch): the same
decisions as the rule's own definition, with a few statements for all bins.

A hypothesis ``RuleBasedStateMachine`` moves counts, pauses bins, switches supplier
items on and off, ends orders every way an order ends (delivered, part received,
failed, cancelled by the supplier or by the plant) and lets time pass the refusal
window; after each flush-like decision the orders in the database must equal the
test's own model of the rule: position = on hand + Σ open orders' outstanding; at or
below the reorder point → one order, to the bin's own supplier else the SKU's active
items by priority, skipping suppliers that refused the bin within the hour; quantity
the smallest multiple of the order quantity that lifts the position above the point,
capped by capacity; never a second open order waiting for its first delivery (a
part-received order does not stop the bin ordering beside it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, func, select, update

from jitstock.server import reorder_batch
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.models import AuditLog, Bin, Order, Site, Sku, Supplier
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.db.session import (
    is_postgresql,
    make_engine,
    make_session_factory,
    transaction,
)
from jitstock.server.db.supplier_models import OrderTransition, SupplierItem
from jitstock.server.reorder import REFUSAL_WINDOW_MS, SUPPLIER_CANCEL_PREFIX
from jitstock.server.webhooks import new_order_bodies, order_created_body
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed

NOW = 1_700_000_000_000
BINS = ("b0", "b1", "b2")
ROP = 20
ORDER_QTY = 30
CAPACITY = {"b0": None, "b1": 100, "b2": None}
# b2 has no supplier of its own: the SKU's items decide
OWN_SUPPLIER = {"b0": "S0", "b1": "S1", "b2": None}
ITEMS = (("S1", 1), ("S2", 2))  # (supplier, priority) of the SKU
# counts around the reorder point, and far from it
COUNTS = st.one_of(st.sampled_from([0, 5, 19, 20, 21, 35, 100]), st.integers(0, 120))
OPEN = ("created", "sent", "acknowledged", "shipped", "part_received")
AWAITING = ("created", "sent", "acknowledged", "shipped")  # not yet delivered at all


class Model:
    """The test's own statement of the rule (nothing from jitstock.server)."""

    def __init__(self) -> None:
        self.on_hand = dict.fromkeys(BINS, 100)
        self.seen = dict.fromkeys(BINS, False)
        self.paused = dict.fromkeys(BINS, False)
        self.active = {s: True for s, _ in ITEMS}
        # order id -> [bin, supplier, qty, delivered, state, closed_ms, last_error]
        self.orders: dict[str, list[Any]] = {}

    def decide(self, bin_id: str, now: int) -> tuple[str, int] | None:
        if self.paused[bin_id] or not self.seen[bin_id]:
            return None
        mine = [o for o in self.orders.values() if o[0] == bin_id]
        outstanding = sum(max(0, o[2] - o[3]) for o in mine if o[4] in OPEN)
        position = self.on_hand[bin_id] + outstanding
        if position > ROP:
            return None
        candidates = [] if OWN_SUPPLIER[bin_id] is None else [OWN_SUPPLIER[bin_id]]
        for s, _p in sorted(ITEMS, key=lambda x: (x[1], x[0])):
            if self.active[s] and s not in candidates:
                candidates.append(s)
        refused = {
            o[1]
            for o in mine
            if (
                o[4] == "failed"
                or (o[4] == "cancelled" and o[6].startswith("cancelled by supplier"))
            )
            and o[5] >= now - REFUSAL_WINDOW_MS
        }
        choice = next((s for s in candidates if s not in refused), None)
        if choice is None or any(o[4] in AWAITING for o in mine):
            return None
        n = 1
        while position + n * ORDER_QTY <= ROP:
            n += 1
        cap = CAPACITY[bin_id]
        while cap is not None and n > 1 and position + n * ORDER_QTY > cap:
            n -= 1
        return choice, n * ORDER_QTY


class Backend:
    url: str = ""
    template: Path | None = None


BACKEND = Backend()


class DecideMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        if BACKEND.template is not None:
            shutil.copyfile(BACKEND.template, BACKEND.url.removeprefix("sqlite:///"))
        self.engine = make_engine(BACKEND.url)
        self.factory = make_session_factory(self.engine)
        with transaction(self.factory) as s:
            for table in (OrderTransition, AuditLog, Order, BinPolicy, SupplierItem):
                s.execute(delete(table))
            s.execute(delete(Bin))
            s.execute(delete(Supplier))
            s.execute(delete(Sku))
            s.execute(delete(Site))
            s.add(Site(id=SITE, name="Plant 1"))
            s.add(Sku(id=SKU, name="M6 bolt", unit_weight_g=4.2))
            for sup in ("S0", "S1", "S2"):
                s.add(Supplier(id=sup, name=sup))
            s.flush()
            for sup, prio in ITEMS:
                s.add(SupplierItem(supplier_id=sup, sku_id=SKU, priority=prio))
            for b in BINS:
                s.add(
                    Bin(
                        id=b,
                        site_id=SITE,
                        sku_id=SKU,
                        supplier_id=OWN_SUPPLIER[b],
                        agent_id=None,
                        on_hand=100,
                        reorder_point=ROP,
                        order_qty=ORDER_QTY,
                        capacity=CAPACITY[b],
                    )
                )
        self.model = Model()
        self.now = NOW

    def teardown(self) -> None:
        self.engine.dispose()

    def _flush(self, counts: dict[str, int], decide: list[str]) -> list[str]:
        """What a flush does: write counts, then decide, in one transaction."""
        self.now += 1000
        with transaction(self.factory) as s:
            for b, c in counts.items():
                s.execute(
                    update(Bin)
                    .where(Bin.id == b)
                    .values(on_hand=c, last_seen_ms=self.now, last_grams=4.2 * c)
                )
            made = reorder_batch.decide(s, decide, self.now, lock=is_postgresql(s))
        for b, c in counts.items():
            self.model.on_hand[b] = c
            self.model.seen[b] = True
        return [o.id for o in made]

    @rule(
        counts=st.dictionaries(st.sampled_from(BINS), COUNTS, min_size=1),
        also=st.lists(st.sampled_from(BINS), max_size=3),
    )
    def flush(self, counts: dict[str, int], also: list[str]) -> None:
        decide = sorted(set(counts) | set(also))
        made = self._flush(counts, decide)  # the model now has the flush's counts
        expected = {}
        for b in decide:
            want = self.model.decide(b, self.now)
            if want is not None:
                expected[b] = want
        with transaction(self.factory, readonly=True) as s:
            rows = s.execute(
                select(Order.id, Order.bin_id, Order.supplier_id, Order.qty).where(
                    Order.id.in_(made)
                )
            ).all()
        got = {b: (sup, q) for _id, b, sup, q in rows}
        assert got == expected
        for oid, b, sup, q in sorted(rows, key=lambda r: r[1]):  # a stable order
            self.model.orders[oid] = [b, sup, q, 0, "created", None, ""]

    @precondition(lambda self: any(o[4] in OPEN for o in self.model.orders.values()))
    @rule(
        data=st.data(),
        how=st.sampled_from(
            ["received", "part_received", "failed", "supplier_cancel", "plant_cancel"]
        ),
    )
    def end_order(self, data: st.DataObject, how: str) -> None:
        # by position in creation order (order ids are random: not a stable choice)
        open_ids = [k for k, o in self.model.orders.items() if o[4] in OPEN]
        oid = open_ids[data.draw(st.integers(0, len(open_ids) - 1))]
        o = self.model.orders[oid]
        values: dict[str, Any]
        if how == "received":
            values = {"state": "received", "delivered_qty": o[2], "closed_ms": self.now}
            o[3], o[4], o[5] = o[2], "received", self.now
        elif how == "part_received":
            part = data.draw(st.integers(1, o[2]))
            values = {"state": "part_received", "delivered_qty": part}
            o[3], o[4] = part, "part_received"
        elif how == "failed":
            values = {
                "state": "failed",
                "closed_ms": self.now,
                "last_error": "HTTP 400",
            }
            o[4], o[5], o[6] = "failed", self.now, "HTTP 400"
        else:
            why = (
                f"{SUPPLIER_CANCEL_PREFIX}: no stock"
                if how == "supplier_cancel"
                else "cancelled by the plant"
            )
            values = {"state": "cancelled", "closed_ms": self.now, "last_error": why}
            o[4], o[5], o[6] = "cancelled", self.now, why
        with transaction(self.factory) as s:
            s.execute(update(Order).where(Order.id == oid).values(**values))

    @rule(b=st.sampled_from(BINS), paused=st.booleans())
    def pause(self, b: str, paused: bool) -> None:
        with transaction(self.factory) as s:
            s.execute(update(Bin).where(Bin.id == b).values(paused=paused))
        self.model.paused[b] = paused

    @rule(sup=st.sampled_from([s for s, _ in ITEMS]), active=st.booleans())
    def item_active(self, sup: str, active: bool) -> None:
        with transaction(self.factory) as s:
            s.execute(
                update(SupplierItem)
                .where(SupplierItem.supplier_id == sup)
                .values(active=active)
            )
        self.model.active[sup] = active

    @rule()
    def an_hour_passes(self) -> None:
        self.now += REFUSAL_WINDOW_MS

    @invariant()
    def one_open_order_per_bin(self) -> None:
        with transaction(self.factory, readonly=True) as s:
            per_bin = s.execute(
                select(Order.bin_id, func.count())
                .where(Order.state.in_(AWAITING), Order.bridge_for.is_(None))
                .group_by(Order.bin_id)
            ).all()
        assert all(n == 1 for _b, n in per_bin), per_bin


@pytest.fixture
def backend(tmp_path: Path, db_url: str) -> Backend:
    upgrade(db_url)
    BACKEND.url = db_url
    BACKEND.template = None
    if db_url.startswith("sqlite:///"):
        BACKEND.template = tmp_path / "template.db"
        shutil.copyfile(db_url.removeprefix("sqlite:///"), BACKEND.template)
    return BACKEND


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_batched_decisions_match_the_rule(backend: Backend) -> None:
    run_state_machine_as_test(
        DecideMachine,
        settings=settings(max_examples=100, stateful_step_count=30, deadline=None),
    )


# ------------------------------------------------------------------ plain cases


def _rows(db, bins: list[str], count: int, now: int = NOW) -> list[str]:
    with transaction(db.factory) as s:
        s.execute(
            update(Bin)
            .where(Bin.id.in_(bins))
            .values(on_hand=count, last_seen_ms=now, last_grams=4.2 * count)
        )
        return [o.id for o in reorder_batch.decide(s, bins, now)]


def test_one_flush_orders_every_low_bin_with_its_audit_and_transition(db):
    bins = seed(db.factory, bins=4, on_hand=50, reorder_point=20, order_qty=100)
    made = _rows(db, bins[:3], 10)
    assert len(made) == 3
    with transaction(db.factory, readonly=True) as s:
        orders = s.scalars(select(Order).order_by(Order.bin_id)).all()
        audits = s.scalars(select(AuditLog).where(AuditLog.entity_id.in_(made))).all()
        moves = s.scalars(
            select(OrderTransition).where(OrderTransition.order_id.in_(made))
        ).all()
    assert [(o.bin_id, o.supplier_id, o.qty, o.state) for o in orders] == [
        (b, SUPPLIER, 100, "created") for b in bins[:3]
    ]
    assert all(o.next_attempt_ms == NOW and o.attempts == 0 for o in orders)
    assert orders[0].trigger["position"] == {
        "on_hand": 10,
        "pending_delivery": 0,
        "on_order": 0,
        "inventory_position": 10,
        "reorder_point": 20,
    }
    assert orders[0].trigger["on_hand"] == 10
    assert {a.action for a in audits} == {"order.created"}
    assert len(audits) == 3
    assert {(m.from_state, m.to_state) for m in moves} == {(None, "created")}
    # the same readings again: nothing more
    assert _rows(db, bins[:3], 9) == []


def test_unknown_empty_and_repeated_bin_ids_change_nothing(db):
    (b,) = seed(db.factory, on_hand=50)
    with transaction(db.factory) as s:
        assert reorder_batch.decide(s, [], NOW) == []
        assert reorder_batch.decide(s, ["nope", "", "x" * 5000], NOW) == []
    made = _rows(db, [b, b, b], 5)
    assert len(made) == 1


def test_a_scale_that_never_reported_orders_nothing(db):
    """A bin fed by an agent whose scale has not reported: 0 is "unknown", not "empty";
    a bin without an agent is counted by hand, its 0 is real."""
    from jitstock.server.db.models import Agent

    (manual,) = seed(db.factory, on_hand=0)
    with transaction(db.factory) as s:
        s.add(Agent(id="pi-9", site_id=SITE))
        s.flush()
        s.add(
            Bin(
                id="scaled",
                site_id=SITE,
                sku_id=SKU,
                supplier_id=SUPPLIER,
                agent_id="pi-9",
                on_hand=0,
                reorder_point=20,
                order_qty=100,
            )
        )
    with transaction(db.factory) as s:
        made = reorder_batch.decide(s, [manual, "scaled"], NOW)
    assert [o.bin_id for o in made] == [manual]


def test_a_refused_batch_insert_falls_back_to_one_by_one(db):
    """The unique index refuses one order of a batch (an order another path made
    without locking the bin): the other orders of the flush are still made."""
    a, b = seed(db.factory, bins=2, on_hand=50)
    with transaction(db.factory) as s:
        rows = [
            {
                "id": f"o-{x}",
                "bin_id": x,
                "sku_id": SKU,
                "supplier_id": SUPPLIER,
                "site_id": SITE,
                "qty": 100,
                "state": "created",
                "created_ms": NOW,
                "attempts": 0,
                "next_attempt_ms": NOW,
                "trigger": {"position": {"on_hand": 5}},
            }
            for x in (a, b)
        ]
        s.add(
            Order(
                id="already",
                bin_id=a,
                sku_id=SKU,
                supplier_id=SUPPLIER,
                site_id=SITE,
                qty=100,
                state="sent",
                created_ms=NOW,
            )
        )
        s.flush()
        made = reorder_batch._insert(s, rows, NOW)
    assert [o.bin_id for o in made] == [b]
    with transaction(db.factory, readonly=True) as s:
        assert sorted(s.scalars(select(Order.id))) == ["already", "o-" + b]
        assert s.scalar(select(func.count()).select_from(AuditLog)) == 1


def test_new_order_bodies_are_the_order_created_bodies(db):
    """The batched body is byte for byte the one order_created_body makes: with and
    without a learned rate, a quoted lead time, a supplier SKU and a site address."""
    bins = seed(db.factory, bins=3, on_hand=50)
    with transaction(db.factory) as s:
        s.execute(update(Site).values(address="1 Dock Road", dock="D4"))
        s.add(
            SupplierItem(
                supplier_id=SUPPLIER,
                sku_id=SKU,
                supplier_sku="ACME-6",
                quoted_lead_time_s=86_400,
            )
        )
        for b, rate in ((bins[0], 12.5), (bins[1], -3)):
            s.add(
                BinPolicy(
                    bin_id=b,
                    computed_ms=NOW,
                    reason="schedule",
                    demand_class="smooth",
                    inputs={"demand": {"rate_per_day": rate}},
                    result={},
                )
            )
    made = _rows(db, bins, 7)
    assert len(made) == 3
    with transaction(db.factory) as s:
        rows = s.execute(select(*Order.__table__.c).where(Order.id.in_(made))).all()
        got = new_order_bodies(s, rows)
        want = {
            o.id: order_created_body(s, o)
            for o in s.scalars(select(Order).where(Order.id.in_(made)))
        }
    assert got == want
    basis = sorted(v.count(b"projected_stockout") for v in got.values())
    assert basis == [0, 0, 1]
    assert sum(b"quoted_lead_time" in v for v in got.values()) == 2
    assert all(b"ACME-6" in v and b"1 Dock Road" in v for v in got.values())
