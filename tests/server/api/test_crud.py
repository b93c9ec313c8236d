"""CRUD of sites, SKUs, suppliers and bins through real HTTP: round trips, references, audit."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from jitstock.server.db.models import Supplier
from jitstock.server.db.session import transaction
from jitstock.server.webhooks import previous_secret
from tests.server.api.conftest import (
    SITE,
    SKU,
    SUPPLIER,
    Api,
    bin_body,
    errors_text,
    measure,
    seed_master,
)


def test_master_data_round_trip(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=2)
    assert manager.get("/api/v1/sites").json() == [
        {**SITE, "address": None, "dock": None}
    ]
    assert manager.get(f"/api/v1/skus/{SKU['id']}").json() == {**SKU, "barcode": None}
    b = manager.get("/api/v1/bins/A-01").json()
    assert b["sku_id"] == SKU["id"]
    assert b["reorder_point"] == 50
    assert b["on_hand"] == 0
    assert b["last_seen_ms"] is None
    assert [
        x["id"] for x in manager.get("/api/v1/bins", params={"site": "plant1"}).json()
    ] == ["A-01", "A-02"]
    assert manager.get("/api/v1/bins", params={"site": "elsewhere"}).json() == []

    r = manager.patch(
        "/api/v1/bins/A-01",
        json={"reorder_point": 60, "area": "assembly", "unit_weight_g": 4.1},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["reorder_point"], r.json()["area"], r.json()["unit_weight_g"]) == (
        60,
        "assembly",
        4.1,
    )
    r = manager.patch(
        "/api/v1/bins/A-01", json={"unit_weight_g": None}
    )  # back to the SKU's
    assert r.json()["unit_weight_g"] is None
    r = manager.patch("/api/v1/sites/plant1", json={"name": "Plant One"})
    assert r.json() == {
        "id": "plant1",
        "name": "Plant One",
        "address": None,
        "dock": None,
    }
    # the ship-to suppliers see in their orders (issue 13)
    r = manager.patch(
        "/api/v1/sites/plant1", json={"address": "Werkstr. 1", "dock": "4"}
    )
    assert (r.json()["address"], r.json()["dock"]) == ("Werkstr. 1", "4")

    assert manager.delete("/api/v1/bins/A-02").status_code == 204
    assert manager.get("/api/v1/bins/A-02").status_code == 404
    assert [x["id"] for x in manager.get("/api/v1/bins").json()] == ["A-01"]


def test_bin_configuration_reaches_the_ingest_registry(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    cal = api.ctx.registry.calibration("A-01")
    assert cal is not None
    assert (cal.agent_id, cal.tare_g, cal.unit_weight_g) == ("pi-1", 500.0, 4.0)
    manager.patch("/api/v1/bins/A-01", json={"tare_g": 650.0})
    assert api.ctx.registry.calibration("A-01").tare_g == 650.0  # type: ignore[union-attr]
    manager.patch(f"/api/v1/skus/{SKU['id']}", json={"unit_weight_g": 5.0})
    assert api.ctx.registry.calibration("A-01").unit_weight_g == 5.0  # type: ignore[union-attr]
    manager.delete("/api/v1/bins/A-01")
    assert api.ctx.registry.calibration("A-01") is None


def test_recalibration_recounts_from_the_last_weight(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    measure(api.ctx, "A-01", 100)  # 500 g tare + 100 x 4 g
    r = manager.patch("/api/v1/bins/A-01", json={"unit_weight_g": 8.0})
    assert r.json()["on_hand"] == 50


def test_raising_the_reorder_point_above_the_level_orders_at_once(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    measure(api.ctx, "A-01", 80)
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 90})
    orders = manager.get("/api/v1/orders").json()
    assert [(o["bin_id"], o["qty"], o["state"]) for o in orders] == [
        ("A-01", 200, "created")
    ]
    assert api.ctx.dispatcher.wakes == 1
    # A second change does not order again: the open order counts in the position.
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 95})
    assert len(manager.get("/api/v1/orders").json()) == 1


def test_switching_a_supplier_item_on_orders_for_bins_already_waiting(
    api: Api, manager: httpx.Client
) -> None:
    """A bin at or below its reorder point whose SKU had no active supplier is ordered
    for when an item is switched on, not at its scale's next reading."""
    seed_master(manager)
    r = manager.patch("/api/v1/bins/A-01", json={"supplier_id": None})
    assert r.status_code == 200, r.text
    items = f"/api/v1/suppliers/{SUPPLIER['id']}/items"
    r = manager.put(items, json={"sku_id": SKU["id"], "active": False})
    assert r.status_code == 200, r.text
    measure(api.ctx, "A-01", 10)  # below the reorder point (50), nobody to order from
    assert manager.get("/api/v1/orders").json() == []
    wakes = api.ctx.dispatcher.wakes
    r = manager.put(items, json={"sku_id": SKU["id"], "active": True})
    assert r.status_code == 200, r.text
    orders = manager.get("/api/v1/orders").json()
    assert [(o["bin_id"], o["supplier_id"], o["state"]) for o in orders] == [
        ("A-01", SUPPLIER["id"], "created")
    ]
    assert api.ctx.dispatcher.wakes == wakes + 1
    # switching it on again orders nothing more: the open order counts
    manager.put(items, json={"sku_id": SKU["id"], "active": True})
    assert len(manager.get("/api/v1/orders").json()) == 1


def test_a_new_bin_without_readings_does_not_order(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 100})
    assert manager.get("/api/v1/orders").json() == []


def test_supplier_secret_shown_once_and_never_again(
    api: Api, manager: httpx.Client
) -> None:
    r = manager.post("/api/v1/suppliers", json=SUPPLIER)
    assert r.status_code == 201
    secret = r.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    got = manager.get("/api/v1/suppliers/acme").json()
    assert got["webhook_secret_set"] is True
    assert "webhook_secret" not in got
    assert secret not in manager.get("/api/v1/suppliers").text
    rotated = manager.post("/api/v1/suppliers/acme/rotate-secret").json()[
        "webhook_secret"
    ]
    assert rotated.startswith("whsec_")
    assert rotated != secret
    audit = manager.get("/api/v1/audit", params={"entity": "supplier"}).text
    assert secret not in audit
    assert rotated not in audit


def test_a_secret_set_by_patch_is_a_cut_over_after_rotations(
    api: Api, manager: httpx.Client
) -> None:
    """Rotations keep the previous secret signing for a while; a secret PATCHed in
    replaces the current one at once, and no earlier secret goes on signing."""
    manager.post("/api/v1/suppliers", json=SUPPLIER)
    first = manager.post("/api/v1/suppliers/acme/rotate-secret").json()
    second = manager.post("/api/v1/suppliers/acme/rotate-secret").json()
    assert first["webhook_secret"] != second["webhook_secret"]
    with transaction(api.ctx.session_factory, readonly=True) as s:
        row = s.get(Supplier, "acme")
        assert row.webhook_secret_previous == first["webhook_secret"]
    mine = "whsec_" + base64.b64encode(b"k" * 32).decode()
    r = manager.patch("/api/v1/suppliers/acme", json={"webhook_secret": mine})
    assert r.status_code == 200, r.text
    with transaction(api.ctx.session_factory, readonly=True) as s:
        row = s.get(Supplier, "acme")
        assert row.webhook_secret == mine
        assert row.webhook_secret_previous is None
        assert row.webhook_secret_previous_until_ms is None
        assert previous_secret(row, api.ctx.clock.time_ms()) is None


def test_the_published_schema_does_not_offer_null_where_it_is_refused(
    api: Api, manager: httpx.Client
) -> None:
    schema = manager.get("/openapi.json").json()["components"]["schemas"]
    assert schema["SupplierUpdate"]["properties"]["name"]["type"] == "string"
    assert "anyOf" not in schema["SkuUpdate"]["properties"]["unit_weight_g"]
    r = manager.patch("/api/v1/sites/nowhere", json={"name": None})
    assert r.status_code == 422
    # a field that may be cleared still offers null
    dock = schema["SiteUpdate"]["properties"]["dock"]["anyOf"]
    assert {"type": "null"} in dock


def test_bin_references_are_checked_naming_the_field(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"site_id": "nowhere"}, "site_id", "site 'nowhere' does not exist"),
        ({"sku_id": "nope"}, "sku_id", "SKU 'nope' does not exist"),
        ({"supplier_id": "ghost"}, "supplier_id", "supplier 'ghost' does not exist"),
        ({"unit_weight_g": 0}, "unit_weight_g", "greater than or equal to 0.001"),
        ({"unit_weight_g": -3.5}, "unit_weight_g", "greater than or equal to 0.001"),
        ({"reorder_point": -1}, "reorder_point", "greater than or equal to 0"),
        ({"reorder_point": 500}, "reorder_point", "exceeds the bin's capacity 400"),
        ({"tare_g": "heavy"}, "tare_g", "valid number"),
        ({"id": "has space"}, "id", "pattern"),
        ({"colour": "red"}, "colour", "unknown field"),
        (
            {"channel": "ch-x", "agent_id": None},
            "agent_id",
            "required when channel is set",
        ),
    ]
    for over, field, text in cases:
        r = manager.post("/api/v1/bins", json=bin_body("B-09", **over))
        assert r.status_code == 422, (over, r.text)
        msg = errors_text(r)
        assert msg.startswith(f"{field}: "), (over, msg)
        assert text in msg, (over, msg)
        assert r.json()["detail"][0]["loc"][-1] == field
    body = bin_body("B-09")
    del body["sku_id"]
    r = manager.post("/api/v1/bins", json=body)
    assert errors_text(r) == "sku_id: field required"
    r = manager.patch("/api/v1/bins/A-01", json={"reorder_point": None})
    assert r.status_code == 422
    assert errors_text(r) == "reorder_point: may not be null"
    r = manager.post(
        "/api/v1/bins",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert "not valid JSON" in errors_text(r)
    assert manager.get("/api/v1/bins/B-09").status_code == 404


def test_conflicts_and_missing_entities(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    r = manager.post("/api/v1/sites", json=SITE)
    assert (r.status_code, r.json()["detail"]) == (409, "site 'plant1' already exists")
    r = manager.post("/api/v1/bins", json=bin_body("A-02", channel="ch-A-01"))
    assert r.status_code == 409
    assert (
        "channel: 'ch-A-01' of agent 'pi-1' already feeds bin 'A-01'"
        in r.json()["detail"]
    )
    r = manager.delete(f"/api/v1/skus/{SKU['id']}")
    assert (r.status_code, r.json()["detail"]) == (
        409,
        "SKU 'M6-bolt' is still used by 1 bins",
    )
    assert manager.delete("/api/v1/sites/plant1").status_code == 409
    assert manager.delete("/api/v1/suppliers/acme").status_code == 409
    r = manager.patch("/api/v1/bins/nope", json={"area": "x"})
    assert (r.status_code, r.json()["detail"]) == (404, "bin 'nope' not found")
    assert manager.get("/api/v1/skus/nope").status_code == 404
    manager.post(
        "/api/v1/skus",
        json={
            "id": "other",
            "name": "Other",
            "unit_weight_g": 1,
            "barcode": "4006381333931",
        },
    )
    r = manager.post(
        "/api/v1/skus",
        json={
            "id": "dup",
            "name": "Dup",
            "unit_weight_g": 1,
            "barcode": "4006381333931",
        },
    )
    assert r.status_code == 409
    assert "already belongs to SKU 'other'" in r.json()["detail"]


def test_agent_must_belong_to_the_bins_site(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    manager.post("/api/v1/sites", json={"id": "plant2", "name": "Plant 2"})
    r = manager.post(
        "/api/v1/bins", json=bin_body("P2-01", site_id="plant2")
    )  # pi-1 is plant1's
    assert r.status_code == 422
    assert (
        errors_text(r)
        == "agent_id: agent 'pi-1' belongs to site 'plant1', not 'plant2'"
    )


def test_every_mutation_is_audited_with_the_key_name(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager)
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 70})
    manager.delete("/api/v1/bins/A-01")
    rows = manager.get("/api/v1/audit", params={"limit": 50}).json()
    mine = [(r["action"], r["entity_id"]) for r in rows if r["actor"] == "line-manager"]
    assert mine[::-1] == [
        ("site.create", "plant1"),
        ("sku.create", "M6-bolt"),
        ("supplier.create", "acme"),
        ("bin.create", "A-01"),
        ("bin.update", "A-01"),
        ("bin.delete", "A-01"),
    ]
    update = next(r for r in rows if r["action"] == "bin.update")
    assert update["detail"] == {"reorder_point": {"from": 50, "to": 70}}
    assert any(
        r["action"] == "key.create" and r["actor"] == "bootstrap-admin" for r in rows
    )
