"""Goods of a cancelled order put into the bin by hand (found by an outside try), through
the public interfaces: a hand-written MQTT device (docs/protocol.md), the REST API and
two real supplier webhook endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    BIN,
    Loop,
    events_of,
    order_webhooks,
    plant,
    show,
)
from tests.server.supplier.test_dock_life import open_alerts


def _alerts(loop: Loop) -> list[dict[str, Any]]:
    r = loop.admin.get(
        "/api/v1/supply-alerts", params={"kind": "unexplained_stock_increase"}
    )
    assert r.status_code == 200, r.text
    return list(r.json())


def _discrepancies(loop: Loop) -> list[dict[str, Any]]:
    r = loop.admin.get("/api/v1/receiving-discrepancies", params={"bin": BIN})
    assert r.status_code == 200, r.text
    return list(r.json())


def _cancelled_with_fallback(loop: Loop, dev: Any) -> tuple[str, str]:
    """A's order is cancelled by A; B's fallback order is sent. Returns (A's, B's) ids."""
    show(loop, dev, 45)
    first = loop.wait_order()[0]
    a = loop.supplier_key("A")
    r = a.post(f"/api/v1/orders/{first.id}/cancel-request", json={"reason": "no stock"})
    assert (r.status_code, r.json()["state"]) == (200, "cancelled"), r.text
    wait_until(lambda: order_webhooks(loop.b), what="B receives the fallback order")
    fallback = loop.orders(supplier_id="B")[0].id
    wait_until(lambda: loop.order(fallback)["state"] == "sent", what="B's order sent")
    return first.id, fallback


def test_goods_of_a_cancelled_order_do_not_close_the_fallback(
    tmp_path: Path, mosquitto
) -> None:
    """A cancels, B gets the order; A's goods arrive anyway and go into the bin by hand.
    The refill is not B's delivery (B never shipped): B's order stays open and on order,
    B hears nothing, and the increase is alerted naming the cancelled order."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        cancelled, fallback = _cancelled_with_fallback(loop, dev)
        show(loop, dev, 145)
        alerts = wait_until(
            lambda: _alerts(loop), what="the unexplained-increase alert"
        )
        assert alerts[0]["detail"]["cancelled_orders"] == [cancelled]
        assert loop.order(fallback)["state"] == "sent"
        lvl = loop.level()
        assert (lvl["on_hand"], lvl["on_order_qty"], lvl["position"]) == (145, 100, 245)
        assert [(d["kind"], d["qty"]) for d in _discrepancies(loop)] == [
            ("unexplained_increase", 100)
        ]
        assert [e["type"] for e in events_of(loop.b)] == []
        # the alert a person sees says whose goods they may be, and stays until acknowledged
        loop.app.alerts.run_full()
        (seen,) = open_alerts(loop, "unexplained_stock_increase")
        assert cancelled[:8] in seen["what_to_do"], seen
        assert "stays on order" in seen["what_to_do"], seen
        # a person finds B's delivery note with the goods: receiving B's order at the
        # dock assigns the increase to it (no put-away is waited for)
        r = loop.admin.post(f"/api/v1/orders/{fallback}/receive", json={"qty": 100})
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "done", r.json()
        wait_until(lambda: loop.order(fallback)["state"] == "closed", what="closed")
        lvl = loop.level()
        assert (lvl["on_hand"], lvl["on_order_qty"], lvl["position"]) == (145, 0, 145)
        (d,) = _discrepancies(loop)
        assert (d["kind"], d["order_id"], d["resolved_ms"] is not None) == (
            "unexplained_increase",
            fallback,
            True,
        )


def test_a_shipped_fallback_is_still_received_by_weight(
    tmp_path: Path, mosquitto
) -> None:
    """B announced its shipment: a refill that fits it is B's delivery, cancelled
    order or not."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        _cancelled, fallback = _cancelled_with_fallback(loop, dev)
        b = loop.supplier_key("B")
        r = b.post(f"/api/v1/orders/{fallback}/ship", json={"qty": 100})
        assert r.status_code == 200, r.text
        show(loop, dev, 145)
        wait_until(
            lambda: loop.order(fallback)["state"] == "closed", what="B's order received"
        )
        assert _alerts(loop) == []


def test_an_order_the_plant_cancelled_before_sending_holds_nothing_back(
    tmp_path: Path, mosquitto
) -> None:
    """The plant cancels an order that never reached its supplier (A's endpoint was
    down): no goods can be on the way, so the next order's delivery, unannounced, is
    received by weight as usual."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        loop.a.script(*[503] * 50)  # A is down: the order is never sent
        show(loop, dev, 45)
        first = loop.wait_order()[0]
        r = loop.admin.post(
            f"/api/v1/orders/{first.id}/cancel-request", json={"reason": "re-sizing"}
        )
        assert (r.status_code, r.json()["state"]) == (200, "cancelled"), r.text
        assert r.json()["sent_ms"] is None
        loop.a.clear_script()
        # the bin is still low: the rule orders again, and this one is sent
        nxt = wait_until(
            lambda: [o for o in loop.orders() if o.state == "sent"],
            what="the next order sent",
        )[0]
        show(loop, dev, 145)
        wait_until(
            lambda: loop.order(nxt.id)["state"] == "closed",
            what="the next order received by weight",
        )
        assert _alerts(loop) == []
        lvl = loop.level()
        assert (lvl["on_hand"], lvl["on_order_qty"]) == (145, 0)
