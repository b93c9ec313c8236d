"""Live levels and bin history (through the SQLite time series store) over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from jitstock.server.db.models import Agent
from jitstock.server.db.session import transaction
from jitstock.server.tsdb import Point
from tests.server.api.conftest import Api, errors_text, measure, seed_master

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z


def test_levels_show_count_freshness_and_agent(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=2)
    measure(api.ctx, "A-01", 120)
    # never heard from: neither online nor offline
    assert manager.get("/api/v1/levels/A-01").json()["agent_online"] is None
    # its last traffic just now (readings without any status, as a PLC sends them)
    with transaction(api.ctx.session_factory) as s:
        s.execute(
            update(Agent)
            .where(Agent.id == "pi-1")
            .values(last_seen_ms=api.ctx.clock.time_ms())
        )
    levels = {lv["bin_id"]: lv for lv in manager.get("/api/v1/levels").json()}
    a1 = levels["A-01"]
    assert (a1["on_hand"], a1["confidence"], a1["last_grams"], a1["position"]) == (
        120,
        1.0,
        980.0,
        120,
    )
    assert (
        a1["last_seen_ms"],
        a1["reorder_point"],
        a1["agent_online"],
        a1["sensor_ok"],
    ) == (T0, 50, True, True)
    assert levels["A-02"]["last_seen_ms"] is None
    assert manager.get("/api/v1/levels/A-02").json()["on_hand"] == 0
    assert manager.get("/api/v1/levels", params={"site": "other"}).json() == []
    assert manager.get("/api/v1/levels/zz").status_code == 404
    manager.post(
        "/api/v1/bins", json={"id": "loose", "site_id": "plant1", "sku_id": "M6-bolt"}
    )
    assert manager.get("/api/v1/levels/loose").json()["agent_online"] is None


def _write_history(api: Api) -> None:
    points = [
        Point(
            "bin_level",
            (("agent", "pi-1"), ("bin", "A-01"), ("site", "plant1")),
            (
                ("grams", 500.0 + 4.0 * c),
                ("count", c),
                ("confidence", 1.0),
                ("stable", True),
            ),
            T0 + i * 10_000,
        )
        for i, c in enumerate(
            range(100, 40, -1)
        )  # one reading every 10 s for 10 minutes
    ]
    points.append(
        Point("bin_level", (("bin", "A-02"),), (("grams", 1.0), ("count", 1)), T0)
    )
    api.ctx.tsdb.write(points)


def test_raw_history_by_epoch_ms_and_iso(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=2)
    _write_history(api)
    r = manager.get(
        "/api/v1/bins/A-01/history", params={"start": T0, "end": T0 + 30_000}
    )
    assert r.status_code == 200, r.text
    h = r.json()
    assert (h["resolution_ms"], h["truncated"]) == (None, False)
    assert h["points"] == [
        {"ts_ms": T0, "grams": 900.0, "count": 100},
        {"ts_ms": T0 + 10_000, "grams": 896.0, "count": 99},
        {"ts_ms": T0 + 20_000, "grams": 892.0, "count": 98},
    ]
    iso_start = (
        datetime.fromtimestamp(T0 / 1000, UTC).isoformat().replace("+00:00", "Z")
    )
    r = manager.get(
        "/api/v1/bins/A-01/history",
        params={"start": iso_start, "end": str(T0 + 30_000)},
    )
    assert [p["count"] for p in r.json()["points"]] == [100, 99, 98]
    r = manager.get(
        "/api/v1/bins/A-01/history",
        params={"start": T0, "end": T0 + 600_000, "limit": 5},
    )
    assert (len(r.json()["points"]), r.json()["truncated"]) == (5, True)
    # Default window: the last day up to the API clock.
    api.ctx.clock.now_ms = T0 + 3_600_000
    assert len(manager.get("/api/v1/bins/A-01/history").json()["points"]) == 60


def test_downsampled_history(api: Api, manager: httpx.Client) -> None:
    seed_master(manager, bins=2)
    _write_history(api)
    params: dict[str, Any] = {
        "start": T0,
        "end": T0 + 180_000,
        "resolution": "1m",
        "agg": "min",
    }
    h = manager.get("/api/v1/bins/A-01/history", params=params).json()
    assert (h["resolution_ms"], h["agg"]) == (60_000, "min")
    assert [(p["ts_ms"] - T0, p["count"]) for p in h["points"]] == [
        (0, 95),
        (60_000, 89),
        (120_000, 83),
    ]
    h = manager.get(
        "/api/v1/bins/A-01/history",
        params={**params, "agg": "mean", "resolution": "60000"},
    ).json()
    assert h["points"][0]["grams"] == 500.0 + 4.0 * 97.5


def test_history_bad_requests_name_the_field(api: Api, manager: httpx.Client) -> None:
    seed_master(manager)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"start": "yesterday"},
            "start: 'yesterday' is neither epoch milliseconds nor an ISO 8601 time",
        ),
        ({"start": T0 + 1, "end": T0}, "start: must be before end"),
        (
            {"start": T0, "end": T0 + 1000, "resolution": "fast"},
            "resolution: 'fast' is not a positive duration",
        ),
        (
            {"start": 0, "end": T0, "resolution": "1s"},
            "resolution: 1s over this range makes",
        ),
        ({"agg": "median"}, "agg: Input should be 'mean'"),
    ]
    for params, text in cases:
        r = manager.get("/api/v1/bins/A-01/history", params=params)
        assert r.status_code == 422, (params, r.text)
        assert errors_text(r).startswith(text), errors_text(r)
    assert manager.get("/api/v1/bins/nope/history").status_code == 404
