"""Issue 5 acceptance: supplier A never acknowledges; after its deadline supplier B gets a
bridging order, A's order is cancelled through its webhook, and exactly one delivery comes."""

from __future__ import annotations

from pathlib import Path

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    events_of,
    order_webhooks,
    shop_floor,
    supplier_loop,
)

# Checked this often in the test (the default is 30 s): deadlines here are a second.
ESCALATION_INTERVAL_S = 0.2


def test_unacknowledged_order_escalates_to_the_fallback(
    tmp_path: Path, mosquitto, db_url: str
) -> None:
    # both backends: the escalator re-reads the order locked (FOR NO KEY UPDATE on
    # PostgreSQL) and judges it again before it changes anything (escalation.py)
    with (
        supplier_loop(
            tmp_path,
            mosquitto.url,
            escalation_interval_s=ESCALATION_INTERVAL_S,
            db_url=db_url,
        ) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        r = loop.admin.patch(
            "/api/v1/suppliers/A/loop-settings", json={"ack_deadline_s": 1}
        )
        assert r.status_code == 200, r.text
        # A quotes a minute: in time for the bin (no "late" escalation), if it answered
        r = loop.admin.put(
            "/api/v1/suppliers/A/items",
            json={"sku_id": "SKU-1", "priority": 1, "quoted_lead_time_s": 60},
        )
        assert r.status_code == 200, r.text
        wait_until(lambda: loop.level().get("on_hand") == 30, what="first level")
        floor.scale.pick(12)
        (first,) = loop.wait_order()
        assert first.supplier_id == "A"
        wait_until(lambda: order_webhooks(loop.a), what="A to get the order")

        # A stays silent: B gets the bridging order, A's is cancelled by webhook
        wait_until(lambda: order_webhooks(loop.b), what="B's bridging order")
        (bridge,) = order_webhooks(loop.b)
        assert bridge["qty"] == 40
        # B learns that it is urgent, not whose order it bridges nor the plant's numbers
        assert bridge["reason"] == "expedite"
        assert first.id not in str(bridge)
        assert (loop.orders(supplier_id="B")[0].trigger or {})["escalated_from"] == (
            first.id
        )
        cancelled = wait_until(
            lambda: events_of(loop.a, "order.cancelled"), what="A's cancellation"
        )
        assert [e["data"]["order"]["id"] for e in cancelled] == [first.id]
        # ... and A is not told who took its order over
        assert cancelled[0]["data"]["note"] == (
            "escalated (ack_deadline): another supplier covers the demand"
        )
        assert loop.order(first.id)["state"] == "cancelled"

        # exactly one delivery is expected: one open order, B's
        open_orders = [
            o
            for o in loop.orders()
            if o.state in ("created", "sent", "acknowledged", "shipped")
        ]
        assert [(o.supplier_id, o.qty) for o in open_orders] == [("B", 40)]
        level = loop.level()
        assert (level["on_order_qty"], level["position"]) == (40, 18 + 40)

        escalations = loop.admin.get("/api/v1/escalations").json()
        assert [
            (e["order_id"], e["reason"], e["action"], e["fallback_supplier_id"])
            for e in escalations
        ] == [(first.id, "ack_deadline", "cancelled", "B")]
        alerts = loop.admin.get("/api/v1/supply-alerts", params={"kind": "escalation"})
        assert [a["order_id"] for a in alerts.json()] == [first.id]
        audit = loop.admin.get(
            "/api/v1/audit", params={"entity": "order", "entity_id": first.id}
        )
        if audit.status_code == 200:
            assert "order.escalated" in [x["action"] for x in audit.json()]

        # B ships and delivers: the refill receives B's order by weight (its ship notice
        # tells it from A's goods, which may still come); A's stays cancelled
        bridge_id = bridge["id"]
        r = loop.supplier_key("B").post(
            f"/api/v1/orders/{bridge_id}/ship", json={"qty": 40}
        )
        assert r.status_code == 200, r.text
        floor.scale.refill(40)
        wait_until(lambda: loop.order(bridge_id)["state"] == "closed", what="B closed")
        assert loop.order(first.id)["state"] == "cancelled"
        assert loop.level()["on_hand"] == 58
        card = loop.admin.get("/api/v1/suppliers/A/scorecard").json()
        assert (card["escalations"], card["orders_cancelled"]) == (1, 1)
