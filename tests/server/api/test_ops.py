"""/healthz, /metrics and /docs over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from jitstock.server.db.models import Order
from jitstock.server.db.session import transaction
from tests.server.api.conftest import Api, measure, seed_master


def test_healthz(api: Api) -> None:
    c = api.client()  # no key: probes and scrapers are unauthenticated
    r = c.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["db"] == {"ok": True}
    assert body["tsdb"]["ok"] is True
    assert "spool_points" in body["tsdb"]
    assert body["mqtt"] == {"connected": True}


def test_healthz_reports_mqtt_down(make_api: Any) -> None:
    api = make_api()
    api.ctx.mqtt_up = False
    r = api.client().get("/healthz")
    assert (r.status_code, r.json()["status"], r.json()["mqtt"]) == (
        503,
        "unhealthy",
        {"connected": False},
    )
    api.ctx.mqtt_up = True
    assert api.client().get("/healthz").status_code == 200


def test_metrics_exposes_counters_and_order_states(
    api: Api, manager: httpx.Client
) -> None:
    seed_master(manager, bins=2)
    measure(api.ctx, "A-01", 5)
    manager.patch("/api/v1/bins/A-01", json={"reorder_point": 60})
    with transaction(api.ctx.session_factory) as s:
        oid = s.scalar(select(Order.id))
    manager.post(f"/api/v1/orders/{oid}/ack", json={})
    api.ctx.metrics.readings.inc(42)
    api.ctx.metrics.rejected_batches.labels(reason="bad_json").inc()
    r = api.client().get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "jitstock_readings_total 42.0" in text
    assert 'jitstock_rejected_batches_total{reason="bad_json"} 1.0' in text
    assert 'jitstock_orders{state="acknowledged"} 1.0' in text
    assert 'jitstock_orders{state="created"} 0.0' in text
    assert "jitstock_orders_created_total 1.0" in text
    assert "jitstock_tsdb_spool_points 0.0" in text


def test_openapi_docs(api: Api) -> None:
    c = api.client()
    assert c.get("/docs").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    for p in (
        "/api/v1/bins",
        "/api/v1/bins/{bin_id}",
        "/api/v1/bins.csv",
        "/api/v1/bins/import",
        "/api/v1/bins/{bin_id}/history",
        "/api/v1/levels",
        "/api/v1/orders/{order_id}/ack",
        "/api/v1/orders/{order_id}/deliver",
        "/api/v1/keys",
        "/healthz",
        "/metrics",
    ):
        assert p in paths, p
