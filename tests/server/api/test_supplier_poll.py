"""``GET /supplier/orders?updated_after=T`` is a poll for news: every order changed after
T, whatever state it ended in (found by an outside try: the default filter of open states
still applied, so an order cancelled or closed since the last poll was never reported)."""

from __future__ import annotations

from typing import Any

import httpx

from jitstock.server.db.session import transaction
from jitstock.server.supplier.lifecycle import transition
from tests.server.api.conftest import measure, seed_master

MINE = "/api/v1/supplier/orders"


def _ids(client: httpx.Client, **params: object) -> set[str]:
    r = client.get(MINE, params=params)
    assert r.status_code == 200, r.text
    return {o["id"] for o in r.json()}


def test_a_poll_with_updated_after_lists_cancelled_and_closed_orders(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    admin = api.client(api.admin_key)
    seed_master(admin, bins=3)
    r = admin.post("/api/v1/suppliers/acme/keys", json={"name": "acme-erp"})
    assert r.status_code == 201, r.text
    acme = api.client(r.json()["key"])
    for bin_id in ("A-01", "A-02", "A-03"):
        measure(api.ctx, bin_id, 10)
        r = admin.patch(f"/api/v1/bins/{bin_id}", json={"reorder_point": 60})
        assert r.status_code == 200, r.text
    orders = {o["bin_id"]: o["id"] for o in admin.get("/api/v1/orders").json()}
    cancelled, closed, untouched = orders["A-01"], orders["A-02"], orders["A-03"]
    api.ctx.clock.now_ms += 1_000
    last_poll = api.ctx.clock.time_ms()
    assert _ids(acme, updated_after=last_poll) == set()
    api.ctx.clock.now_ms += 1_000
    r = acme.post(
        f"/api/v1/orders/{cancelled}/cancel-request", json={"reason": "no stock"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    with transaction(api.ctx.session_factory) as s:
        for to in ("received", "closed"):
            transition(s, closed, to, actor="test", now_ms=api.ctx.clock.time_ms())
    news = _ids(acme, updated_after=last_poll)
    assert {cancelled, closed} <= news
    assert untouched not in news
    # without updated_after the default is still the open orders; state= still filters
    assert cancelled not in _ids(acme)
    assert closed not in _ids(acme)
    assert untouched in _ids(acme)
    assert _ids(acme, updated_after=last_poll, state="cancelled") == {cancelled}
    assert _ids(acme, updated_after=last_poll, state="closed") == {closed}
    assert _ids(acme, updated_after=api.ctx.clock.time_ms()) == set()


def test_a_delivery_recorded_by_the_plant_is_news_too(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    admin = api.client(api.admin_key)
    seed_master(admin, bins=1)
    r = admin.post("/api/v1/suppliers/acme/keys", json={"name": "acme-erp"})
    assert r.status_code == 201, r.text
    acme = api.client(r.json()["key"])
    measure(api.ctx, "A-01", 10)
    r = admin.patch("/api/v1/bins/A-01", json={"reorder_point": 60})
    assert r.status_code == 200, r.text
    (order,) = admin.get("/api/v1/orders").json()
    api.ctx.clock.now_ms += 1_000
    last_poll = api.ctx.clock.time_ms()
    api.ctx.clock.now_ms += 1_000
    r = admin.post(f"/api/v1/orders/{order['id']}/deliver", json={"qty": order["qty"]})
    assert r.status_code == 200, r.text
    assert _ids(acme, updated_after=last_poll) == {order["id"]}
    # the order's own history shows the delivery as well
    r = admin.get(f"/api/v1/orders/{order['id']}/transitions")
    assert r.status_code == 200, r.text
    assert r.json()[-1]["to_state"] == "delivered", r.json()


def test_an_inspection_is_news_to_the_supplier(make_api: Any, db_url: str) -> None:
    """The plant inspects a receipt (the supplier is sent receipt.inspected): a poll with
    updated_after lists the order (an outside try found it missing: the inspection
    changes no state, so it left no transition)."""
    api = make_api(db_url=db_url)
    admin = api.client(api.admin_key)
    seed_master(admin, bins=1)
    r = admin.post("/api/v1/suppliers/acme/keys", json={"name": "acme-erp"})
    assert r.status_code == 201, r.text
    acme = api.client(r.json()["key"])
    r = admin.patch("/api/v1/suppliers/acme/loop-settings", json={"inspect_every_n": 1})
    assert r.status_code == 200, r.text
    measure(api.ctx, "A-01", 10)
    r = admin.patch("/api/v1/bins/A-01", json={"reorder_point": 60})
    assert r.status_code == 200, r.text
    (order,) = admin.get("/api/v1/orders").json()
    r = admin.post(f"/api/v1/orders/{order['id']}/receive", json={"qty": order["qty"]})
    assert r.status_code == 201, r.text
    (receipt,) = admin.get(f"/api/v1/orders/{order['id']}/receipts").json()
    assert receipt["status"] == "awaiting_inspection", receipt
    api.ctx.clock.now_ms += 1_000
    last_poll = api.ctx.clock.time_ms()
    assert _ids(acme, updated_after=last_poll) == set()
    api.ctx.clock.now_ms += 1_000
    inspected_ms = api.ctx.clock.time_ms()
    r = admin.post(
        f"/api/v1/receipts/{receipt['id']}/inspection",
        json={
            "accepted_qty": order["qty"] - 60,
            "rejected_qty": 60,
            "reason": "bent",
        },
    )
    assert r.status_code == 201, r.text
    # the inspected order is news (its replacement for the 60 rejected is news too)
    assert order["id"] in _ids(acme, updated_after=last_poll)
    assert order["id"] in _ids(acme, updated_after=inspected_ms - 1)
    assert order["id"] not in _ids(acme, updated_after=inspected_ms)
