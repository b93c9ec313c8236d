"""Changes to one order sent together take turns, on SQLite and on PostgreSQL.

Found from the outside after event stamps were fixed (test_event_order): on PostgreSQL
promise changes sent at once each read the order before the first of them had
committed, so several named the same old promise as the one they replaced
(``previous_promised_ms``, the audit row and the transition's ``from``) and the chain
of promises a supplier or auditor follows broke.  The compare-and-set UPDATE checked
the state only.  A part receipt adds to the received total it read the same way.  Part
receipts sent together also deadlocked (503): one recorded its receipt and bin event,
then waited for the order row, while the other held it and waited to lock the bin.  The order is now read locked (``FOR NO KEY UPDATE``)
on PostgreSQL before it is changed (SQLite serialises writing transactions anyway).
Both tests fail on PostgreSQL without that."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select

from jitstock.server.db.models import AuditLog, Order
from jitstock.server.db.session import transaction
from jitstock.server.db.supplier_models import OrderTransition, SupplierEvent
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import Loop, supplier_loop

HOUR_MS = 3_600_000
# requests sent at once, per round (the server's thread pool takes them all)
AT_ONCE = 8


def _together(n: int, send: Callable[[int], int]) -> list[int]:
    """``send(i)`` for i in 1..n from n threads released at the same moment."""
    gate = threading.Barrier(n, timeout=60)

    def one(i: int) -> int:
        gate.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(1, n + 1)))


def _rows(loop: Loop, oid: str) -> tuple[list[Any], list[Any], list[Any], Order]:
    """The order's transitions and audit rows (by id) and events (by stamp), and the order."""
    with transaction(loop.app.session_factory, readonly=True) as s:
        transitions = list(
            s.scalars(
                select(OrderTransition)
                .where(OrderTransition.order_id == oid)
                .order_by(OrderTransition.id)
            )
        )
        audits = list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.entity == "order", AuditLog.entity_id == oid)
                .order_by(AuditLog.id)
            )
        )
        events = list(
            s.scalars(
                select(SupplierEvent)
                .where(SupplierEvent.order_id == oid)
                .order_by(SupplierEvent.created_ms)
            )
        )
        order = s.get(Order, oid)
        assert order is not None
        return transitions, audits, events, order


def test_promise_changes_sent_together_name_the_promise_each_replaced(
    tmp_path: Path, mosquitto, db_url: str
) -> None:
    with supplier_loop(tmp_path, mosquitto.url, db_url=db_url) as loop:
        oid, a, first = loop.acknowledged_order("A", HOUR_MS)
        promised = {first}
        for rnd in range(2):  # two rounds: more chances for the race to show

            def change(i: int, rnd: int = rnd) -> int:
                new = first + 1000 * (rnd * AT_ONCE + i)
                r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": new})
                return r.status_code

            assert _together(AT_ONCE, change) == [200] * AT_ONCE
            promised |= {
                first + 1000 * (rnd * AT_ONCE + i) for i in range(1, AT_ONCE + 1)
            }

        transitions, audits, events, order = _rows(loop, oid)
        n = 2 * AT_ONCE
        # In commit order (row ids; event stamps rise in commit order), each change
        # replaced the promise the one before it set, from the acknowledged one to
        # the order's promise now.
        steps = [
            (t.detail["from"], t.detail["to"])
            for t in transitions
            if t.reason == "promise changed"
        ]
        audited = [
            (x.detail["from"], x.detail["to"])
            for x in audits
            if x.action == "order.promise"
        ]
        changed = [
            e.payload["data"] for e in events if e.type == "order.promise_changed"
        ]
        told = [(d["previous_promised_ms"], d["order"]["promised_ms"]) for d in changed]
        for name, chain in (
            ("transitions", steps),
            ("audit", audited),
            ("events", told),
        ):
            assert len(chain) == n, (name, chain)
            previous = [first] + [to for _, to in chain[:-1]]
            assert [frm for frm, _ in chain] == previous, (name, chain)
            assert chain[-1][1] == order.promised_ms, (name, chain)
            assert {to for _, to in chain} | {first} == promised, (name, chain)


def test_part_receipts_sent_together_add_up(
    tmp_path: Path, mosquitto, db_url: str
) -> None:
    with supplier_loop(tmp_path, mosquitto.url, db_url=db_url, order_qty=40) as loop:
        oid = loop.place_order()
        wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")

        refused: list[str] = []

        def receive(_i: int) -> int:
            r = loop.admin.post(
                f"/api/v1/orders/{oid}/receive", json={"qty": 2, "complete": False}
            )
            if r.status_code != 201:
                refused.append(f"{r.status_code} {r.text}")
            return r.status_code

        assert receive(0) == 201  # part_received from here on
        for _ in range(2):
            assert _together(AT_ONCE, receive) == [201] * AT_ONCE, refused
        transitions, _audits, _events, order = _rows(loop, oid)
        received = 2 * (1 + 2 * AT_ONCE)
        assert (order.state, order.delivered_qty) == ("part_received", received)
        totals = [
            t.detail["total"] for t in transitions if t.detail and "total" in t.detail
        ]
        assert totals == list(range(2, received + 1, 2)), totals
