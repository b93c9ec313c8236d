"""Defects an outside supplier integration found (a supplier written from /openapi.json
and the README alone, against a running server): each test goes through real HTTP and
real webhook receivers."""

from __future__ import annotations

from pathlib import Path

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    events_of,
    order_webhooks,
    shop_floor,
    supplier_loop,
)


def test_a_supplier_reads_its_escalated_orders_history_without_the_fallback(
    tmp_path: Path, mosquitto
) -> None:
    """README: "an escalation's cancel note names no other supplier". The webhook
    kept that, but GET /orders/{id}/transitions (open to supplier keys) said
    "escalated (ack_deadline) to B", with the escalation's figures in its detail."""
    with (
        supplier_loop(tmp_path, mosquitto.url, escalation_interval_s=0.2) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        r = loop.admin.patch(
            "/api/v1/suppliers/A/loop-settings", json={"ack_deadline_s": 1}
        )
        assert r.status_code == 200, r.text
        a_key = loop.supplier_key("A")
        wait_until(lambda: loop.level().get("on_hand") == 30, what="first level")
        floor.scale.pick(12)
        (first,) = loop.wait_order()
        wait_until(lambda: order_webhooks(loop.b), what="B's bridging order")
        wait_until(lambda: events_of(loop.a, "order.cancelled"), what="A's cancel")

        seen = a_key.get(f"/api/v1/orders/{first.id}/transitions")
        assert seen.status_code == 200, seen.text
        (esc,) = [t for t in seen.json() if t["actor"] == "escalation"]
        assert esc["to_state"] == "cancelled"
        assert esc["reason"] == (
            "escalated (ack_deadline): another supplier covers the demand"
        )
        assert esc["detail"] is None
        # the plant still reads the whole story
        full = loop.admin.get(f"/api/v1/orders/{first.id}/transitions").json()
        (esc,) = [t for t in full if t["actor"] == "escalation"]
        assert esc["reason"] == "escalated (ack_deadline) to B"
        assert esc["detail"]["remaining"] == 40
