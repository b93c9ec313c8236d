"""Dock life found by an outside try (this round), each through the public interfaces: a
hand-written MQTT device (docs/protocol.md), the REST API and two real supplier webhook
endpoints.  Each test is one defect the try saw, and fails without its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    BIN,
    Loop,
    plant,
    show,
)


def orders(loop: Loop) -> list[dict[str, Any]]:
    """The bin's orders through the API, oldest first."""
    r = loop.admin.get("/api/v1/orders", params={"bin": BIN})
    assert r.status_code == 200, r.text
    return sorted(r.json(), key=lambda o: (o["created_ms"], o["id"]))


def open_alerts(loop: Loop, kind: str) -> list[dict[str, Any]]:
    """Unresolved alerts of one kind."""
    r = loop.admin.get("/api/v1/alerts", params={"kind": kind})
    assert r.status_code == 200, r.text
    return list(r.json())


def test_part_received_remainder_does_not_block_the_next_order(
    tmp_path: Path, mosquitto
) -> None:
    """90 of 100 received, the line drains the bin: on hand 30 + 10 still to come is at
    the reorder point (50), so the bin orders again beside the part-received order
    (it used to wait, with no order and no alert, for a remainder that cannot lift it)."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        first = loop.wait_order()[0]
        r = loop.admin.post(
            f"/api/v1/orders/{first.id}/receive", json={"qty": 90, "complete": False}
        )
        assert r.status_code == 201, r.text
        show(loop, dev, 135)
        show(loop, dev, 30)
        second = loop.wait_order(what="an order beside the part-received one", n=2)[1]
        assert second.qty == 100
        states = {o["id"]: o["state"] for o in orders(loop)}
        assert states[first.id] == "part_received"
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["position"]) == (110, 140)
        # the remainder still arrives and is matched to its own order
        show(loop, dev, 40)
        wait_until(
            lambda: loop.order(first.id)["state"] == "closed", what="remainder matched"
        )
        assert loop.order(second.id)["state"] in ("sent", "created")
        # no third order while the second waits for its delivery
        show(loop, dev, 5)
        assert len(orders(loop)) == 2


def discrepancies(loop: Loop) -> list[dict[str, Any]]:
    """The bin's receiving discrepancies."""
    r = loop.admin.get("/api/v1/receiving-discrepancies", params={"bin": BIN})
    assert r.status_code == 200, r.text
    return list(r.json())


def test_put_away_in_handfuls_receives_the_order(tmp_path: Path, mosquitto) -> None:
    """No dock receipt, the 100 ordered put away 20 at a time (each refill under a
    quarter of the order): the handfuls together receive the order — it used to stay
    open with 100 on order beside the 100 on hand, so the bin would have had to drain
    100 below its reorder point before ordering again."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0]
        for n in (65, 85, 105, 125, 145):
            show(loop, dev, n)
        wait_until(
            lambda: loop.order(order.id)["state"] == "closed", what="order received"
        )
        assert loop.order(order.id)["delivered_qty"] == 100
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["pending_delivery_qty"], lvl["position"]) == (
            0,
            0,
            145,
        )
        open_increases = [
            d
            for d in discrepancies(loop)
            if d["kind"] == "unexplained_increase" and d["resolved_ms"] is None
        ]
        assert open_increases == []
        # the next crossing orders again
        show(loop, dev, 40)
        assert loop.wait_order(what="the next order", n=2)[1].qty == 100


def test_a_receipt_beyond_the_order_is_refused(tmp_path: Path, mosquitto) -> None:
    """A dock receipt of 1,000,000 on an order of 100 (a bin of 400) used to be taken:
    the position read 1,000,045 for the two-hour put-away window and the bin could not
    reorder.  The dock may receive what is outstanding plus the tolerance, as a ship
    notice may; more (or a hostile number) is a 422 that changes nothing."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0]
        for path in ("receive", "deliver"):
            for qty in (1_000_000, 111, 2**63, 2**64, 5e-324, -1, 0, "100"):
                r = loop.admin.post(
                    f"/api/v1/orders/{order.id}/{path}", json={"qty": qty}
                )
                assert r.status_code == 422, (path, qty, r.text)
        r = loop.admin.post(
            f"/api/v1/orders/{order.id}/receive", content=b'{"qty": NaN}'
        )
        assert r.status_code == 422, r.text
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["pending_delivery_qty"], lvl["position"]) == (
            100,
            0,
            145,
        )
        assert loop.order(order.id)["state"] in ("created", "sent")
        # what is outstanding plus the tolerance (10) is an over-delivery, taken
        r = loop.admin.post(f"/api/v1/orders/{order.id}/receive", json={"qty": 110})
        assert r.status_code == 201, r.text
        assert loop.level()["position"] == 155


def test_every_supplier_item_switched_off_raises_reorder_blocked(
    tmp_path: Path, mosquitto
) -> None:
    """Both supplier items of the SKU switched off: the bin at its reorder point cannot
    order, and says so (it used to be taken for a bin with no supplier at all, which is
    only monitored, and raised nothing).  Switching one on orders and resolves it."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        r = loop.admin.patch(f"/api/v1/bins/{BIN}", json={"supplier_id": None})
        assert r.status_code == 200, r.text
        for supplier in ("A", "B"):
            r = loop.admin.put(
                f"/api/v1/suppliers/{supplier}/items",
                json={"sku_id": "SKU-1", "active": False},
            )
            assert r.status_code == 200, r.text
        show(loop, dev, 45)

        def blocked() -> list[dict[str, Any]]:
            loop.app.alerts.run_full()
            return open_alerts(loop, "reorder_blocked")

        alerts = wait_until(blocked, what="a reorder_blocked alert")
        assert [a["entity"] for a in alerts] == [f"bin:{BIN}"]
        assert (
            "every supplier item of SKU SKU-1 is switched off" in alerts[0]["message"]
        )
        assert orders(loop) == []
        r = loop.admin.put(
            "/api/v1/suppliers/B/items", json={"sku_id": "SKU-1", "active": True}
        )
        assert r.status_code == 200, r.text
        assert loop.wait_order()[0].supplier_id == "B"
        wait_until(lambda: not blocked(), what="the alert resolved")


def test_sku_unit_weight_change_orders_at_once(tmp_path: Path, mosquitto) -> None:
    """The SKU's unit weight goes from 12.5 to 18.75 g: the bin's 60 become 40, at or
    below its reorder point (50), and it orders now — it used to wait for its next
    reading (up to a keep-alive, or the next pick of a device without keep-alives)."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        _dev,
    ):
        r = loop.admin.patch(f"/api/v1/bins/{BIN}", json={"unit_weight_g": None})
        assert r.status_code == 200, r.text
        assert loop.level()["on_hand"] == 60  # the SKU's weight is the bin's
        r = loop.admin.patch("/api/v1/skus/SKU-1", json={"unit_weight_g": 18.75})
        assert r.status_code == 200, r.text
        assert loop.level()["on_hand"] == 40
        order = loop.wait_order(what="an order without a new reading")[0]
        assert order.qty == 100
        trigger = loop.order(order.id)["trigger"]
        assert trigger["reason"] == "SKU unit weight changed"


def test_goods_scanned_for_a_cancelled_order_stay_alerted(
    tmp_path: Path, mosquitto
) -> None:
    """The label of a cancelled order scanned at the dock: the delivered-twice alert
    stays open until someone acknowledges it (it was resolved the instant it was raised,
    since its order was already over)."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0]
        r = loop.admin.post(
            f"/api/v1/orders/{order.id}/cancel-request", json={"reason": "not needed"}
        )
        assert r.status_code == 200, r.text
        dev.scan(f"JSORD:{order.id}")

        def raised() -> list[dict[str, Any]]:
            loop.app.alerts.run_full()
            r = loop.admin.get(
                "/api/v1/alerts",
                params={"kind": "receiving_closed_order_receipt", "state": "all"},
            )
            return list(r.json())

        alerts = wait_until(raised, what="the delivered-twice alert")
        loop.app.alerts.run_full()
        alerts = raised()
        assert [(a["state"], a["resolved_ms"]) for a in alerts] == [("open", None)]
        r = loop.admin.post(f"/api/v1/alerts/{alerts[0]['id']}/ack")
        assert r.status_code == 200, r.text
        assert raised()[0]["resolved_ms"] is not None


def test_label_scanned_after_the_scale_received_the_order_is_no_alarm(
    tmp_path: Path, mosquitto
) -> None:
    """The goods went into the bin first (the scale received the order by weight and
    closed it), then the dock scanned the label: that is the paperwork of the same
    goods, not a delivery twice (it raised the delivered-twice alert).  The API receipt
    says why there is nothing left to receive."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0]
        show(loop, dev, 145)
        wait_until(
            lambda: loop.order(order.id)["state"] == "closed", what="received by weight"
        )
        dev.scan(f"JSORD:{order.id}")
        show(loop, dev, 144)  # the same agent's next batch: the scan is applied before
        r = loop.admin.get(
            "/api/v1/supply-alerts", params={"kind": "receiving_closed_order_receipt"}
        )
        assert r.json() == []
        assert [d["kind"] for d in discrepancies(loop)] == []
        r = loop.admin.post(f"/api/v1/orders/{order.id}/receive", json={"qty": 100})
        assert r.status_code == 409, r.text
        assert "received it by weight" in r.text
        assert loop.level()["position"] == 144


def test_a_repeated_ship_notice_changes_nothing(tmp_path: Path, mosquitto) -> None:
    """A supplier retries its ship notice (the answer was lost): the same notice is
    200 and changes nothing (it was a 409, which a retrying client takes as refused);
    a different one is still 409."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0]
        a = loop.supplier_key("A")
        notice = {"qty": 100, "carrier_ref": "DHL-1"}
        first = a.post(f"/api/v1/orders/{order.id}/ship", json=notice)
        assert first.status_code == 200, first.text
        again = a.post(f"/api/v1/orders/{order.id}/ship", json=notice)
        assert again.status_code == 200, again.text
        assert again.json()["shipped_ms"] == first.json()["shipped_ms"]
        for other in ({"qty": 90, "carrier_ref": "DHL-1"}, {"qty": 100}):
            r = a.post(f"/api/v1/orders/{order.id}/ship", json=other)
            assert r.status_code == 409, (other, r.text)
            # says what differs from the notice on record, not "shipped cannot become shipped"
            assert "already shipped with another notice" in r.text, r.text
            assert "qty 100, carrier_ref 'DHL-1'" in r.text, r.text
        r = loop.admin.get(f"/api/v1/orders/{order.id}/transitions")
        assert [t["to_state"] for t in r.json()].count("shipped") == 1


@pytest.mark.parametrize("top_up", [50, 35])
def test_a_top_up_before_the_order_is_not_its_put_away(
    tmp_path: Path, mosquitto, top_up: int
) -> None:
    """A top-up with no order open (an unexplained increase), picks down past the
    reorder point (an order), then the dock scans that order's label: the goods are at
    the dock, not in the bin — the increase came before the order existed, so it cannot
    be the order's put-away (the receipt used to be 'done' at once, the order closed and
    a second order placed for goods still at the dock)."""
    with plant(tmp_path, mosquitto.url, start=100, order_qty=50, reorder_point=20) as (
        loop,
        dev,
    ):
        show(loop, dev, 100 + top_up)
        assert [(d["kind"], d["qty"]) for d in discrepancies(loop)] == [
            ("unexplained_increase", top_up)
        ]
        show(loop, dev, 15)
        order = loop.wait_order()[0]
        dev.scan(f"JSORD:{order.id}")

        def receipts() -> list[dict[str, Any]]:
            r = loop.admin.get(f"/api/v1/orders/{order.id}/receipts")
            assert r.status_code == 200, r.text
            return list(r.json())

        (receipt,) = wait_until(receipts, what="the dock receipt")
        assert (receipt["qty"], receipt["status"]) == (50, "awaiting_putaway"), receipt
        assert not receipt["scale_qty"], receipt
        lvl = loop.level()
        assert (lvl["on_hand"], lvl["pending_delivery_qty"], lvl["position"]) == (
            15,
            50,
            65,
        )
        assert [(o["id"], o["state"]) for o in orders(loop)] == [(order.id, "received")]
        # the real put-away: the scale confirms the receipt and closes the order
        show(loop, dev, 65)
        wait_until(lambda: loop.order(order.id)["state"] == "closed", what="put away")
        assert [o["id"] for o in orders(loop)] == [order.id]
        lvl = loop.level()
        assert (lvl["pending_delivery_qty"], lvl["position"]) == (0, 65)
        # the earlier top-up stays unexplained (alerted), not charged to this order
        assert [
            (d["kind"], d["qty"], d["resolved_ms"]) for d in discrepancies(loop)
        ] == [("unexplained_increase", top_up, None)]
