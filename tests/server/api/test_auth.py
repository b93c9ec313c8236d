"""API keys and roles through real HTTP: 401 without a usable key, 403 below the role, auth off."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import select

from jitstock.server.db.models import ApiKey
from jitstock.server.db.secrets import hash_api_key
from jitstock.server.db.session import transaction
from tests.server.api.conftest import SITE, Api, errors_text, seed_master


def test_no_key_or_unknown_key_is_401(api: Api) -> None:
    r = api.client().get("/api/v1/bins")
    assert r.status_code == 401
    assert "API key required" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.client("jsk_not-a-real-key").get("/api/v1/bins")
    assert (r.status_code, r.json()["detail"]) == (401, "invalid or revoked API key")


def test_viewer_reads_but_may_not_change(
    api: Api, manager: httpx.Client, viewer: httpx.Client
) -> None:
    seed_master(manager)
    assert viewer.get("/api/v1/bins").status_code == 200
    assert viewer.get("/api/v1/levels").status_code == 200
    for method, path, body in [
        ("POST", "/api/v1/sites", {"id": "x", "name": "X"}),
        ("PATCH", "/api/v1/bins/A-01", {"reorder_point": 1}),
        ("DELETE", "/api/v1/bins/A-01", None),
        ("POST", "/api/v1/bins/import", None),
        ("POST", "/api/v1/keys", {"name": "n", "role": "admin"}),
    ]:
        r = viewer.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert "requires role" in r.json()["detail"]
    r = viewer.post("/api/v1/sites", json={"id": "x", "name": "X"})
    assert (
        r.json()["detail"]
        == "requires role 'manager'; key 'wallboard' has role 'viewer'"
    )
    assert viewer.get("/api/v1/sites/x").status_code == 404  # nothing was created


def test_manager_may_not_manage_keys(api: Api, manager: httpx.Client) -> None:
    assert manager.get("/api/v1/keys").status_code == 403
    assert (
        manager.post("/api/v1/keys", json={"name": "n", "role": "viewer"}).status_code
        == 403
    )


def test_keys_are_stored_hashed_and_shown_once(api: Api, admin: httpx.Client) -> None:
    r = admin.post("/api/v1/keys", json={"name": "mes-bridge", "role": "viewer"})
    assert r.status_code == 201
    created = r.json()
    plain = created["key"]
    listed = admin.get("/api/v1/keys").json()
    assert {k["name"] for k in listed} == {"bootstrap-admin", "mes-bridge"}
    assert plain not in admin.get("/api/v1/keys").text
    with transaction(api.ctx.session_factory, readonly=True) as s:
        stored = {k.name: k.key_hash for k in s.scalars(select(ApiKey))}
    assert stored["mes-bridge"] == hash_api_key(plain)
    assert stored["bootstrap-admin"] == hash_api_key(api.admin_key)
    assert plain not in stored.values()
    assert api.client(plain, header="x-api-key").get("/api/v1/sites").status_code == 200


def test_revoked_key_is_401(api: Api, admin: httpx.Client) -> None:
    r = admin.post("/api/v1/keys", json={"name": "temp", "role": "manager"})
    key_id, plain = r.json()["id"], r.json()["key"]
    c = api.client(plain)
    assert c.get("/api/v1/sites").status_code == 200
    assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
    r = c.get("/api/v1/sites")
    assert (r.status_code, r.json()["detail"]) == (401, "invalid or revoked API key")
    assert (
        next(k for k in admin.get("/api/v1/keys").json() if k["id"] == key_id)[
            "revoked"
        ]
        is True
    )
    assert admin.delete("/api/v1/keys/999").status_code == 404


def test_bad_role_names_the_field(api: Api, admin: httpx.Client) -> None:
    r = admin.post("/api/v1/keys", json={"name": "x", "role": "root"})
    assert r.status_code == 422
    assert errors_text(r).startswith(
        "role: Input should be 'viewer', 'manager' or 'admin'"
    )


def test_auth_off_acts_as_anonymous_admin(make_api: Any) -> None:
    api = make_api(auth="off", bootstrap_admin_key=None)
    c = api.client()
    assert c.post("/api/v1/sites", json=SITE).status_code == 201
    assert c.get("/api/v1/keys").status_code == 200
    audit = c.get("/api/v1/audit").json()
    assert [(a["actor"], a["action"]) for a in audit] == [("anonymous", "site.create")]


def test_bootstrap_key_survives_restart_once(make_api: Any, tmp_path: Any) -> None:
    api = make_api()
    # A second app over the same DB with the same key must not insert it twice.
    from jitstock.server.api import create_api

    create_api(api.ctx)
    with transaction(api.ctx.session_factory, readonly=True) as s:
        assert len(s.scalars(select(ApiKey)).all()) == 1


_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`")


def test_openapi_description_names_every_route_a_supplier_key_reaches(
    api: Api, admin: httpx.Client
) -> None:
    """/openapi.json tells an integrator what a supplier key may do: the routes its
    description lists for one are exactly those that do not answer it 403, tried
    against every operation the document publishes; the plant routes it names are 403."""
    seed_master(admin)
    r = admin.post("/api/v1/suppliers/acme/keys", json={"name": "acme-erp"})
    assert r.status_code == 201, r.text
    supplier = api.client(r.json()["key"])
    anonymous = api.client()
    doc = admin.get("/openapi.json").json()
    described = doc["info"]["description"]
    listed_part, plant_part = described.split("A `supplier` key", 1)[1].split(
        "Every other route", 1
    )
    # the bullet list (its first paragraph names the admin's route that makes the key)
    listed = set(_ROUTE.findall(listed_part.split("\n\n", 1)[1]))
    named_plant = set(_ROUTE.findall(plant_part))
    reached: set[tuple[str, str]] = set()
    for path, ops in doc["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in ops:
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            op = (method.upper(), path)
            body = {} if method != "get" else None
            if anonymous.request(op[0], url, json=body).status_code != 401:
                continue  # needs no key (health, docs, e-mailed links)
            answer = supplier.request(op[0], url, json=body)
            if answer.status_code != 403:
                reached.add(op)
            elif op in listed:
                raise AssertionError((op, answer.text))
    assert listed == reached, (
        sorted(reached - listed),
        sorted(listed - reached),
    )
    assert {
        ("POST", "/api/v1/orders/{order_id}/deliver"),
        ("POST", "/api/v1/orders/{order_id}/receive"),
        ("POST", "/api/v1/receipts/{receipt_id}/inspection"),
    } == named_plant
    assert not named_plant & reached
