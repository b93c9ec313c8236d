"""Issue 9, cases 1–8 and 11–13, each through the public interfaces: a hand-written MQTT
device (docs/protocol.md), the REST API, and two real supplier webhook endpoints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jitstock.server.supplier.dock_scans import label_code
from tests.server.mqtt_device import HandDevice
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    BIN,
    SITE,
    TARE_G,
    UNIT_G,
    Loop,
    order_webhooks,
    plant,
    show,
)


def _order(loop: Loop, n: int = 1) -> dict[str, Any]:
    orders = loop.wait_order(n=n)
    return loop.order(orders[n - 1].id)


def _replacements(loop: Loop, order_id: str) -> list[Any]:
    """The orders placed for what ``order_id`` was short or had rejected."""
    return [o for o in loop.orders() if (o.trigger or {}).get("replaces") == order_id]


def _received_at_dock(
    loop: Loop, dev: HandDevice, qty: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bin picked to 18 (its order fires), then ``qty`` of it received at the
    dock: (the order, the receipt)."""
    show(loop, dev, 18)
    order = _order(loop)
    r = loop.admin.post(f"/api/v1/orders/{order['id']}/receive", json={"qty": qty})
    assert r.status_code == 201, r.text
    return order, r.json()


def _weight_seen(loop: Loop, units: int, what: str) -> None:
    """Wait until the server has the scale's weight of ``units`` (steady or not)."""
    wait_until(
        lambda: (
            loop.admin.get(f"/api/v1/bins/{BIN}").json()["last_grams"]
            == TARE_G + units * UNIT_G
        ),
        what=f"{what} seen",
    )


def _alerts(loop: Loop, kind: str) -> list[dict[str, Any]]:
    r = loop.admin.get("/api/v1/supply-alerts", params={"kind": kind})
    assert r.status_code == 200, r.text
    return list(r.json())


def _open_alerts(loop: Loop, kind: str | None = None) -> list[dict[str, Any]]:
    r = loop.admin.get("/api/v1/alerts", params={"state": "open"})
    assert r.status_code == 200, r.text
    return [
        a
        for a in r.json()
        if a["resolved_ms"] is None and (kind is None or a["kind"] == kind)
    ]


def _supply_and_alert_pass(loop: Loop) -> None:
    """Run the periodic passes now (escalation + put-away sweep, alert re-check)."""
    loop.app.escalator.run_once()
    loop.app.alerts.run_full()


def test_case1_refill_while_picking_receives_the_order(
    tmp_path: Path, mosquitto
) -> None:
    """40 delivered, the scale sees +35 (5 picked during put-away): the order closes,
    nothing stays on order, the picks are consumption, no unexplained alert."""
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        show(loop, dev, 18)
        order = _order(loop)
        a = loop.supplier_key("A")
        r = a.post(f"/api/v1/orders/{order['id']}/ship", json={"qty": 40})
        assert r.status_code == 200, r.text
        # a supplier reads no internal figures (stock, other suppliers' orders)
        assert (r.json()["trigger"], r.json()["bridge_for"]) == (None, None)
        mine = a.get("/api/v1/supplier/orders").json()
        assert [(o["id"], o["trigger"]) for o in mine] == [(order["id"], None)]
        show(loop, dev, 18 + 35)
        wait_until(lambda: loop.order(order["id"])["state"] == "closed", what="closed")
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["pending_delivery_qty"], lvl["position"]) == (
            0,
            0,
            53,
        )
        assert (
            loop.order(order["id"])["delivered_qty"] == 40
        )  # the supplier delivered 40
        assert _alerts(loop, "unexplained_stock_increase") == []
        r = loop.admin.get("/api/v1/receiving-discrepancies", params={"bin": BIN})
        assert [(d["kind"], d["qty"]) for d in r.json()] == [("putaway_picks", 5)]


def test_case2_short_weigh_in_leaves_no_phantom_pending(
    tmp_path: Path, mosquitto
) -> None:
    """A dock receipt of 100, the scale counts 97: pending goes to 0, the order closes,
    and when the bin falls to its reorder point again it orders."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 48)
        order = _order(loop)
        r = loop.admin.post(f"/api/v1/orders/{order['id']}/receive", json={"qty": 100})
        assert r.status_code == 201, r.text
        assert loop.level()["pending_delivery_qty"] == 100
        show(loop, dev, 48 + 97)
        wait_until(lambda: loop.level()["pending_delivery_qty"] == 0, what="pending 0")
        assert loop.order(order["id"])["state"] == "closed"
        assert loop.level()["position"] == 145
        r = loop.admin.get("/api/v1/receiving-discrepancies", params={"bin": BIN})
        assert [(d["kind"], d["qty"]) for d in r.json()] == [("putaway_picks", 3)]
        show(loop, dev, 49)
        second = _order(loop, 2)
        assert second["state"] in ("created", "sent")


def test_case3_4_balance_of_a_partial_delivery(tmp_path: Path, mosquitto) -> None:
    """60 of 100 arrive, then 40: the first is a partial receipt (40 stay on order, in
    /levels as in the rule), the second matches the balance and closes the order."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 48)
        order = _order(loop)
        a = loop.supplier_key("A")
        assert (
            a.post(f"/api/v1/orders/{order['id']}/ship", json={"qty": 100}).status_code
            == 200
        )
        show(loop, dev, 108)
        wait_until(
            lambda: loop.order(order["id"])["state"] == "part_received", what="part"
        )
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["position"]) == (40, 148)
        trigger = loop.order(order["id"])["trigger"]["position"]
        assert trigger["on_order"] == 0  # the rule's view when it fired
        show(loop, dev, 148)
        wait_until(lambda: loop.order(order["id"])["state"] == "closed", what="closed")
        assert loop.order(order["id"])["delivered_qty"] == 100
        assert loop.level()["on_order_qty"] == 0
        assert _alerts(loop, "unexplained_stock_increase") == []


def test_case5_one_pick_never_escalates(tmp_path: Path, mosquitto) -> None:
    """150 units two hours ago, 40 now: an order, but no escalation on that one pick."""
    with plant(tmp_path, mosquitto.url, start=150, reorder_point=50) as (loop, dev):
        # the 150 was measured two hours ago (an outbox replay after an outage)
        dev.count(BIN, 150, ts_ms=int(time.time() * 1000) - 2 * 3_600_000)
        show(loop, dev, 40)
        order = _order(loop)
        wait_until(lambda: order_webhooks(loop.a), what="A has the order")
        for _ in range(3):
            assert loop.app.escalator.run_once() == []
        assert loop.admin.get("/api/v1/escalations").json() == []
        assert order_webhooks(loop.b) == []
        assert loop.order(order["id"])["qty"] == 40  # not reduced


def test_case6_supplier_cancel_moves_demand_to_fallback(
    tmp_path: Path, mosquitto
) -> None:
    """A cancels: B gets an order at once, one alert, and the next reading does not
    re-order from A."""
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        show(loop, dev, 18)
        order = _order(loop)
        a = loop.supplier_key("A")
        r = a.post(
            f"/api/v1/orders/{order['id']}/cancel-request", json={"reason": "no stock"}
        )
        assert (r.status_code, r.json()["state"]) == (200, "cancelled"), r.text
        fallback = loop.orders(supplier_id="B")
        assert [o.qty for o in fallback] == [40]
        wait_until(lambda: order_webhooks(loop.b), what="B receives the order")
        assert len(_alerts(loop, "order_cancelled_by_supplier")) == 1
        show(loop, dev, 17)
        assert [o.supplier_id for o in loop.orders()] == ["A", "B"]


def test_case6_webhook_4xx_moves_demand_to_fallback(tmp_path: Path, mosquitto) -> None:
    """A answers 400: its order fails and B gets the order at once."""
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        loop.a.script(400)
        show(loop, dev, 18)
        wait_until(lambda: loop.orders(state="failed"), what="A's order failed")
        wait_until(
            lambda: (
                [(o.supplier_id, o.state) for o in loop.orders()][1:] == [("B", "sent")]
            ),
            what="B's order sent",
        )
        assert len(order_webhooks(loop.b)) == 1
        wait_until(
            lambda: _open_alerts(loop, "order_failed"),
            what="one order_failed alert",
        )
        assert len(_open_alerts(loop, "order_failed")) == 1


def test_case7_scan_of_a_cancelled_order_is_alerted(tmp_path: Path, mosquitto) -> None:
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        show(loop, dev, 18)
        order = _order(loop)
        r = loop.admin.post(
            f"/api/v1/orders/{order['id']}/cancel-request",
            json={"reason": "not needed"},
        )
        assert r.status_code == 200, r.text
        dev.scan(label_code(order["id"]))
        wait_until(
            lambda: _alerts(loop, "receiving_closed_order_receipt"),
            what="the delivered-twice alert",
        )
        assert loop.order(order["id"])["state"] == "cancelled"


def test_case8_bin_supplier_wins_and_replacement_in_packs(
    tmp_path: Path, mosquitto
) -> None:
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        r = loop.admin.patch(f"/api/v1/bins/{BIN}", json={"supplier_id": "B"})
        assert r.status_code == 200, r.text
        r = loop.admin.put(
            "/api/v1/suppliers/B/items",
            json={"sku_id": "SKU-1", "priority": 2, "pack_size": 12, "moq": 24},
        )
        assert r.status_code == 200, r.text
        show(loop, dev, 18)
        order = _order(loop)
        assert (
            order["supplier_id"] == "B"
        )  # the bin's own supplier, over A's priority 1
        r = loop.admin.patch(
            "/api/v1/suppliers/B/loop-settings", json={"inspect_every_n": 1}
        )
        assert r.status_code == 200, r.text
        r = loop.admin.post(f"/api/v1/orders/{order['id']}/receive", json={"qty": 40})
        assert r.status_code == 201, r.text
        receipt = r.json()
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 25, "rejected_qty": 15, "reason": "bent"},
        )
        assert r.status_code == 201, r.text
        replacement = _replacements(loop, order["id"])
        assert [(o.supplier_id, o.qty) for o in replacement] == [("B", 24)]


def test_case11_one_alert_per_escalation_resolved_when_closed(
    tmp_path: Path, mosquitto
) -> None:
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        r = loop.admin.patch(
            "/api/v1/suppliers/A/loop-settings", json={"ack_deadline_s": 1}
        )
        assert r.status_code == 200, r.text
        show(loop, dev, 18)
        first = _order(loop)
        # the deadline runs from when A was sent the order (later on a busy machine)
        done = wait_until(
            loop.app.escalator.run_once, what="the ack-deadline escalation"
        )
        assert [d["action"] for d in done] == ["cancelled"]
        loop.app.alerts.run_full()
        wait_until(lambda: _open_alerts(loop, "order_escalated"), what="alert")
        about_first = [a for a in _open_alerts(loop) if a["order_id"] == first["id"]]
        assert [a["kind"] for a in about_first] == ["order_escalated"]
        # B ships and delivers: its order closes, the escalation incident resolves by
        # itself (without B's ship notice the refill could be A's goods: alerted)
        bridge = loop.orders(supplier_id="B")[0]
        r = loop.supplier_key("B").post(
            f"/api/v1/orders/{bridge.id}/ship", json={"qty": 40}
        )
        assert r.status_code == 200, r.text
        show(loop, dev, 18 + 40)
        wait_until(lambda: loop.order(bridge.id)["state"] == "closed", what="closed")
        loop.app.alerts.run_full()
        assert [a for a in _open_alerts(loop) if a["order_id"] == first["id"]] == []


def test_case11_viewer_cannot_resolve_a_critical_alert(
    tmp_path: Path, mosquitto
) -> None:
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        loop.a.script(400)
        show(loop, dev, 18)
        (alert,) = wait_until(
            lambda: _open_alerts(loop, "order_failed"), what="order_failed alert"
        )
        r = loop.admin.post("/api/v1/keys", json={"name": "wall", "role": "viewer"})
        assert r.status_code == 201, r.text
        viewer = loop.client(r.json()["key"])
        r = viewer.post(f"/api/v1/alerts/{alert['id']}/ack")
        assert r.status_code == 403, r.text
        assert _open_alerts(loop, "order_failed")[0]["state"] == "open"


def test_case12_ship_notice_is_validated(tmp_path: Path, mosquitto) -> None:
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        show(loop, dev, 18)
        order = _order(loop)
        a = loop.supplier_key("A")
        r = a.post(f"/api/v1/orders/{order['id']}/ship", json={"expected_ms": 5})
        assert r.status_code == 422, r.text
        assert "expected_ms" in r.text
        r = a.post(f"/api/v1/orders/{order['id']}/ship", json={"qty": 5000})
        assert r.status_code == 422, r.text
        assert "qty" in r.text
        assert loop.order(order["id"])["state"] in ("created", "sent")


def test_case13_unstable_reading_stays_out_of_history(
    tmp_path: Path, mosquitto
) -> None:
    with plant(tmp_path, mosquitto.url, start=20) as (loop, dev):
        t0 = int(time.time() * 1000)
        dev.count(BIN, 60, stable=False)
        dev.count(BIN, 20)
        wait_until(lambda: loop.level()["last_seen_ms"] >= t0, what="readings in")
        assert loop.level()["on_hand"] == 20
        r = loop.admin.get(
            f"/api/v1/bins/{BIN}/history",
            params={"start": t0 - 60_000, "end": int(time.time() * 1000) + 60_000},
        )
        assert r.status_code == 200, r.text
        counts = [p.get("count") for p in r.json()["points"]]
        assert counts, r.text
        assert 60 not in counts, counts


def test_case9_scan_only_into_bins_the_station_may_receive_into(
    tmp_path: Path, mosquitto
) -> None:
    """A dock station without bins is accepted; it receives only where it may."""
    with plant(tmp_path, mosquitto.url, start=30) as (loop, dev):
        show(loop, dev, 18)
        order = _order(loop)
        r = loop.admin.post(
            "/api/v1/agents", json={"id": "dock-2", "site_id": SITE, "receive_bins": []}
        )
        assert r.status_code == 201, r.text
        station = HandDevice(
            mosquitto.url, SITE, "dock-2", unit_g=UNIT_G, tare_g=TARE_G
        )
        try:
            station.scan(label_code(order["id"]))
            wait_until(
                lambda: _alerts(loop, "scan_not_allowed"), what="the refusal alert"
            )
            assert loop.admin.get(f"/api/v1/orders/{order['id']}/receipts").json() == []
            r = loop.admin.patch("/api/v1/agents/dock-2", json={"receive_bins": ["*"]})
            assert r.status_code == 200, r.text
            station.scan(label_code(order["id"]))
            wait_until(
                lambda: loop.order(order["id"])["state"] == "received",
                what="received",
            )
        finally:
            station.close()


def test_case14_a_replacement_open_does_not_keep_the_bin_from_ordering(
    tmp_path: Path, mosquitto
) -> None:
    """An outside dock-life try: 40 of 50 received (complete), so a replacement for 10
    went out; put away, then picked down to 5.  The position, 5 + 10 on order, is below
    the reorder point of 20, yet no order came and no alert said why: the replacement
    held the bin's one open-order slot and the bin ran empty.  Now the bin orders
    beside the replacement."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=50, reorder_point=20) as (
        loop,
        dev,
    ):
        show(loop, dev, 18)
        order = _order(loop)
        a = loop.supplier_key("A")
        r = a.post(f"/api/v1/orders/{order['id']}/ship", json={"qty": 40})
        assert r.status_code == 200, r.text
        r = loop.admin.post(f"/api/v1/orders/{order['id']}/receive", json={"qty": 40})
        assert r.status_code == 201, r.text
        (replacement,) = _replacements(loop, order["id"])
        assert replacement.qty == 10
        show(loop, dev, 58)  # put away
        wait_until(lambda: loop.order(order["id"])["state"] == "closed", what="closed")
        show(loop, dev, 5)  # picked: position 5 + 10 on order
        fresh = wait_until(
            lambda: [
                o for o in loop.orders() if o.id not in (order["id"], replacement.id)
            ],
            what="an order beside the replacement",
        )
        assert [(o.state in ("created", "sent"), o.qty) for o in fresh] == [(True, 50)]
        assert loop.order(replacement.id)["state"] in ("created", "sent")
        lvl = loop.level()
        assert (lvl["on_order_qty"], lvl["position"]) == (60, 65)
        _supply_and_alert_pass(loop)
        assert _open_alerts(loop, "reorder_blocked") == []


def test_case15_a_recount_while_the_scale_is_unsettled_sets_the_count_and_orders(
    tmp_path: Path, mosquitto
) -> None:
    """An outside dock-life try: 60 on the scale, a picker takes 45 (the scale reads 15
    units but not yet stable), the manager counts 15: answered 200 with on hand 60,
    nothing audited, no order though 15 is below the reorder point.  The count is
    applied (the tare already fits the weight the scale shows), audited, and orders."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=50, reorder_point=20) as (
        loop,
        dev,
    ):
        dev.count(BIN, 15, stable=False)
        _weight_seen(loop, 15, "the unstable reading")
        assert loop.level()["on_hand"] == 60
        r = loop.admin.post(f"/api/v1/bins/{BIN}/recount", json={"on_hand": 15})
        assert r.status_code == 200, r.text
        assert r.json()["on_hand"] == 15
        assert r.json()["order"] is not None
        assert loop.level()["on_hand"] == 15
        audit = loop.admin.get(
            "/api/v1/audit", params={"entity": "bin", "entity_id": BIN}
        ).json()
        assert any(a["action"] == "bin.recount" for a in audit), audit
        # the scale settles on the same weight: the count stays
        show(loop, dev, 15)
        assert [o.qty for o in loop.orders()] == [50]


def test_case16_goods_found_wrong_after_their_dock_receipt_are_rejected(
    tmp_path: Path, mosquitto
) -> None:
    """An outside dock-life try: 50 received at the dock, then the truck turned out to
    carry the wrong part; every way to correct it was refused (409), and the 50 stood
    in the bin's position for the 2-hour put-away window, holding its reorder off.
    The receipt awaiting put-away is inspected: the rejected goods leave the position
    at once and a replacement goes to the supplier."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=50, reorder_point=20) as (
        loop,
        dev,
    ):
        order, receipt = _received_at_dock(loop, dev, 50)
        assert receipt["status"] == "awaiting_putaway"
        assert loop.level()["pending_delivery_qty"] == 50
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 0, "rejected_qty": 50, "reason": "wrong part"},
        )
        assert r.status_code == 201, r.text
        lvl = loop.level()
        assert lvl["pending_delivery_qty"] == 0
        (replacement,) = _replacements(loop, order["id"])
        assert (replacement.supplier_id, replacement.qty) == ("A", 50)
        assert (lvl["on_order_qty"], lvl["position"]) == (50, 68)
        # once inspected it cannot be inspected again
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 50, "rejected_qty": 0},
        )
        assert r.status_code == 409, r.text


def test_case17_what_the_scale_saw_cannot_be_rejected(
    tmp_path: Path, mosquitto
) -> None:
    """Half a delivery is in the bin (its scale saw 20 of 50) when the rest is found
    damaged: at least the 20 are accepted; the other 30 leave the position."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=50, reorder_point=20) as (
        loop,
        dev,
    ):
        order, receipt = _received_at_dock(loop, dev, 50)
        show(loop, dev, 38)  # 20 put away
        wait_until(
            lambda: loop.level()["pending_delivery_qty"] == 30, what="20 confirmed"
        )
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 10, "rejected_qty": 40, "reason": "damaged"},
        )
        assert r.status_code == 422, r.text
        assert "20 of receipt" in r.text
        assert loop.level()["pending_delivery_qty"] == 30
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 20, "rejected_qty": 30, "reason": "damaged"},
        )
        assert r.status_code == 201, r.text
        lvl = loop.level()
        assert (lvl["on_hand"], lvl["pending_delivery_qty"]) == (38, 0)
        wait_until(lambda: loop.order(order["id"])["state"] == "closed", what="closed")
        (replacement,) = _replacements(loop, order["id"])
        assert replacement.qty == 30


def test_case18_a_recount_with_a_hand_in_the_bin_keeps_the_tare(
    tmp_path: Path, mosquitto
) -> None:
    """An outside try: 15 in the bin, a hand presses it (an unstable 40-unit weight),
    the manager counts 15: the tare was re-zeroed on the passing weight, and when the
    scale settled back the bin read 0, with a phantom consumption and a stockout
    alert.  While the scale moves a recount sets the count and keeps the tare; a
    recalibration waits for a stable weight."""
    with plant(tmp_path, mosquitto.url, start=15, order_qty=50, reorder_point=5) as (
        loop,
        dev,
    ):
        tare = loop.admin.get(f"/api/v1/bins/{BIN}").json()["tare_g"]
        dev.count(BIN, 40, stable=False)  # a hand in the bin
        _weight_seen(loop, 40, "the unstable reading")
        r = loop.admin.post(f"/api/v1/bins/{BIN}/recount", json={"on_hand": 15})
        assert r.status_code == 200, r.text
        assert (r.json()["on_hand"], r.json()["tare_g"]) == (15, tare)
        r = loop.admin.post(f"/api/v1/bins/{BIN}/recalibrate", json={"count": 15})
        assert r.status_code == 409, r.text
        assert "stable weight" in r.text
        dev.count(BIN, 15)  # the hand is gone: the scale settles where it was
        # the level was 15 all along, so wait for the settled weight itself
        _weight_seen(loop, 15, "the settled reading")
        assert loop.level()["on_hand"] == 15
        assert loop.orders() == []
        r = loop.admin.get(f"/api/v1/bins/{BIN}/events")
        assert r.status_code == 200, r.text
        assert [e for e in r.json()["events"] if e["kind"] == "consumption"] == []
        # settled: a recalibration is taken now
        r = loop.admin.post(f"/api/v1/bins/{BIN}/recalibrate", json={"count": 15})
        assert r.status_code == 200, r.text
