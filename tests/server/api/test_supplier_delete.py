"""Deleting a supplier that has had API keys (found by an outside try: once a supplier
ever had a key, its delete was a 409 with a generic "conflicts with existing data",
since the key row refers to it). A revoked or expired key no longer blocks the delete
and keeps its row (the audit trail of GET /keys); a live key is a 409 naming it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from jitstock.server.db.models import ApiKey, AuditLog
from jitstock.server.db.session import transaction
from tests.server.api.conftest import SUPPLIER, errors_text


def test_a_supplier_whose_keys_are_revoked_can_be_deleted(
    make_api: Any, db_url: str
) -> None:
    api = make_api(db_url=db_url)
    admin = api.client(api.admin_key)
    assert admin.post("/api/v1/suppliers", json=SUPPLIER).status_code == 201
    keys = []
    for name in ("acme-erp", "acme-old"):
        r = admin.post("/api/v1/suppliers/acme/keys", json={"name": name})
        assert r.status_code == 201, r.text
        keys.append(r.json())
    erp = api.client(keys[0]["key"])
    assert erp.get("/api/v1/supplier/orders").status_code == 200
    assert admin.delete(f"/api/v1/keys/{keys[1]['id']}").status_code == 204

    # a live key blocks the delete, with a 409 that says so; nothing changes
    r = admin.delete("/api/v1/suppliers/acme")
    assert r.status_code == 409, r.text
    assert errors_text(r) == (
        "supplier 'acme' still has 1 active API key(s): revoke them first"
    )
    assert admin.get("/api/v1/suppliers/acme").status_code == 200
    assert erp.get("/api/v1/supplier/orders").status_code == 200

    assert admin.delete(f"/api/v1/keys/{keys[0]['id']}").status_code == 204
    # an expired (never revoked) key of the supplier, e.g. an old session, is no use either
    now = api.ctx.clock.time_ms()
    with transaction(api.ctx.session_factory) as s:
        old = ApiKey(
            name="acme-expired",
            key_hash="0" * 64,
            role="supplier",
            created_ms=now - 10,
            supplier_id="acme",
            expires_ms=now,
        )
        s.add(old)
        s.flush()
        expired_id = old.id
    r = admin.delete("/api/v1/suppliers/acme")
    assert r.status_code == 204, r.text
    assert admin.get("/api/v1/suppliers/acme").status_code == 404
    # the revoked keys stay listed (audit trail), still revoked and of no use
    listed = {k["id"]: k for k in admin.get("/api/v1/keys").json()}
    for k in keys:
        assert listed[k["id"]]["revoked"] is True
        assert listed[k["id"]]["name"] == k["name"]
        assert api.client(k["key"]).get("/api/v1/supplier/orders").status_code == 401
    with transaction(api.ctx.session_factory, readonly=True) as s:
        audit = s.scalars(
            select(AuditLog).where(AuditLog.action == "supplier.delete")
        ).one()
        gone = sorted([expired_id, *(k["id"] for k in keys)])
        assert audit.detail == {"detached_keys": gone}
        rows = s.scalars(select(ApiKey).where(ApiKey.role == "supplier")).all()
        assert sorted(r.id for r in rows) == gone
        assert all(r.supplier_id is None for r in rows)
    # the id is free again: a new supplier under it has none of the old keys
    assert admin.post("/api/v1/suppliers", json=SUPPLIER).status_code == 201
    assert admin.delete("/api/v1/suppliers/acme").status_code == 204
