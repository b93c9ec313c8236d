"""Orders through real HTTP: list filters, detail with attempts, ack and deliver state rules."""

from __future__ import annotations

import httpx
from sqlalchemy import select, update

from jitstock.server.db.models import AuditLog, BinEvent, Order, OrderAttempt
from jitstock.server.db.session import transaction
from tests.server.api.conftest import Api, errors_text, measure, seed_master


def _order_for(api: Api, manager: httpx.Client, bin_id: str = "A-01") -> str:
    """Drive a bin below its reorder point (scale reading + rule) and return the order id."""
    measure(api.ctx, bin_id, 10)
    manager.patch(f"/api/v1/bins/{bin_id}", json={"reorder_point": 60})
    orders = manager.get("/api/v1/orders", params={"bin": bin_id}).json()
    assert len(orders) == 1
    return str(orders[0]["id"])


def _set_state(api: Api, order_id: str, state: str) -> None:
    with transaction(api.ctx.session_factory) as s:
        s.execute(update(Order).where(Order.id == order_id).values(state=state))


def test_ack_then_deliver(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    oid = _order_for(api, manager)
    api.ctx.clock.now_ms += 1000
    promised = api.ctx.clock.now_ms + 3_600_000
    r = manager.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": promised})
    assert r.status_code == 200, r.text
    o = r.json()
    assert (o["state"], o["acked_ms"], o["promised_ms"]) == (
        "acknowledged",
        api.ctx.clock.now_ms,
        promised,
    )
    assert o["next_attempt_ms"] is None  # nothing left for the dispatcher to send
    # Acknowledging again is harmless (suppliers retry); a new promise is recorded.
    r = manager.post(
        f"/api/v1/orders/{oid}/ack", json={"promised_ms": promised + 60_000}
    )
    assert (r.status_code, r.json()["promised_ms"]) == (200, promised + 60_000)

    level = manager.get("/api/v1/levels/A-01").json()
    assert (level["on_hand"], level["on_order_qty"], level["position"]) == (
        10,
        200,
        210,
    )
    r = manager.post(f"/api/v1/orders/{oid}/deliver", json={"qty": 190})
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["delivered_qty"]) == ("delivered", 190)
    level = manager.get("/api/v1/levels/A-01").json()
    # Counted as pending until the scale confirms it; no longer on order.
    assert (
        level["on_hand"],
        level["pending_delivery_qty"],
        level["on_order_qty"],
        level["position"],
    ) == (
        10,
        190,
        0,
        200,
    )
    with transaction(api.ctx.session_factory, readonly=True) as s:
        events = s.scalars(select(BinEvent).where(BinEvent.bin_id == "A-01")).all()
        assert [(e.kind, e.delta, e.on_hand_after) for e in events] == [
            ("delivery", 190, 200)
        ]
        actions = s.scalars(
            select(AuditLog.action)
            .where(AuditLog.entity_id == oid)
            .order_by(AuditLog.id)
        ).all()
    assert actions == [
        "order.created",
        "order.acknowledged",
        "order.promise",
        "order.delivered",
    ]


def test_illegal_transitions_are_409(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    oid = _order_for(api, manager)
    assert (
        manager.post(f"/api/v1/orders/{oid}/deliver", json={"qty": 200}).status_code
        == 200
    )
    r = manager.post(f"/api/v1/orders/{oid}/deliver", json={"qty": 200})
    assert r.status_code == 409
    assert "is delivered; only an open order" in r.json()["detail"]
    r = manager.post(f"/api/v1/orders/{oid}/ack", json={})
    assert r.status_code == 409
    assert (
        "is delivered; only a created or sent order can be acknowledged"
        in r.json()["detail"]
    )
    # The second delivery added nothing.
    assert manager.get("/api/v1/levels/A-01").json()["pending_delivery_qty"] == 200

    for state in ("failed", "cancelled"):
        _set_state(api, oid, state)
        assert manager.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 409
        assert (
            manager.post(f"/api/v1/orders/{oid}/deliver", json={"qty": 1}).status_code
            == 409
        )


def test_ack_from_sent_and_bad_bodies(
    api: Api, manager: httpx.Client, viewer: httpx.Client
) -> None:
    seed_master(manager)
    oid = _order_for(api, manager)
    _set_state(api, oid, "sent")
    r = manager.post(f"/api/v1/orders/{oid}/deliver", json={"qty": 0})
    assert (r.status_code, errors_text(r)) == (
        422,
        "qty: Input should be greater than 0",
    )
    r = manager.post(f"/api/v1/orders/{oid}/deliver", json={})
    assert errors_text(r) == "qty: field required"
    r = manager.post(f"/api/v1/orders/{oid}/ack", json={"promised_ms": 5})
    assert r.status_code == 422
    assert errors_text(r).startswith("promised_ms: 5 is before the order was created")
    assert viewer.post(f"/api/v1/orders/{oid}/ack", json={}).status_code == 403
    assert (
        manager.post(f"/api/v1/orders/{oid}/ack", json={}).json()["state"]
        == "acknowledged"
    )
    r = manager.post("/api/v1/orders/no-such-order/ack", json={})
    assert (r.status_code, r.json()["detail"]) == (
        404,
        "order 'no-such-order' not found",
    )


def test_list_filters_and_detail_with_attempts(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=3)
    ids = [_order_for(api, manager, b) for b in ("A-01", "A-02", "A-03")]
    _set_state(api, ids[1], "sent")
    with transaction(api.ctx.session_factory) as s:
        s.add(
            OrderAttempt(
                order_id=ids[1],
                n=1,
                at_ms=1,
                status_code=503,
                error="HTTP 503",
                latency_ms=12.5,
            )
        )
        s.add(
            OrderAttempt(
                order_id=ids[1],
                n=2,
                at_ms=2,
                status_code=200,
                error=None,
                latency_ms=8.0,
            )
        )
    assert [
        o["id"] for o in manager.get("/api/v1/orders", params={"state": "sent"}).json()
    ] == [ids[1]]
    assert len(manager.get("/api/v1/orders", params={"state": "created"}).json()) == 2
    assert len(manager.get("/api/v1/orders", params={"supplier": "acme"}).json()) == 3
    assert manager.get("/api/v1/orders", params={"supplier": "other"}).json() == []
    assert len(manager.get("/api/v1/orders", params={"limit": 2}).json()) == 2
    detail = manager.get(f"/api/v1/orders/{ids[1]}").json()
    assert [(a["n"], a["status_code"]) for a in detail["attempt_log"]] == [
        (1, 503),
        (2, 200),
    ]
    assert detail["trigger"]["position"]["on_hand"] == 10
    r = manager.get("/api/v1/orders", params={"state": "lost"})
    assert r.status_code == 422
    assert errors_text(r).startswith("state: Input should be 'created'")
    r = manager.get("/api/v1/orders", params={"limit": 0})
    assert errors_text(r) == "limit: Input should be greater than or equal to 1"
