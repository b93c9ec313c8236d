"""A NUL character (U+0000) in any text of a request is refused with a 4xx and changes
nothing, on SQLite and on PostgreSQL (whose text cannot hold it: psycopg raised, a 500)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.api.conftest import bin_body, seed_master

NUL_BODIES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "POST",
        "/api/v1/users",
        {"username": "a\x00b", "password": "correct-horse-battery-9", "role": "viewer"},
    ),
    ("POST", "/api/v1/sites", {"id": "s9", "name": "x\x00y"}),
    ("POST", "/api/v1/skus", {"id": "SKU-N", "name": "n\x00", "unit_weight_g": 1.0}),
    ("POST", "/api/v1/bins", bin_body("N-01", area="\x00")),
    (
        "POST",
        "/api/v1/agents",
        {"id": "pi-9", "site_id": "plant1", "description": "a\x00"},
    ),
    ("POST", "/api/v1/keys", {"name": "k\x00", "role": "viewer"}),
    ("POST", "/api/v1/login", {"username": "admin\x00", "password": "x"}),
    ("PATCH", "/api/v1/sites/plant1", {"name": "\x00"}),
    (
        "PUT",
        "/api/v1/sparkplug/mappings",
        {
            "group_id": "G",
            "edge_node": "N",
            "metric": "w\x00",
            "bin_id": "A-01",
            "unit": "grams",
        },
    ),
]


def _snapshot(admin: httpx.Client) -> dict[str, Any]:
    return {
        path: admin.get(path).json()
        for path in (
            "/api/v1/users",
            "/api/v1/sites",
            "/api/v1/skus",
            "/api/v1/bins",
            "/api/v1/agents",
        )
    }


def test_nul_in_bodies_paths_and_queries_is_a_4xx_that_changes_nothing(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url)
    admin = api.client(api.admin_key)
    seed_master(admin)
    before = _snapshot(admin)
    for method, path, body in NUL_BODIES:
        r = admin.request(method, path, json=body)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert "NUL" in r.text, r.text
    # in a path: no such thing; in a query: an invalid parameter
    for path in ("/api/v1/bins/a%00b", "/api/v1/skus/%00", "/api/v1/levels/A-01%00"):
        r = admin.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
    for path, params in (
        ("/api/v1/levels", {"site": "a\x00b"}),
        ("/api/v1/orders", {"bin_id": "\x00"}),
        ("/api/v1/alerts", {"kind": "x\x00"}),
    ):
        r = admin.get(path, params=params)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["x-content-type-options"] == "nosniff"
    assert _snapshot(admin) == before
    # and the same API keeps answering good requests
    assert admin.get("/api/v1/levels/A-01").status_code == 200
    r = admin.post("/api/v1/sites", json={"id": "s9", "name": "fine"})
    assert r.status_code == 201, r.text
