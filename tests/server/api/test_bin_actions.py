"""Recount and recalibrate through the API: a count the scale's weight cannot hold (one
that would store a tare or unit weight the bin's own schema refuses) is a 422 naming
the count, and changes nothing."""

from __future__ import annotations

import pytest

from tests.server.api.conftest import errors_text, measure, seed_master


@pytest.fixture
def weighed(api, manager):
    """Bin A-01 at 10 g a part, tare 0, its scale showing 3000 g (300 parts)."""
    seed_master(manager)
    r = manager.patch("/api/v1/bins/A-01", json={"unit_weight_g": 10.0, "tare_g": 0.0})
    assert r.status_code == 200, r.text
    measure(api.ctx, "A-01", 300, unit_g=10.0, tare_g=0.0)
    return manager


def _state(client) -> dict:
    b = client.get("/api/v1/bins/A-01").json()
    return {k: b[k] for k in ("on_hand", "tare_g", "unit_weight_g", "paused")}


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("recount", {"on_hand": 310}, "on_hand"),  # tare -100 g
        ("recount", {"on_hand": 10_000_000}, "on_hand"),  # tare -99,997,000 g
        ("recalibrate", {"count": 10_000_000}, "count"),  # 0.0003 g a part
        ("recalibrate", {"count": 310, "solve": "tare"}, "count"),  # tare -100 g
    ],
)
def test_a_count_the_scale_cannot_hold_is_422_and_changes_nothing(
    weighed, action: str, body: dict, field: str
) -> None:
    before = _state(weighed)
    r = weighed.post(f"/api/v1/bins/A-01/{action}", json=body)
    assert r.status_code == 422, r.text
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field]
    text = errors_text(r)
    assert text.startswith(f"{field}: the scale shows ")
    assert "count again" in text
    assert _state(weighed) == before
    events = weighed.get("/api/v1/bins/A-01/events").json()
    assert not any(e["kind"] == "recount" for e in events["events"])


def test_counts_the_scale_can_hold_still_recount_and_recalibrate(weighed) -> None:
    r = weighed.post("/api/v1/bins/A-01/recount", json={"on_hand": 290})
    assert r.status_code == 200, r.text
    assert (r.json()["on_hand"], r.json()["tare_g"]) == (290, 100.0)
    r = weighed.post("/api/v1/bins/A-01/recount", json={"on_hand": 300})
    assert (r.json()["on_hand"], r.json()["tare_g"]) == (300, 0.0)
    r = weighed.post("/api/v1/bins/A-01/recalibrate", json={"count": 250})
    assert r.status_code == 200, r.text
    assert (r.json()["on_hand"], r.json()["unit_weight_g"]) == (250, 12.0)
    # what the API answered it also accepts back: the bin's CSV re-imports
    csv = weighed.get("/api/v1/bins.csv").text
    r = weighed.post(
        "/api/v1/bins/import", content=csv, headers={"content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def over_capacity(api, manager):
    """Bin cap-bin (capacity 100) whose learnt reorder point is 200, above its capacity."""
    from tests.server.api.conftest import bin_body

    seed_master(manager)
    body = bin_body("cap-bin", capacity=100, reorder_point=20, order_qty=50)
    r = manager.post("/api/v1/bins", json=body)
    assert r.status_code == 201, r.text
    r = manager.patch(
        "/api/v1/bins/cap-bin/policy",
        json={"prior_daily_demand": 200, "lead_time_s": 86400},
    )
    assert r.status_code == 200, r.text
    policy = r.json()
    assert policy["applied_reorder_point"] == 200, policy
    assert policy["fits_capacity"] is False
    return manager


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/pause", {"paused": True}),
        ("post", "/recount", {"on_hand": 30}),
        ("patch", "", {"tare_g": 5.0}),
        ("patch", "", {"area": "Hall 2"}),
    ],
)
def test_a_learnt_reorder_point_above_capacity_blocks_no_other_change(
    over_capacity, method: str, path: str, body: dict
) -> None:
    r = over_capacity.request(method, f"/api/v1/bins/cap-bin{path}", json=body)
    assert r.status_code == 200, r.text
    got = over_capacity.get("/api/v1/bins/cap-bin").json()
    for field, value in body.items():
        assert got[field] == value
    assert got["reorder_point"] == 200


def test_a_learnt_reorder_point_above_capacity_can_be_recalibrated(
    api, over_capacity
) -> None:
    measure(api.ctx, "cap-bin", 40, unit_g=4.0, tare_g=500.0)
    r = over_capacity.post("/api/v1/bins/cap-bin/recalibrate", json={"count": 50})
    assert r.status_code == 200, r.text
    assert r.json()["unit_weight_g"] == 3.2


def test_a_configured_reorder_point_above_capacity_is_still_refused(
    over_capacity,
) -> None:
    before = over_capacity.get("/api/v1/bins/cap-bin").json()
    for body in ({"reorder_point": 150}, {"capacity": 10}):
        r = over_capacity.patch("/api/v1/bins/cap-bin", json=body)
        assert r.status_code == 422, r.text
        assert errors_text(r).startswith("reorder_point: ")
    assert over_capacity.get("/api/v1/bins/cap-bin").json() == before
