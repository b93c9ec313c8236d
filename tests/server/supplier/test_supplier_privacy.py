"""What a supplier key reads of the plant's people (found by an outside try): an order's
transitions and receipts name the supplier's own keys and the plant's software, never a
plant person.  Through the REST API of a real server."""

from __future__ import annotations

from pathlib import Path

from tests.server.supplier.conftest import Loop, plant, show


def _manager(loop: Loop, name: str):
    """A plant key named after a person (as a dashboard sign-in is)."""
    r = loop.admin.post("/api/v1/keys", json={"name": name, "role": "manager"})
    assert r.status_code == 201, r.text
    return loop.client(r.json()["key"])


def test_supplier_keys_see_plant_people_as_plant(tmp_path: Path, mosquitto) -> None:
    with plant(tmp_path, mosquitto.url, start=60, order_qty=100, reorder_point=50) as (
        loop,
        dev,
    ):
        show(loop, dev, 45)
        order = loop.wait_order()[0].id
        a = loop.supplier_key("A")
        r = a.post(f"/api/v1/orders/{order}/ship", json={"qty": 100})
        assert r.status_code == 200, r.text
        jane = _manager(loop, "Jane Doe")
        r = jane.post(f"/api/v1/orders/{order}/receive", json={"qty": 100})
        assert r.status_code == 201, r.text

        def actors(client, what: str) -> list[str]:
            r = client.get(f"/api/v1/orders/{order}/{what}")
            assert r.status_code == 200, r.text
            return [row["actor"] for row in r.json()]

        plant_view = actors(loop.admin, "transitions")
        assert "Jane Doe" in plant_view
        assert "A-erp" in plant_view
        supplier_view = actors(a, "transitions")
        assert len(supplier_view) == len(plant_view)
        assert supplier_view == [
            "plant" if x == "Jane Doe" else x for x in plant_view
        ], supplier_view
        assert {"reorder", "dispatcher", "A-erp", "plant"} <= set(supplier_view)
        assert actors(loop.admin, "receipts") == ["Jane Doe"]
        assert actors(a, "receipts") == ["plant"]
        # a revoked key's actions still show under its name (the history outlives it)
        r = loop.admin.get("/api/v1/keys")
        (erp,) = [k for k in r.json() if k["name"] == "A-erp"]
        assert loop.admin.delete(f"/api/v1/keys/{erp['id']}").status_code == 204
        assert "A-erp" in actors(loop.supplier_key("A"), "transitions")
