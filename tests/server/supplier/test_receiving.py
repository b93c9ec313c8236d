"""Issue 5 acceptance, end to end: simulated scale and dock scanner -> real edge agent ->
real Mosquitto -> server -> two real supplier HTTP endpoints."""

from __future__ import annotations

from pathlib import Path

from jitstock.server.supplier.dock_scans import label_code
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    Loop,
    events_of,
    order_webhooks,
    shop_floor,
    supplier_loop,
)


def _drive_to_order(loop: Loop, floor, pick: int) -> str:
    wait_until(lambda: loop.level().get("on_hand") == 30, what="first level 30")
    floor.scale.pick(pick)
    (order,) = loop.wait_order()
    wait_until(lambda: order_webhooks(loop.a), what="A to receive the order")
    return order.id


def test_ack_ship_dock_scan_then_scale_confirms(tmp_path: Path, mosquitto) -> None:
    with (
        supplier_loop(tmp_path, mosquitto.url) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        oid = _drive_to_order(loop, floor, 12)  # 18 <= 20
        assert order_webhooks(loop.b) == []  # the preferred supplier got it
        a = loop.supplier_key("A")
        promised = loop.order(oid)["created_ms"] + 3_600_000
        r = a.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": promised})
        assert (r.status_code, r.json()["state"]) == (200, "acknowledged"), r.text
        r = a.post(
            f"/api/v1/orders/{oid}/ship", json={"qty": 40, "carrier_ref": "DHL-123"}
        )
        assert (r.status_code, r.json()["state"], r.json()["asn_qty"]) == (
            200,
            "shipped",
            40,
        ), r.text

        # the printable label encodes the order; the dock scanner reads it
        label = loop.admin.get(f"/api/v1/orders/{oid}/label.svg")
        assert label.status_code == 200
        assert label.headers["content-type"] == "image/svg+xml"
        assert label.content.lstrip().startswith((b"<?xml", b"<svg"))
        floor.scanner.scan(label_code(oid))
        wait_until(lambda: loop.order(oid)["state"] == "received", what="dock receipt")
        level = loop.level()
        assert (level["on_hand"], level["pending_delivery_qty"]) == (18, 40)

        # the goods go into the bin: its scale confirms the put-away and closes the order
        floor.scale.refill(40)
        wait_until(lambda: loop.order(oid)["state"] == "closed", what="closed")
        level = loop.level()
        assert (level["on_hand"], level["pending_delivery_qty"]) == (58, 0)
        history = loop.admin.get(f"/api/v1/orders/{oid}/transitions").json()
        assert [(t["from_state"], t["to_state"]) for t in history] == [
            (None, "created"),
            ("created", "sent"),
            ("sent", "acknowledged"),
            ("acknowledged", "shipped"),
            ("shipped", "received"),
            ("received", "closed"),
        ]
        assert [t["actor"] for t in history][2:] == [
            "A-erp",
            "A-erp",
            "scanner:pi-1/dock1",
            "scale",
        ]
        receipts = loop.admin.get(f"/api/v1/orders/{oid}/receipts").json()
        assert [
            (r["method"], r["qty"], r["scale_qty"], r["status"]) for r in receipts
        ] == [("scan", 40, 40, "done")]
        # lead time for the replenishment logic: first receipt minus sent
        (order,) = loop.orders(id=oid)
        assert order.delivered_ms is not None
        assert order.sent_ms is not None
        assert order.delivered_ms > order.sent_ms
        assert order.delivered_qty == 40
        # A heard about every step it cares about, signed
        wait_until(lambda: len(events_of(loop.a)) >= 4, what="A's lifecycle webhooks")
        assert [e["type"] for e in events_of(loop.a)] == [
            "order.acknowledged",
            "order.shipped",
            "order.received",
            "order.closed",
        ]
        assert loop.admin.get("/api/v1/supply-alerts").json() == []


def test_95_of_100_delivered_10_rejected(tmp_path: Path, mosquitto) -> None:
    with (
        supplier_loop(tmp_path, mosquitto.url, order_qty=100) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        r = loop.admin.patch(
            "/api/v1/suppliers/A/loop-settings", json={"inspect_every_n": 1}
        )
        assert r.status_code == 200, r.text
        oid = _drive_to_order(loop, floor, 12)
        assert loop.order(oid)["qty"] == 100
        a = loop.supplier_key("A")
        assert a.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 200
        assert a.post(f"/api/v1/orders/{oid}/ship", json={"qty": 95}).status_code == 200
        floor.scanner.scan(label_code(oid))
        wait_until(lambda: loop.order(oid)["state"] == "received", what="receipt")
        (receipt,) = loop.admin.get(f"/api/v1/orders/{oid}/receipts").json()
        assert (receipt["qty"], receipt["status"]) == (95, "awaiting_inspection")

        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 85, "rejected_qty": 10, "reason": "bent threads"},
        )
        assert r.status_code == 201, r.text
        # rejected units never count: 85 pending for the bin, not 95
        assert loop.level()["pending_delivery_qty"] == 85
        # a replacement for the shortfall (5 short + 10 rejected) goes to A
        wait_until(lambda: len(order_webhooks(loop.a)) >= 2, what="replacement")
        replacement = order_webhooks(loop.a)[1]
        assert replacement["qty"] == 15
        assert (replacement["reason"], replacement["replaces"]) == ("replacement", oid)

        floor.scale.refill(85)
        wait_until(lambda: loop.order(oid)["state"] == "closed", what="closed")
        level = loop.level()
        assert (level["on_hand"], level["pending_delivery_qty"]) == (18 + 85, 0)

        card = loop.admin.get("/api/v1/suppliers/A/scorecard", params={"period": "1d"})
        assert card.status_code == 200, card.text
        c = card.json()
        assert (c["units_ordered"], c["units_received"], c["units_short"]) == (
            100,
            95,
            5,
        )
        assert c["fill_accuracy"] == 0.95
        assert (c["units_inspected"], c["units_rejected"]) == (95, 10)
        assert abs(c["quality_rate"] - 85 / 95) < 1e-9
        assert (c["orders"], c["orders_received"], c["escalations"]) == (2, 1, 0)
        assert c["ack_time_mean_s"] is not None
        csv_text = loop.admin.get(
            "/api/v1/suppliers/A/scorecard.csv", params={"period": "1d"}
        ).text
        header, row = csv_text.strip().splitlines()
        values = dict(zip(header.split(","), row.split(","), strict=True))
        assert (
            values["supplier_id"],
            values["fill_accuracy"],
            values["units_rejected"],
        ) == (
            "A",
            "0.95",
            "10",
        )


def test_refill_without_an_open_order_is_unexplained(tmp_path: Path, mosquitto) -> None:
    with (
        supplier_loop(tmp_path, mosquitto.url, reorder_point=5) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        wait_until(lambda: loop.level().get("on_hand") == 30, what="first level")
        floor.scale.refill(25)
        alerts = wait_until(
            lambda: loop.admin.get(
                "/api/v1/supply-alerts", params={"kind": "unexplained_stock_increase"}
            ).json(),
            what="the unexplained-increase alert",
        )
        assert [(a["bin_id"], a["detail"]["delta"], a["order_id"]) for a in alerts] == [
            ("B1", 25, None)
        ]
        assert loop.level()["on_hand"] == 55
        assert loop.orders() == []

        # with an order open, a refill far from its quantity closes nothing either
        floor.scale.pick(52)  # 3 <= 5: order of 40
        (order,) = loop.wait_order()
        wait_until(lambda: loop.order(order.id)["state"] == "sent", what="sent")
        floor.scale.refill(5)  # not a quarter of the order: no partial delivery either
        wait_until(
            lambda: (
                len(
                    loop.admin.get(
                        "/api/v1/supply-alerts",
                        params={"kind": "unexplained_stock_increase"},
                    ).json()
                )
                == 2
            ),
            what="second alert",
        )
        assert loop.order(order.id)["state"] == "sent"
        assert loop.admin.get(f"/api/v1/orders/{order.id}/receipts").json() == []
