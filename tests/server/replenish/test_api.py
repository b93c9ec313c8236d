"""GET/PATCH /api/v1/bins/{id}/policy over real HTTP: the numbers, their inputs and why they changed."""

from __future__ import annotations

import httpx

from jitstock.server.replenish.bin_policy import Params
from jitstock.server.replenish.demand import DAY_MS
from jitstock.server.replenish.recalc import Recalculator
from tests.server.api.conftest import SKU, SUPPLIER, Api, measure, seed_master
from tests.server.replenish.conftest import add_deliveries, add_picks

URL = "/api/v1/bins/A-01/policy"


def test_explain_learn_late_supplier_and_override(
    api: Api, manager: httpx.Client, viewer: httpx.Client
):
    seed_master(manager)
    measure(api.ctx, "A-01", 380)
    now = api.ctx.clock.now_ms

    # before any history: a preview on the quoted lead time, the configured numbers still apply
    r = viewer.get(URL)
    assert r.status_code == 200, r.text
    p = r.json()
    assert (p["stored"], p["lead_time_source"], p["applied_reorder_point"]) == (
        False,
        "quoted",
        50,
    )
    assert p["inputs"]["demand"]["history_days"] == 0

    # a 99 % target of its own (instead of its ABC class's); still learning, nothing applied
    p = manager.patch(URL, json={"service_level": 0.99}).json()
    assert (p["service_level"], p["applied_reorder_point"]) == (0.99, 50)
    assert p["recent_changes"] == []

    f = api.ctx.session_factory
    add_picks(f, "A-01", now - 60 * DAY_MS, 60, 20.0, seed=3)
    add_deliveries(
        f, "A-01", now - 55 * DAY_MS, 8, 3.0, sku=SKU["id"], supplier=SUPPLIER["id"]
    )
    assert viewer.post(f"{URL}/recalculate").status_code == 403
    r = manager.post(f"{URL}/recalculate")
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["stored"] is True
    assert p["reason"] == "manual"
    assert p["demand_class"] == "smooth"
    assert p["forecast_method"] == "ses"
    assert 17 < p["rate_per_day"] < 23
    assert 2.8 < p["lead_time_days"] < 3.2
    assert p["lead_time_source"] == "measured"
    assert p["on_time_rate"] == 1.0
    assert p["z"] > 0
    assert p["safety_stock"] > 0
    # solved on lead-time demand draws: the picks' undershoot is shown among the inputs, and
    # the reorder point's own undershoot term is 0 (whole-Q orders leave the position above it)
    assert p["inputs"]["demand"]["undershoot"] > 0
    assert p["undershoot"] == 0.0
    assert p["reorder_point_exact"] >= p["safety_stock"]
    assert p["reorder_point"] == p["applied_reorder_point"]
    assert p["reorder_point"] > p["rate_per_day"] * p["lead_time_days"]
    assert p["days_of_supply"] == round(380 / p["rate_per_day"], 2)
    assert p["manual_override"] is False
    assert p["recent_changes"][0]["reason"] == "manual"
    assert p["recent_changes"][0]["from"] == {"reorder_point": 50, "order_qty": 200}
    before = p["reorder_point"]

    # the supplier starts delivering two days late; the server's check learns it from the deliveries
    api.ctx.clock.now_ms += 3_600_000
    add_deliveries(
        f, "A-01", now - 20 * DAY_MS, 4, 5.0, sku=SKU["id"], supplier=SUPPLIER["id"]
    )
    recalc = Recalculator(f, Params.from_settings(api.ctx.settings), api.ctx.clock)
    assert recalc.check() == ["A-01"]
    p = viewer.get(URL).json()
    assert p["lead_time_days"] > 3.7
    assert p["on_time_rate"] < 0.75
    assert p["reorder_point"] > before + 20
    assert p["reason"] == "delivery"
    assert "lead time" in p["why_changed"]
    assert p["recent_changes"][0]["to"]["reorder_point"] == p["reorder_point"]
    audit = manager.get(
        "/api/v1/audit", params={"entity": "bin", "entity_id": "A-01"}
    ).json()
    policy_rows = [a for a in audit if a["action"] == "bin.policy"]
    assert len(policy_rows) == 2
    assert policy_rows[0]["detail"]["inputs"]["lead_time"]["deliveries"] == 12

    # a manual min/max wins and is flagged; clearing it returns to the learned numbers
    r = manager.patch(URL, json={"manual_min": 30, "manual_max": 120})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["manual_override"] is True
    assert (p["applied_reorder_point"], p["applied_order_qty"]) == (30, 90)
    p = manager.patch(URL, json={"manual_min": None, "manual_max": None}).json()
    assert p["manual_override"] is False
    assert p["applied_reorder_point"] > before + 20


def test_bad_requests(api: Api, manager: httpx.Client):
    seed_master(manager)
    assert manager.get("/api/v1/bins/nope/policy").status_code == 404
    r = manager.patch(URL, json={"manual_min": 50, "manual_max": 40})
    assert r.status_code == 422
    assert "manual_max" in r.text
    assert manager.patch(URL, json={"policy": "weekly"}).status_code == 422
    assert manager.patch(URL, json={"service_level": 1.5}).status_code == 422


def test_policy_says_when_the_target_asks_for_more_than_the_bin_holds(
    api: Api, manager: httpx.Client, viewer: httpx.Client
):
    """The demo showed a bin whose learnt reorder point (742) was above its capacity
    (640): it reordered seconds after every delivery and /policy did not say why."""
    seed_master(manager)
    p = viewer.get(URL).json()
    assert (p["capacity"], p["fits_capacity"]) == (400, True)  # 50 + 200 fit in 400
    room = p["applied_reorder_point"] + p["applied_order_qty"]
    for capacity, fits in ((room, True), (room - 1, False), (None, True)):
        r = manager.patch("/api/v1/bins/A-01", json={"capacity": capacity})
        assert r.status_code == 200, r.text
        p = viewer.get(URL).json()
        assert (p["capacity"], p["fits_capacity"]) == (capacity, fits)
