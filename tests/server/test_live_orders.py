"""The live hub's order poll does no work for nobody (issue 12): with no page connected
it does not read the open orders, and the first page to connect hears of every order
that changed meanwhile — also one that changed after that page loaded what it shows,
which a hub that kept polling for nobody had already taken as seen."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from sqlalchemy import event

from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from jitstock.server.live import LiveHub
from tests.server.db_factories import SITE, SKU, SUPPLIER, seed
from tests.waits import WAIT_S

POLL_S = 0.02


def _order(state: str) -> Order:
    return Order(
        id="o1",
        bin_id="bin-0",
        sku_id=SKU,
        supplier_id=SUPPLIER,
        site_id=SITE,
        qty=100,
        state=state,
        created_ms=1,
        trigger={},
    )


async def _first_orders_event(hub: LiveHub) -> dict[str, Any]:
    sub = hub.subscribe()
    try:
        while True:
            message = await asyncio.wait_for(sub.queue.get(), WAIT_S)
            if message.startswith("event: orders\n"):
                data: dict[str, Any] = json.loads(message.split("data: ", 1)[1])
                return data
    finally:
        hub.unsubscribe(sub)


def test_no_order_poll_without_a_page_and_a_late_page_hears_what_changed(
    db: Any,
) -> None:
    seed(db.factory)
    order_reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM orders" in statement:
            order_reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    hub = LiveHub(db.factory, order_poll_s=POLL_S, coalesce_s=0.01)
    hub.start()
    try:
        with transaction(db.factory) as s:
            s.add(_order("sent"))
        # fifty poll intervals with no page connected: not one read of the orders
        time.sleep(50 * POLL_S)
        assert order_reads == []
        # a page connects: it is told about the order that changed while nobody watched
        got = asyncio.run(_first_orders_event(hub))
        assert got["orders"] == ["o1"]
        assert got["bins"] == ["bin-0"]
        assert order_reads
    finally:
        hub.stop()
        event.remove(db.engine, "before_cursor_execute", count)
