"""Supplier-facing API over real HTTP: state machine 409s, supplier key isolation,
webhook secret rotation with two valid secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from jitstock.server.db.models import Supplier
from jitstock.server.db.session import transaction
from jitstock.server.supplier.putaway import expire_putaways
from tests.server.server_support import wait_until
from tests.server.supplier.conftest import (
    Loop,
    events_of,
    order_webhooks,
    supplier_loop,
)


def _second_bin_for_b(loop: Loop) -> None:
    assert (
        loop.admin.post(
            "/api/v1/skus", json={"id": "SKU-2", "name": "two", "unit_weight_g": 3.0}
        ).status_code
        == 201
    )
    r = loop.admin.post(
        "/api/v1/bins",
        json={
            "id": "B2",
            "site_id": "plant1",
            "sku_id": "SKU-2",
            "supplier_id": "B",
            "reorder_point": 5,
            "order_qty": 30,
        },
    )
    assert r.status_code == 201, r.text


def test_illegal_transitions_are_409_with_a_message(tmp_path: Path, mosquitto) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        oid = loop.place_order("B1")
        a = loop.supplier_key("A")
        wait_until(lambda: loop.order(oid)["state"] == "sent", what="sent")
        r = a.post(f"/api/v1/orders/{oid}/ship", json={"carrier_ref": "UPS-1"})
        assert (r.status_code, r.json()["state"], r.json()["asn_qty"]) == (
            200,
            "shipped",
            40,
        )
        # shipped: too late to acknowledge, and a supplier can no longer withdraw it
        r = a.post(f"/api/v1/orders/{oid}/ack", json={})
        assert r.status_code == 409
        assert "is shipped" in r.json()["detail"]
        r = a.post(f"/api/v1/orders/{oid}/cancel-request", json={"reason": "oops"})
        assert r.status_code == 409
        assert r.json()["detail"].startswith(
            f"order {oid} is shipped; it cannot become cancelled"
        )
        # received at the dock, then a second receipt and a re-ship are refused
        r = loop.admin.post(f"/api/v1/orders/{oid}/receive", json={"qty": 40})
        assert r.status_code == 201, r.text
        r = loop.admin.post(f"/api/v1/orders/{oid}/receive", json={"qty": 40})
        assert r.status_code == 409
        assert "only an open order can be received" in r.json()["detail"]
        r = a.post(f"/api/v1/orders/{oid}/ship", json={})
        assert r.status_code == 409
        # the goods are put away: the receipt leaves the position
        with transaction(loop.app.session_factory) as s:
            expire_putaways(s, loop.app.clock.time_ms(), window_ms=0)
        # inspection of a receipt that is done (awaiting neither inspection nor put-away)
        (receipt,) = loop.admin.get(f"/api/v1/orders/{oid}/receipts").json()
        r = loop.admin.post(
            f"/api/v1/receipts/{receipt['id']}/inspection",
            json={"accepted_qty": 40, "rejected_qty": 0},
        )
        assert r.status_code == 409
        assert "awaiting inspection or put-away" in r.json()["detail"]
        # the plant cancels an open order; the cancelled order is final
        oid2 = loop.place_order("B1")
        r = loop.admin.post(
            f"/api/v1/orders/{oid2}/cancel-request", json={"reason": "line stopped"}
        )
        assert (r.status_code, r.json()["state"]) == (200, "cancelled")
        for path, body in (("ack", {}), ("ship", {}), ("receive", {"qty": 1})):
            r = loop.admin.post(f"/api/v1/orders/{oid2}/{path}", json=body)
            assert r.status_code == 409, (path, r.text)
            assert "is cancelled" in r.json()["detail"]
        history = loop.admin.get(f"/api/v1/orders/{oid2}/transitions").json()
        assert history[-1]["to_state"] == "cancelled"
        assert (history[-1]["actor"], history[-1]["reason"]) == (
            "bootstrap-admin",
            "line stopped",
        )


def test_supplier_key_sees_only_its_own_orders(tmp_path: Path, mosquitto) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        _second_bin_for_b(loop)
        oid_a = loop.place_order("B1")
        oid_b = loop.place_order("B2")
        a = loop.supplier_key("A")
        b = loop.supplier_key("B")
        # list, read, acknowledge, ship, cancel, history, label: another's order is 404
        assert [o["id"] for o in a.get("/api/v1/orders").json()] == [oid_a]
        assert [o["id"] for o in a.get("/api/v1/supplier/orders").json()] == [oid_a]
        assert [o["id"] for o in b.get("/api/v1/supplier/orders").json()] == [oid_b]
        assert a.get(f"/api/v1/orders/{oid_b}").status_code == 404
        assert a.get(f"/api/v1/orders/{oid_b}").json()["detail"] == (
            f"order {oid_b!r} not found"
        )
        assert a.post(f"/api/v1/orders/{oid_b}/ack", json={}).status_code == 404
        assert a.post(f"/api/v1/orders/{oid_b}/ship", json={}).status_code == 404
        assert (
            a.post(
                f"/api/v1/orders/{oid_b}/cancel-request", json={"reason": "x"}
            ).status_code
            == 404
        )
        assert a.get(f"/api/v1/orders/{oid_b}/transitions").status_code == 404
        assert a.get(f"/api/v1/orders/{oid_b}/label.svg").status_code == 404
        assert a.get("/api/v1/suppliers/B/scorecard").status_code == 404
        assert loop.order(oid_b)["state"] in ("created", "sent")
        # its own order it may acknowledge
        assert a.post(f"/api/v1/orders/{oid_a}/ack", json={}).status_code == 200
        assert a.get("/api/v1/suppliers/A/scorecard").status_code == 200
        # manager and viewer endpoints are 403
        for method, path, body in (
            ("GET", "/api/v1/bins", None),
            ("GET", "/api/v1/levels", None),
            ("GET", "/api/v1/suppliers", None),
            ("POST", f"/api/v1/orders/{oid_a}/deliver", {"qty": 1}),
            ("POST", f"/api/v1/orders/{oid_a}/receive", {"qty": 1}),
            ("PUT", "/api/v1/suppliers/A/items", {"sku_id": "SKU-1"}),
            ("POST", "/api/v1/suppliers/A/keys", {"name": "more"}),
            ("GET", "/api/v1/keys", None),
        ):
            r = a.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
        # plant keys are not supplier keys
        assert loop.admin.get("/api/v1/supplier/orders").status_code == 403


def test_secret_rotation_signs_with_both_secrets(tmp_path: Path, mosquitto) -> None:
    with supplier_loop(tmp_path, mosquitto.url) as loop:
        old = loop.secret_a
        r = loop.admin.post("/api/v1/suppliers/A/rotate-secret")
        assert r.status_code == 200, r.text
        new = r.json()["webhook_secret"]
        assert new != old
        oid = loop.place_order("B1")
        wait_until(lambda: order_webhooks(loop.a), what="the order webhook")
        a = loop.supplier_key("A")
        assert a.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 200
        wait_until(lambda: events_of(loop.a), what="the ack event")
        got = [r for r in loop.a.received if r.verified]
        assert len(got) == 2  # the order and its acknowledgement event
        for req in got:
            assert len(req.headers["webhook-signature"].split()) == 2
            # a receiver on the old secret and one already switched both verify
            assert Webhook(old).verify(req.body, req.headers)
            assert Webhook(new).verify(req.body, req.headers)

        # after the grace period only the new secret signs
        with transaction(loop.app.session_factory) as s:
            s.execute(
                update(Supplier)
                .where(Supplier.id == "A")
                .values(webhook_secret_previous_until_ms=loop.app.clock.time_ms() - 1)
            )
        assert a.post(f"/api/v1/orders/{oid}/ship", json={}).status_code == 200
        wait_until(lambda: len(loop.a.received) >= 3, what="the ship event")
        last = loop.a.received[-1]
        assert len(last.headers["webhook-signature"].split()) == 1
        assert Webhook(new).verify(last.body, last.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(last.body, last.headers)
