"""Integer fields of request bodies take an integral float (found by an outside try:
`{"promised_ms": 1796088171000.0}` was a 422, though the published schema's
`type: integer` allows it). Only an exact one (|x| <= 2**53, within the field's bounds);
1.5, "10", true, NaN and 1e300 are still 422, and a refused request changes nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.api.conftest import START_MS, measure, seed_master

DAY_MS = 86_400_000
BAD = [10.5, "10", True, 1e300, 2.0**64, -1.0, float(2**53 + 2)]


def _post_raw(client: httpx.Client, url: str, text: str) -> httpx.Response:
    return client.post(url, content=text, headers={"content-type": "application/json"})


def _orders(api: Any, admin: httpx.Client) -> dict[str, dict[str, Any]]:
    seed_master(admin, bins=3)
    for bin_id in ("A-01", "A-02", "A-03"):
        measure(api.ctx, bin_id, 10)
        r = admin.patch(f"/api/v1/bins/{bin_id}", json={"reorder_point": 60})
        assert r.status_code == 200, r.text
    return {o["bin_id"]: o for o in admin.get("/api/v1/orders").json()}


def test_integer_fields_take_integral_floats_and_refuse_the_rest(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    admin = api.client(api.admin_key)
    orders = _orders(api, admin)
    ack, ship, recv = (orders[b]["id"] for b in ("A-01", "A-02", "A-03"))
    before = {o["id"]: o for o in orders.values()}

    def unchanged(oid: str) -> None:
        assert (
            admin.get(f"/api/v1/orders/{oid}").json()["state"] == (before[oid]["state"])
        )
        now = admin.get(f"/api/v1/orders/{oid}").json()
        for field in ("promised_ms", "asn_qty", "shipped_ms", "delivered_qty"):
            assert now[field] == before[oid][field], field

    promise = START_MS + DAY_MS
    cases = [
        (f"/api/v1/orders/{ack}/ack", "promised_ms", {}),
        (f"/api/v1/orders/{ship}/ship", "qty", {}),
        (f"/api/v1/orders/{ship}/ship", "expected_ms", {"qty": 200}),
        (f"/api/v1/orders/{recv}/receive", "qty", {}),
    ]
    for url, field, rest in cases:
        oid = url.split("/")[4]
        for bad in BAD:
            r = admin.post(url, json={**rest, field: bad})
            assert r.status_code == 422, (url, field, bad, r.text)
            assert field in r.text, r.text
            unchanged(oid)
        for raw in ("NaN", "Infinity", "1e999"):
            body = (
                "{"
                + ", ".join(
                    [*(f'"{k}": {v}' for k, v in rest.items()), f'"{field}": {raw}']
                )
                + "}"
            )
            r = _post_raw(admin, url, body)
            assert r.status_code == 422, (url, field, raw, r.text)
            unchanged(oid)

    r = admin.post(f"/api/v1/orders/{ack}/ack", json={"promised_ms": float(promise)})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "acknowledged"
    assert r.json()["promised_ms"] == promise
    assert type(r.json()["promised_ms"]) is int

    r = admin.post(
        f"/api/v1/orders/{ship}/ship",
        json={"qty": 200.0, "expected_ms": float(promise), "carrier_ref": "T-1"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["asn_qty"]) == ("shipped", 200)
    assert r.json()["promised_ms"] == promise
    # the same notice with integers is the same notice: a retry, not a conflict
    r = admin.post(
        f"/api/v1/orders/{ship}/ship",
        json={"qty": 200, "expected_ms": promise, "carrier_ref": "T-1"},
    )
    assert r.status_code == 200, r.text

    r = admin.post(f"/api/v1/orders/{recv}/receive", json={"qty": 10.0})
    assert r.status_code == 201, r.text
    assert r.json()["qty"] == 10
    assert type(r.json()["qty"]) is int


def test_policy_settings_take_integral_floats(make_api: Any) -> None:
    from jitstock.server.db.models import Bin
    from jitstock.server.db.session import transaction

    api = make_api()
    admin = api.client(api.admin_key)
    seed_master(admin)
    url = "/api/v1/bins/A-01/policy"
    for bad in (5.5, "5", True, 1e300):
        r = admin.patch(url, json={"pack_size": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "pack_size" in r.text
    with transaction(api.ctx.session_factory, readonly=True) as s:
        row = s.get(Bin, "A-01")
        assert row is not None
        assert row.pack_size is None
    r = admin.patch(url, json={"pack_size": 5.0, "service_level": 0.95})
    assert r.status_code == 200, r.text
    with transaction(api.ctx.session_factory, readonly=True) as s:
        row = s.get(Bin, "A-01")
        assert row is not None
        assert row.pack_size == 5
        assert type(row.pack_size) is int
