"""Defects an outside supplier integration found (a supplier written from /openapi.json
and the README alone, against a running server): each test goes through real HTTP and
real webhook receivers."""

from __future__ import annotations

from pathlib import Path

from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    events_of,
    order_webhooks,
    plant,
    shop_floor,
    show,
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


BAD_URLS = [
    "http://127.0.0.1:1/orders\r\nX-Injected: 1",  # CR/LF: httpx refuses it at send
    "http://127.0.0.1:1/or\tders",
    "http://127.0.0.1:1/\x7f",
    "http://exa mple.com/",
    "http://example.com:99999/",
    "http://:80/",
]


def test_a_webhook_url_the_sender_cannot_use_is_refused(
    tmp_path: Path, mosquitto
) -> None:
    """PATCH and POST /suppliers took "http://host/x\\r\\nX: y" (200), and then every
    order to that supplier failed at dispatch ("bad webhook_url ... non-printable")
    and went elsewhere. Now each is a 422 naming the field, and nothing changes."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        before = loop.admin.get("/api/v1/suppliers/A").json()
        for i, url in enumerate(BAD_URLS):
            r = loop.admin.patch("/api/v1/suppliers/A", json={"webhook_url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["detail"][0]["loc"] == ["body", "webhook_url"]
            r = loop.admin.post(
                "/api/v1/suppliers",
                json={"id": f"new{i}", "name": "N", "webhook_url": url},
            )
            assert r.status_code == 422, (url, r.text)
            assert loop.admin.get(f"/api/v1/suppliers/new{i}").status_code == 404
        assert loop.admin.get("/api/v1/suppliers/A").json() == before
        # a good URL with an IPv6 host and a non-ASCII path is still taken
        good = "http://[::1]:8080/hooks/bestellung-ä"
        r = loop.admin.patch("/api/v1/suppliers/B", json={"webhook_url": good})
        assert r.status_code == 200, r.text
        assert r.json()["webhook_url"] == good


def test_a_lifecycle_event_waits_as_long_as_the_suppliers_retry_after(
    tmp_path: Path, mosquitto
) -> None:
    """The webhook docs: "408, 429 (`Retry-After` honoured) and 5xx are retried".
    order.created did; a lifecycle event came back after the plain backoff (about a
    second with the defaults, half a second here) whatever Retry-After said."""
    with (
        supplier_loop(tmp_path, mosquitto.url) as loop,
        shop_floor(tmp_path, mosquitto.url, 30) as floor,
    ):
        a_key = loop.supplier_key("A")
        wait_until(lambda: loop.level().get("on_hand") == 30, what="first level")
        floor.scale.pick(12)
        (order,) = loop.wait_order()
        wait_until(lambda: order_webhooks(loop.a), what="A to get the order")
        loop.a.script(429, headers={"Retry-After": "4"})
        r = a_key.post(f"/api/v1/orders/{order.id}/ack", json={})
        assert r.status_code == 200, r.text
        acks = wait_until(
            lambda: (
                [
                    x
                    for x in list(loop.a.received)
                    if x.verified and x.payload["type"] == "order.acknowledged"
                ][:2]
                if len(events_of(loop.a, "order.acknowledged")) >= 2
                else None
            ),
            what="the acknowledgement, refused once and then delivered",
        )
        (first, second) = acks
        assert (first.status, second.status) == (429, 200)
        assert first.payload == second.payload  # the same event, the same id
        assert second.at - first.at >= 4.0


def test_the_order_state_a_supplier_reads_is_a_published_enum(
    tmp_path: Path, mosquitto
) -> None:
    """GET /orders?state= takes ten states and the webhooks' order.state is an enum of
    them, but the REST order (OrderPublic, OrderDetail) and its transitions said only
    "string": a supplier generating its client from /openapi.json got no enum."""
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        api = loop.admin.get("/openapi.json").json()
        (param,) = [
            p
            for p in api["paths"]["/api/v1/orders"]["get"]["parameters"]
            if p["name"] == "state"
        ]
        states = next(s["enum"] for s in param["schema"]["anyOf"] if "enum" in s)
        assert len(states) == 10
        schemas = api["components"]["schemas"]
        webhook = schemas["WebhookOrder"]["properties"]["state"]["enum"]
        assert sorted(webhook) == sorted(states)
        for name in ("OrderPublic", "OrderDetail"):
            assert schemas[name]["properties"]["state"].get("enum") == states, name
        transition = schemas["TransitionPublic"]["properties"]
        assert transition["to_state"].get("enum") == states
        assert {"enum": states, "type": "string"} in transition["from_state"]["anyOf"]


def test_every_field_an_order_always_carries_is_required_in_its_schema(
    tmp_path: Path, mosquitto
) -> None:
    """shipped_ms, asn_qty, carrier_ref, closed_ms and bridge_for are in every order the
    API returns (null until set) but were optional in /openapi.json: a generated client
    made them absent-or-null.  Every property of an order is now required, and every
    order returned has exactly those properties."""
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        schemas = loop.admin.get("/openapi.json").json()["components"]["schemas"]
        for name in ("OrderPublic", "OrderDetail"):
            props, required = schemas[name]["properties"], schemas[name]["required"]
            assert sorted(required) == sorted(props), name
        show(loop, dev, 45)
        loop.wait_order()
        (order,) = loop.admin.get("/api/v1/orders").json()
        assert sorted(order) == sorted(schemas["OrderPublic"]["properties"])
