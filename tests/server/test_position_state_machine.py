"""Issue 9 acceptance: a stateful property-based test of the inventory position.

A hypothesis ``RuleBasedStateMachine`` drives the real state layer — ingest
(``Ingest.process`` with the protocol's JSON payloads, seq dedup and all), the
supplier-loop routes (ship, cancel-request, dock receipt, inspection) called as
FastAPI calls them, ``ack_order``, a real ``Dispatcher`` posting to real local
HTTP endpoints (answering 200 or 400), the ``Escalator`` on a clock the test
moves, and server restarts (new engine, session factory, registry and Ingest on
the same database) — on SQLite and on PostgreSQL.  Two bins (B1; B2 whose SKU
needs inspection) of one agent, two suppliers (A priority 1 with an ack
deadline, B the fallback).

The model is the test's own: the scale count it last showed each bin (the
newest stable reading wins; an older reading, a re-sent batch or a replayed
outbox cannot move it backwards), the refills the server must have seen, and
nothing else — order and receipt quantities are recomputed from the raw rows,
never through :mod:`jitstock.server.position`.

Invariants after every step:

1. position (``position.positions``, which the reorder rule reads through
   ``reorder.inventory_position``, and ``GET /levels``' ``_levels``) = on hand (the model's count) + Σ over open
   orders of max(0, qty − delivered_qty) + Σ over receipts awaiting inspection
   or put-away of max(0, (accepted or qty) − scale_qty), from the raw rows;
2. no order has delivered_qty < 0 or qty ≤ 0, no receipt scale_qty < 0;
3. at most one open non-bridge order per bin waiting for its first delivery
   (created, sent, acknowledged, shipped), never two such orders to one supplier
   for one bin (a part-received order may have a new order beside it, and so may a
   bridge order whose late order its supplier then cancelled: the replacement goes
   to whoever the rule picks, the bridge's supplier included);
4. a bin whose position ≤ its reorder point (not paused) has an open order waiting
   for its first delivery (a part-received one whose remainder leaves the position
   that low is not enough), or
   ``alert_rules.reorder_rules`` holds a ``reorder_blocked`` alert for it whose
   reason is a real one (not "the reorder rule has not run yet": every change of
   position runs the rule);
5. the receiving ledger, per bin, with for each receipt r: expected(r) =
   accepted_qty if inspected else qty, confirmed(r) = min(scale_qty, expected(r)),
   pending(r) as in 1 (0 once the receipt is done or rejected):

   a. nothing received vanishes:  Σ expected ≤ Σ confirmed + Σ pending + the
      recorded shortfalls (discrepancies ``weigh_in_short``, ``putaway_not_seen``
      and ``putaway_picks`` — units picked before the scale settled, booked as
      consumption);
   b. nothing is credited that the scale did not see: Σ confirmed ≤ the refills
      the scale showed (model) + ``putaway_picks``;
   c. every refill unit is somewhere: the refills the scale showed ≤ Σ scale_qty
      + the open (unresolved) ``unexplained_increase`` discrepancies;
6. no escalation with reason 'late' or 'overdue' unless its recorded projected
   stockout comes before the assumed arrival (``stockout_ms < arrival_ms``);
7. within a day after an order of the bin that its supplier saw (sent, or cancelled
   by the supplier) was cancelled
   (and before all of it was received), a receipt by weight (the scale's, no dock
   receipt) is only of an order with a ship notice: the refill may be the cancelled
   order's goods.

Profiles: ``HYPOTHESIS_PROFILE=soak`` (``make soak``) runs thousands of examples.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import Response
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text
from sqlalchemy import inspect as sa_inspect

from jitstock import protocol as p
from jitstock.server.alert_rules import reorder_rules
from jitstock.server.api.auth import Principal
from jitstock.server.api.errors import Conflict, FieldInvalid, NotFound
from jitstock.server.api.order_actions import ack_order
from jitstock.server.api.routes import levels as levels_route
from jitstock.server.api.routes.receiving import inspect as inspect_route
from jitstock.server.api.routes.receiving import receive_at_dock
from jitstock.server.api.routes.supplier_loop import cancel_request, ship
from jitstock.server.api.supplier_schemas import (
    CancelRequest,
    InspectionRequest,
    ReceiveRequest,
    ShipRequest,
)
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.models import OPEN_ORDER_STATES, Bin, Order, Sku, Supplier
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.db.supplier_models import (
    Escalation,
    Receipt,
    ReceivingDiscrepancy,
    SupplierItem,
)
from jitstock.server.dispatch import Dispatcher
from jitstock.server.ingest import Ingest
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming
from jitstock.server.position import positions
from jitstock.server.registry import BinRegistry
from jitstock.server.reorder import REFUSAL_WINDOW_MS
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
from jitstock.server.settings import ServerSettings
from jitstock.server.state import SqlState
from jitstock.server.supplier.dock_scans import label_code
from jitstock.server.supplier.escalation import Escalator
from jitstock.server.tsdb import open_store
from tests.server.webhook_receiver import WebhookReceiver

# Examples per backend in ``make test`` (300 in all, 15 steps each; PostgreSQL costs about
# three times SQLite per step); POSITION_MACHINE_EXAMPLES overrides; ``make soak`` runs
# thousands of longer ones.
DEFAULT_EXAMPLES = {"sqlite": 240, "postgresql": 60}
settings.register_profile(
    "position-default",
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # the explain phase traces every line (sys.settrace): minutes over a database
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "position-soak",
    max_examples=3000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
PROFILE = (
    "position-soak"
    if os.environ.get("HYPOTHESIS_PROFILE") == "soak"
    else "position-default"
)

SITE = "plant1"
AGENT = "pi-1"
UNIT_G = 12.5
TARE_G = 500.0
START_MS = 1_760_000_000_000
BINS = {
    "B1": ("SKU-1", 20, 40),
    "B2": ("SKU-2", 10, 30),
}  # sku, reorder point, order qty
PENDING = ("awaiting_inspection", "awaiting_putaway")
# orders still waiting for their first delivery (the model's own list, not the code's)
AWAITING = ("created", "sent", "acknowledged", "shipped")
SHORTFALL_KINDS = ("weigh_in_short", "putaway_not_seen", "putaway_picks")
# Time steps the machine takes: a pick's worth, minutes, the ack deadline, the put-away window.
DAY_MS = 24 * 3_600_000
STEPS_MS = [1_000, 60_000, 5 * 60_000, 20 * 60_000, 40 * 60_000, 2 * 3_600_000 + 1]


class FakeClock:
    """Wall time the test moves (the Clock protocol)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def time_ms(self) -> int:
        return self.ms

    def monotonic(self) -> float:
        return self.ms / 1000.0

    def sleep(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class Env:
    """What outlives one example: the database, the supplier endpoints, a temp dir."""

    db_url: str
    template: Path | None
    a: WebhookReceiver
    b: WebhookReceiver
    secret: str
    tmp: Path
    http: httpx.Client
    # the server's silence threshold, read once: building ServerSettings (environment and
    # .env parsing) in every invariant check was a third of this test's time
    agent_silent_ms: int


ENV = Env()


def _reset_database(url: str, template: Path | None) -> None:
    """Empty every table (SQLite: a fresh copy of the migrated file)."""
    if template is not None:
        path = url.removeprefix("sqlite:///")
        for suffix in ("-wal", "-shm", "-journal"):
            Path(path + suffix).unlink(missing_ok=True)  # or SQLite replays the old WAL
        shutil.copyfile(template, path)
        return
    engine = make_engine(url)
    try:
        names = [
            t for t in sa_inspect(engine).get_table_names() if t != "alembic_version"
        ]
        with engine.begin() as conn:
            conn.execute(
                text(
                    "TRUNCATE "
                    + ", ".join(f'"{n}"' for n in names)
                    + " RESTART IDENTITY CASCADE"
                )
            )
    finally:
        engine.dispose()


def _principal(supplier: str | None) -> Principal:
    if supplier is None:
        return Principal(name="manager", role="admin")
    return Principal(name=f"{supplier}-erp", role="supplier", supplier_id=supplier)


class PositionMachine(RuleBasedStateMachine):
    """Random shop-floor and supplier interleavings over the real state layer."""

    def __init__(self) -> None:
        super().__init__()
        _reset_database(ENV.db_url, ENV.template)
        self.clock = FakeClock(START_MS)
        self.count: dict[str, int] = {}
        self.last_ts: dict[str, int] = {}
        self.refills: dict[str, int] = dict.fromkeys(BINS, 0)
        self.seq = 0
        self.sent: list[Incoming] = []
        # dock receipts sent with an Idempotency-Key: (order, qty, complete, key, receipt id)
        self.keyed: list[tuple[str, int, bool, str, int]] = []
        self.engine = None
        self.ingest: Ingest | None = None
        self._seed()
        self._start_server()

    # ---------------------------------------------------------------- wiring

    def _seed(self) -> None:
        engine = make_engine(ENV.db_url)
        factory = make_session_factory(engine)
        seed_plant(
            factory,
            SITE,
            [
                BinSeed(b, AGENT, sku, UNIT_G, TARE_G, rop, qty, 400, None)
                for b, (sku, rop, qty) in BINS.items()
            ],
            [
                SupplierSeed("A", "Supplier A", ENV.a.url, ENV.secret),
                SupplierSeed("B", "Supplier B", ENV.b.url, ENV.secret),
            ],
        )
        with transaction(factory) as s:
            s.get(Supplier, "A").ack_deadline_s = 1800
            s.get(Sku, "SKU-2").inspection_required = True
            for sku, _rop, _qty in BINS.values():
                s.add(
                    SupplierItem(
                        supplier_id="A",
                        sku_id=sku,
                        priority=1,
                        quoted_lead_time_s=4 * 3600,
                    )
                )
                s.add(
                    SupplierItem(
                        supplier_id="B", sku_id=sku, priority=2, quoted_lead_time_s=3600
                    )
                )
        engine.dispose()

    def _start_server(self) -> None:
        """The server's state side, as a (re)started process builds it."""
        self.engine = make_engine(ENV.db_url)
        self.factory = make_session_factory(self.engine)
        self.registry = BinRegistry()
        state = SqlState(self.factory, self.registry)
        self.registry.set_loader(state.load_registry)
        self.registry.reload()
        self.tsdb = open_store(
            influx_url=None,
            sqlite_path=ENV.tmp / "ts.db",
            spool_path=ENV.tmp / "spool.db",
        )
        self.ingest = Ingest(
            self.tsdb, state, self.registry, Metrics(), clock=self.clock
        )
        self.dispatcher = Dispatcher(self.factory, ENV.http, clock=self.clock)
        self.escalator = Escalator(self.factory, clock=self.clock)
        self.ctx = SimpleNamespace(
            clock=self.clock,
            dispatcher=SimpleNamespace(wake=lambda: None),
            supplier_events=None,
        )

    def _stop_server(self) -> None:
        if self.ingest is not None:
            self.ingest.stop()
            self.tsdb.close()
        if self.engine is not None:
            self.engine.dispose()

    def teardown(self) -> None:
        self._stop_server()

    # ---------------------------------------------------------------- helpers

    def _batch(self, items: list[tuple[str, int, int]]) -> Incoming:
        """A readings batch (next seq) of stable readings (bin, count, ts)."""
        self.seq += 1
        batch = p.ReadingsBatch(
            AGENT,
            self.seq,
            self.clock.ms,
            tuple(p.Reading(b, ts, TARE_G + n * UNIT_G, True) for b, n, ts in items),
        )
        msg = Incoming(
            p.agent_topic(SITE, AGENT, "readings"),
            p.encode_readings(batch),
            self.seq,
            1,
            0,
            0.0,
        )
        self.sent.append(msg)
        return msg

    def _shown(self, bin_id: str, n: int, ts: int) -> None:
        """The model: the scale now shows n (a newer stable reading wins)."""
        if bin_id in self.last_ts and ts < self.last_ts[bin_id]:
            return
        before = self.count.get(bin_id)
        if before is not None and n > before:
            self.refills[bin_id] += n - before
        self.count[bin_id] = n
        self.last_ts[bin_id] = ts

    def _show(self, bin_id: str, n: int) -> None:
        ts = self.clock.ms
        self.ingest.process([self._batch([(bin_id, n, ts)])])
        self._shown(bin_id, n, ts)

    def _orders(self, *states: str) -> list[Order]:
        with transaction(self.factory, readonly=True) as s:
            stmt = select(Order).order_by(Order.created_ms, Order.id)
            if states:
                stmt = stmt.where(Order.state.in_(states))
            rows = list(s.scalars(stmt))
            s.expunge_all()
            return rows

    def _pick_order(self, i: int, *states: str) -> Order | None:
        rows = self._orders(*states)
        return rows[i % len(rows)] if rows else None

    def _route(self, fn: Any, *args: Any) -> Any:
        """Call a route function as FastAPI would (its session commits itself)."""
        with self.factory() as session:
            try:
                return fn(*args[:-2], session, *args[-2:])
            except (Conflict, FieldInvalid, NotFound):
                session.rollback()
                return None

    def _expected_delivery(self, bin_id: str) -> int:
        """What the next delivery to this bin should be (the test's view, from raw rows)."""
        with transaction(self.factory, readonly=True) as s:
            waiting = [
                (r.accepted_qty if r.accepted_qty is not None else r.qty)
                - (r.scale_qty or 0)
                for r in s.scalars(
                    select(Receipt).where(
                        Receipt.bin_id == bin_id, Receipt.status == "awaiting_putaway"
                    )
                )
            ]
            if waiting:
                return max(0, sum(waiting))
            left = [
                max(0, o.qty - (o.delivered_qty or 0))
                for o in s.scalars(
                    select(Order).where(
                        Order.bin_id == bin_id, Order.state.in_(OPEN_ORDER_STATES)
                    )
                )
            ]
            return left[0] if left else 0

    # ---------------------------------------------------------------- rules

    @initialize(b1=st.integers(15, 60), b2=st.integers(5, 40))
    def start(self, b1: int, b2: int) -> None:
        ts = self.clock.ms
        self.ingest.process([self._batch([("B1", b1, ts), ("B2", b2, ts)])])
        self._shown("B1", b1, ts)
        self._shown("B2", b2, ts)

    @rule(dt=st.sampled_from(STEPS_MS))
    def time_passes(self, dt: int) -> None:
        self.clock.ms += dt

    @rule(bin_id=st.sampled_from(sorted(BINS)), n=st.integers(1, 25))
    def pick(self, bin_id: str, n: int) -> None:
        self.clock.ms += 1_000
        self._show(bin_id, max(0, self.count[bin_id] - n))

    @rule(
        bin_id=st.sampled_from(sorted(BINS)),
        how=st.sampled_from(["exact", "partial", "short", "over", "picks", "any"]),
        k=st.integers(1, 12),
    )
    def refill(self, bin_id: str, how: str, k: int) -> None:
        """Goods go into the bin: as expected, part, a few short/over, with picks meanwhile."""
        self.clock.ms += 1_000
        expected = self._expected_delivery(bin_id)
        delta = {
            "exact": expected,
            "partial": expected // 2,
            "short": expected - min(k, 3),
            "over": expected + min(k, 3),
            "picks": expected - k,
            "any": k * 5,
        }[how]
        if delta <= 0:
            return
        self._show(bin_id, self.count[bin_id] + delta)

    @rule(i=st.integers(0, 9), promise_h=st.one_of(st.none(), st.integers(0, 8)))
    def ack(self, i: int, promise_h: int | None) -> None:
        """The supplier acknowledges (again), optionally with a promise."""
        order = self._pick_order(i)
        if order is None:
            return
        promised = None if promise_h is None else self.clock.ms + promise_h * 3_600_000
        with self.factory() as s:
            try:
                ack_order(
                    s, order.id, promised, "erp", self.clock.ms, order.supplier_id
                )
                s.commit()
            except (Conflict, FieldInvalid, NotFound):
                s.rollback()

    @rule(
        i=st.integers(0, 9),
        asn=st.sampled_from([None, -5, -1, 0, 2, 50]),
        expected_h=st.one_of(st.none(), st.integers(0, 6)),
    )
    def ship_notice(self, i: int, asn: int | None, expected_h: int | None) -> None:
        """A ship notice, its quantity ≠ what is outstanding (the route validates)."""
        order = self._pick_order(i, *OPEN_ORDER_STATES)
        if order is None:
            return
        left = max(0, order.qty - (order.delivered_qty or 0))
        qty = None if asn is None else max(1, left + asn)
        body = ShipRequest(
            qty=qty,
            expected_ms=None
            if expected_h is None
            else self.clock.ms + expected_h * 3_600_000,
        )
        self._route(ship, order.id, body, _principal(order.supplier_id), self.ctx)

    @rule(i=st.integers(0, 9), any_order=st.booleans())
    def scan_label(self, i: int, any_order: bool) -> None:
        """The dock scans an order's label (an open one, or any: closed/cancelled too)."""
        order = (
            self._pick_order(i)
            if any_order
            else self._pick_order(i, *OPEN_ORDER_STATES)
        )
        if order is None:
            return
        self.clock.ms += 1_000
        self.seq += 1
        batch = p.ScansBatch(
            AGENT,
            self.seq,
            self.clock.ms,
            (p.Scan("dock1", self.clock.ms, label_code(order.id)),),
        )
        msg = Incoming(
            p.agent_topic(SITE, AGENT, "scans"),
            p.encode_scans(batch),
            self.seq,
            1,
            0,
            0.0,
        )
        self.sent.append(msg)
        self.ingest.process([msg])

    @rule(
        i=st.integers(0, 9),
        how=st.sampled_from(["exact", "partial", "short", "over"]),
        complete=st.booleans(),
        keyed=st.booleans(),
    )
    def receive_api(self, i: int, how: str, complete: bool, keyed: bool) -> None:
        """``POST /orders/{id}/receive``."""
        order = self._pick_order(i, *OPEN_ORDER_STATES)
        if order is None:
            return
        left = max(1, order.qty - (order.delivered_qty or 0))
        qty = {
            "exact": left,
            "partial": max(1, left // 2),
            "short": max(1, left - 3),
            "over": left + 2,
        }[how]
        key = f"dn-{len(self.keyed)}" if keyed else None
        out = self._receive(order.id, qty, complete, key)
        if out is not None and key is not None:
            self.keyed.append((order.id, qty, complete, key, out.id))

    def _receive(self, order_id: str, qty: int, complete: bool, key: str | None) -> Any:
        """``POST /orders/{id}/receive`` as FastAPI would call it; None when refused."""
        with self.factory() as session:
            try:
                return receive_at_dock(
                    order_id,
                    ReceiveRequest(qty=qty, complete=complete),
                    session,
                    _principal(None),
                    self.ctx,
                    Response(),
                    key,
                )
            except (Conflict, FieldInvalid, NotFound):
                session.rollback()
                return None

    @rule(i=st.integers(0, 50), flipped=st.booleans())
    def receive_retried(self, i: int, flipped: bool) -> None:
        """The dock terminal lost an answer and sends the same keyed receipt again: it
        gets the first receipt back, whatever happened since, and nothing is recorded.
        The same key with ``complete`` flipped is another request: refused, and nothing
        changes (the order's state neither)."""
        if not self.keyed:
            return
        order_id, qty, complete, key, receipt_id = self.keyed[i % len(self.keyed)]
        with transaction(self.factory, readonly=True) as s:
            before = s.scalar(select(func.count()).select_from(Receipt))
            state = s.get(Order, order_id).state
        again = self._receive(order_id, qty, complete != flipped, key)
        if flipped:
            assert again is None, key
        else:
            assert again is not None, key
            assert again.id == receipt_id, (key, again)
        with transaction(self.factory, readonly=True) as s:
            assert s.scalar(select(func.count()).select_from(Receipt)) == before
            assert s.get(Order, order_id).state == state

    @rule(i=st.integers(0, 9), rejected=st.integers(0, 40))
    def inspection(self, i: int, rejected: int) -> None:
        """``POST /receipts/{id}/inspection``, with rejects: of a receipt awaiting
        inspection, or of one awaiting put-away whose goods were found wrong at the
        dock after it was received (never what its scale already saw)."""
        with transaction(self.factory, readonly=True) as s:
            rows = s.execute(
                select(Receipt.id, Receipt.qty, Receipt.scale_qty)
                .where(
                    (Receipt.status == "awaiting_inspection")
                    | (
                        (Receipt.status == "awaiting_putaway")
                        & Receipt.accepted_qty.is_(None)
                    )
                )
                .order_by(Receipt.id)
            ).all()
        if not rows:
            return
        rid, qty, in_bin = rows[i % len(rows)]
        rejected = min(rejected, qty - (in_bin or 0))
        body = InspectionRequest(
            accepted_qty=qty - rejected,
            rejected_qty=rejected,
            reason="damaged" if rejected else None,
        )
        self._route(inspect_route, rid, body, _principal(None), self.ctx)

    @rule(i=st.integers(0, 9))
    def supplier_cancels(self, i: int) -> None:
        """The supplier's ``POST /orders/{id}/cancel-request``."""
        order = self._pick_order(i, "created", "sent", "acknowledged")
        if order is None:
            return
        self._route(
            cancel_request,
            order.id,
            CancelRequest(reason="out of stock"),
            _principal(order.supplier_id),
            self.ctx,
        )

    @rule(status=st.sampled_from([200, 200, 400]))
    def dispatch(self, status: int) -> None:
        """The dispatcher sends the next due order; the supplier answers 200 or 400."""
        ENV.a.script(status)
        ENV.b.script(status)
        try:
            self.dispatcher.dispatch_next()
        finally:
            ENV.a.clear_script()
            ENV.b.clear_script()

    @rule(i=st.integers(0, 9))
    def cancelled_goods_arrive(self, i: int) -> None:
        """A cancelled order's goods arrive anyway and are put into the bin by hand."""
        order = self._pick_order(i, "cancelled")
        if order is None:
            return
        self.clock.ms += 1_000
        self._show(order.bin_id, self.count[order.bin_id] + order.qty)

    @rule()
    def escalation_pass(self) -> None:
        self.escalator.run_once()

    @rule(i=st.integers(0, 50))
    def resend(self, i: int) -> None:
        """The broker redelivers a batch already applied (DUP set: it sent it to us
        before, e.g. after a crash between our commit and our acknowledgement): nothing
        changes — seq 1 included, which must not pass for a new outbox."""
        if not self.sent:
            return
        before = self._snapshot()
        self.clock.ms += 1
        msg = self.sent[i % len(self.sent)]
        self.ingest.process([dataclasses.replace(msg, dup=True)])
        assert self._snapshot() == before

    @rule(bin_id=st.sampled_from(sorted(BINS)), n=st.integers(0, 80))
    def old_reading(self, bin_id: str, n: int) -> None:
        """A reading older than the last one seen (a late batch from an outbox)."""
        ts = self.last_ts[bin_id] - 30_000
        self.clock.ms += 1_000
        self.ingest.process([self._batch([(bin_id, n, ts)])])
        self._shown(bin_id, n, ts)

    @rule(
        bin_id=st.sampled_from(sorted(BINS)),
        steps=st.lists(
            st.one_of(st.integers(1, 8), st.sampled_from(["delivery", "top-up"])),
            min_size=2,
            max_size=5,
        ),
    )
    def outbox_replay(self, bin_id: str, steps: list[int | str]) -> None:
        """An agent back from an outage: its backlog (old timestamps, new seqs) in one
        flush — picks, and goods put into the bin meanwhile (the delivery expected next,
        or a top-up from the stock room)."""
        self.clock.ms += 20 * 60_000
        start = self.last_ts[bin_id]
        span = self.clock.ms - start
        n = self.count[bin_id]
        delivery = self._expected_delivery(bin_id)
        msgs, shown = [], []
        for k, step in enumerate(steps, start=1):
            if step == "delivery":
                n, delivery = n + delivery, 0
            elif step == "top-up":
                n += 5
            else:
                n = max(0, n - int(step))
            ts = start + span * k // (len(steps) + 1)
            msgs.append(self._batch([(bin_id, n, ts)]))
            shown.append((n, ts))
        self.ingest.process(msgs)
        for n, ts in shown:
            self._shown(bin_id, n, ts)

    @rule()
    def restart(self) -> None:
        """The server process restarts over the same database."""
        self._stop_server()
        self._start_server()

    # ---------------------------------------------------------------- invariants

    def _snapshot(self) -> Any:
        with transaction(self.factory, readonly=True) as s:
            return (
                s.execute(select(Bin.id, Bin.on_hand).order_by(Bin.id)).all(),
                s.execute(
                    select(
                        Order.id, Order.state, Order.qty, Order.delivered_qty
                    ).order_by(Order.id)
                ).all(),
                s.execute(
                    select(Receipt.id, Receipt.status, Receipt.scale_qty).order_by(
                        Receipt.id
                    )
                ).all(),
                s.execute(
                    select(ReceivingDiscrepancy.id, ReceivingDiscrepancy.qty).order_by(
                        ReceivingDiscrepancy.id
                    )
                ).all(),
            )

    @invariant()
    def position_holds(self) -> None:
        if not self.count:
            return
        now = self.clock.ms
        with transaction(self.factory, readonly=True) as s:
            bins = {b.id: b for b in s.scalars(select(Bin))}
            orders = list(s.scalars(select(Order)))
            receipts = list(s.scalars(select(Receipt)))
            disc = list(s.scalars(select(ReceivingDiscrepancy)))
            escalations = list(s.scalars(select(Escalation)))
            from_positions = positions(s)
            from_levels = {
                lv.bin_id: lv
                for lv in levels_route._levels(
                    s, levels_route._base(), now, ENV.agent_silent_ms
                )
            }
            blocked = {a.bin_id: a for a in reorder_rules(s, now).holding}
        open_orders = [o for o in orders if o.state in OPEN_ORDER_STATES]
        for bin_id, b in bins.items():
            # the model's count is what the bin holds
            assert b.on_hand == self.count[bin_id], (bin_id, b.on_hand, self.count)
            mine = [o for o in open_orders if o.bin_id == bin_id]
            on_order = sum(max(0, o.qty - (o.delivered_qty or 0)) for o in mine)
            rec = [r for r in receipts if r.bin_id == bin_id]
            pending = sum(
                max(0, _expected(r) - (r.scale_qty or 0))
                for r in rec
                if r.status in PENDING
            )
            want = self.count[bin_id] + on_order + pending
            # 1. one position, whoever computes it
            pos = from_positions[bin_id]
            assert (pos.on_hand, pos.on_order, pos.pending) == (
                self.count[bin_id],
                on_order,
                pending,
            ), bin_id
            lv = from_levels[bin_id]
            assert (lv.on_order_qty, lv.pending_delivery_qty, lv.position) == (
                on_order,
                pending,
                want,
            ), bin_id
            assert b.pending_delivery_qty == pending, (bin_id, b.pending_delivery_qty)
            # 3. one open order holding the bin's slot (not a bridge, not a replacement
            # for a receipt's shortfall or rejects: those order beside it, 0021) waiting
            # for its first delivery per bin, never two such to one supplier
            awaiting = [o for o in mine if o.state in AWAITING]
            slot = [o for o in awaiting if o.replaces is None]
            assert len([o for o in slot if o.bridge_for is None]) <= 1, [
                (o.id, o.state, o.supplier_id, o.replaces) for o in mine
            ]
            # a bridge whose late order is gone (its supplier cancelled it) is an order
            # in its own right: the replacement may go to the same supplier beside it
            open_ids = {o.id for o in open_orders}
            suppliers = [
                o.supplier_id
                for o in slot
                if o.bridge_for is None or o.bridge_for in open_ids
            ]
            assert len(suppliers) == len(set(suppliers)), suppliers
            # 4. low and not paused: an order still to come, or an alert that says why not
            # (a replacement for a receipt's shortfall is not the bin's order: a bin
            # whose position falls to its reorder point with only that open orders again)
            if want <= b.reorder_point and not b.paused and not slot:
                alert = blocked.get(bin_id)
                assert alert is not None, (bin_id, want, b.reorder_point)
                if "has not run yet" in alert.message:
                    # only sanctioned when a supplier's refusal window lapsed with no
                    # reading since (the next reading or keep-alive orders)
                    lapsed = [
                        o
                        for o in orders
                        if o.bin_id == bin_id
                        and o.state in ("failed", "cancelled")
                        and (o.closed_ms or 0) < now - REFUSAL_WINDOW_MS
                    ]
                    assert lapsed, alert.message
            # 5. the receiving ledger
            kinds: dict[str, int] = {}
            for d in disc:
                if d.bin_id == bin_id and (
                    d.kind != "unexplained_increase" or d.resolved_ms is None
                ):
                    kinds[d.kind] = kinds.get(d.kind, 0) + d.qty
            received = sum(_expected(r) for r in rec)
            confirmed = sum(min(r.scale_qty or 0, _expected(r)) for r in rec)
            shortfall = sum(kinds.get(k, 0) for k in SHORTFALL_KINDS)
            assert received <= confirmed + pending + shortfall, (
                bin_id,
                received,
                confirmed,
                pending,
                kinds,
            )
            picks = kinds.get("putaway_picks", 0)
            assert confirmed <= self.refills[bin_id] + picks, (
                bin_id,
                confirmed,
                self.refills[bin_id],
                kinds,
            )
            scale_total = sum(r.scale_qty or 0 for r in rec)
            assert self.refills[bin_id] <= scale_total + kinds.get(
                "unexplained_increase", 0
            ), (bin_id, self.refills[bin_id], scale_total, kinds)
        # 2. nothing negative
        for o in orders:
            assert o.qty > 0, (o.id, o.qty)
            assert (o.delivered_qty or 0) >= 0, (o.id, o.delivered_qty)
        for r in receipts:
            assert r.qty > 0, r.id
            assert (r.scale_qty or 0) >= 0, r.id
            assert (r.accepted_qty or 0) >= 0, r.id
        # 6. no escalation without a projected stockout before the arrival
        for e in escalations:
            if e.reason in ("late", "overdue"):
                d = e.detail or {}
                assert d["stockout_ms"] < d["arrival_ms"], d
        # 7. the scale receives only what a supplier may have sent
        by_id = {o.id: o for o in orders}
        for r in receipts:
            if r.method != "scale":
                continue
            o = by_id[r.order_id]
            recent_cancel = [
                c
                for c in orders
                if c.bin_id == o.bin_id
                and c.state == "cancelled"
                and c.closed_ms is not None
                and (c.delivered_qty or 0) < c.qty
                # cancelled before the receipt: every rule that shows the scale a
                # reading moves the clock first, so a cancel at the receipt's very
                # millisecond came after it (a rule without a reading)
                and r.at_ms - DAY_MS <= c.closed_ms < r.at_ms
                # its supplier saw it: sent, or cancelled by the supplier itself
                and (
                    c.sent_ms is not None
                    or (c.last_error or "").startswith("cancelled by supplier")
                )
            ]
            if recent_cancel:
                assert (o.shipped_ms or r.at_ms + 1) <= r.at_ms, (
                    o.id,
                    [c.id for c in recent_cancel],
                )


def _expected(r: Receipt) -> int:
    return r.accepted_qty if r.accepted_qty is not None else r.qty


@pytest.fixture
def env(tmp_path: Path, db_url: str):
    """The database (migrated once), the two supplier endpoints, an HTTP client."""
    from jitstock.server.db.secrets import new_webhook_secret

    upgrade(db_url)
    ENV.db_url = db_url
    ENV.template = None
    if db_url.startswith("sqlite:///"):
        ENV.template = tmp_path / "template.db"
        shutil.copyfile(db_url.removeprefix("sqlite:///"), ENV.template)
    ENV.secret = new_webhook_secret()
    ENV.a, ENV.b = WebhookReceiver(ENV.secret), WebhookReceiver(ENV.secret)
    ENV.a.start()
    ENV.b.start()
    ENV.tmp = tmp_path
    ENV.http = httpx.Client(timeout=5.0)
    ENV.agent_silent_ms = ServerSettings().agent_silent_ms
    try:
        yield ENV
    finally:
        ENV.http.close()
        ENV.a.stop()
        ENV.b.stop()


@pytest.mark.slow
@pytest.mark.timeout(
    1800
)  # a few minutes idle; far longer while other work loads the cores
def test_position_state_machine(env: Env) -> None:
    profile = settings.get_profile(PROFILE)
    if PROFILE == "position-default":
        backend = "sqlite" if env.template is not None else "postgresql"
        n = os.environ.get("POSITION_MACHINE_EXAMPLES")
        profile = settings(
            profile, max_examples=int(n) if n else DEFAULT_EXAMPLES[backend]
        )
    run_state_machine_as_test(PositionMachine, settings=profile)
