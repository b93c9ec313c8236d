"""The API's transactions on both state DBs: savepoints (CSV import), compare-and-set order
transitions and relative updates behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.server.api.conftest import measure, seed_master


def test_import_and_order_flow(make_api: Any, db_url: str) -> None:
    api = make_api(db_url=db_url)
    manager = api.client(api.new_key("manager", "line-manager"))
    seed_master(manager, bins=2)
    bad = "id,site_id,sku_id,reorder_point\nC-1,plant1,M6-bolt,5\nC-2,plant1,ghost,5\n"
    r = manager.post(
        "/api/v1/bins/import", content=bad, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 422
    assert [e["msg"] for e in r.json()["detail"]] == [
        "row 3, column sku_id: SKU 'ghost' does not exist"
    ]
    assert manager.get("/api/v1/bins/C-1").status_code == 404

    measure(api.ctx, "A-01", 10)
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 60})
    (order,) = manager.get("/api/v1/orders").json()
    assert (
        manager.post(f"/api/v1/orders/{order['id']}/ack", json={}).json()["state"]
        == "acknowledged"
    )
    assert (
        manager.post(
            f"/api/v1/orders/{order['id']}/deliver", json={"qty": 200}
        ).status_code
        == 200
    )
    assert (
        manager.post(
            f"/api/v1/orders/{order['id']}/deliver", json={"qty": 200}
        ).status_code
        == 409
    )
    level = manager.get("/api/v1/levels/A-01").json()
    assert (level["pending_delivery_qty"], level["position"]) == (200, 210)
    assert (
        manager.delete("/api/v1/bins/A-01").status_code == 409
    )  # it has an order: pause instead
    assert (
        manager.patch("/api/v1/bins/A-01", json={"paused": True}).json()["paused"]
        is True
    )
