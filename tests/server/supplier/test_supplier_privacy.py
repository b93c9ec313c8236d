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


def test_no_key_takes_a_name_a_supplier_reads_as_someone_else(
    tmp_path: Path, mosquitto
) -> None:
    """An outside try: a plant key named ``escalation`` (or like a supplier's own key,
    or ``email-link:B``) acted on B's order, and B read the action as the plant's
    escalation, or as its own.  Such names are refused; nothing is issued."""
    with plant(tmp_path, mosquitto.url, start=60) as (loop, _dev):
        loop.supplier_key("A")  # A's key "A-erp"
        before = len(loop.admin.get("/api/v1/keys").json())
        for name in ("escalation", "Dispatcher", "plant", "email-link:B", "A-erp"):
            r = loop.admin.post("/api/v1/keys", json={"name": name, "role": "manager"})
            assert r.status_code == 409, (name, r.text)
            assert "acts under" in r.text or "reserved" in r.text or "party" in r.text
        r = loop.admin.post("/api/v1/suppliers/B/keys", json={"name": "a-ERP"})
        assert r.status_code == 409, r.text
        r = loop.admin.post("/api/v1/suppliers/B/keys", json={"name": "session:x"})
        assert r.status_code == 409, r.text
        assert len(loop.admin.get("/api/v1/keys").json()) == before
        # one party may have several keys of one name (a second ERP key of A's)
        r = loop.admin.post("/api/v1/suppliers/A/keys", json={"name": "A-erp"})
        assert r.status_code == 201, r.text
