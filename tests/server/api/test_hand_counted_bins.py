"""A bin nobody weighs (no agent) lives on counts and dock receipts (found by an outside
try: a dock receipt into such a bin left its count alone, so it ordered again at once,
and after a one-step delivery it sat below its reorder point with no order and no
alert).  Through the REST API of a real server."""

from __future__ import annotations

from typing import Any

from tests.server.api.conftest import bin_body, seed_master


def _hand_bin(manager: Any, bin_id: str) -> str:
    """A bin without a scale, counted to 5 (reorder point 50): its order's id."""
    seed_master(manager)
    r = manager.post("/api/v1/bins", json=bin_body(bin_id, agent_id=None, channel=None))
    assert r.status_code == 201, r.text
    r = manager.post(f"/api/v1/bins/{bin_id}/recount", json={"on_hand": 5})
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    assert order is not None
    return str(order)


def _level(manager: Any, bin_id: str) -> dict[str, Any]:
    (lvl,) = [x for x in manager.get("/api/v1/levels").json() if x["bin_id"] == bin_id]
    return lvl


def _orders(manager: Any, bin_id: str) -> list[dict[str, Any]]:
    return list(manager.get("/api/v1/orders", params={"bin": bin_id}).json())


def test_a_dock_receipt_into_a_bin_without_a_scale_counts_the_goods(manager) -> None:
    order = _hand_bin(manager, "HAND-1")
    r = manager.post(f"/api/v1/orders/{order}/receive", json={"qty": 200})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "done"
    lvl = _level(manager, "HAND-1")
    assert (lvl["on_hand"], lvl["pending_delivery_qty"], lvl["position"]) == (
        205,
        0,
        205,
    )
    # no second order: the goods lifted the bin above its reorder point
    assert [o["id"] for o in _orders(manager, "HAND-1")] == [order]
    assert manager.get(f"/api/v1/orders/{order}").json()["state"] == "closed"


def test_a_one_step_delivery_into_a_bin_without_a_scale_counts_the_goods(
    manager,
) -> None:
    order = _hand_bin(manager, "HAND-2")
    r = manager.post(f"/api/v1/orders/{order}/deliver", json={"qty": 200})
    assert r.status_code == 200, r.text
    lvl = _level(manager, "HAND-2")
    assert (lvl["on_hand"], lvl["position"]) == (205, 205)
    assert [o["id"] for o in _orders(manager, "HAND-2")] == [order]
