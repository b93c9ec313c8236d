"""The class allocation in the live recalculation: a full run allocates, a single bin keeps its share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jitstock.server.db.models import BinEvent
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.db.session import transaction
from jitstock.server.replenish import allocate
from jitstock.server.replenish.bin_policy import Params
from jitstock.server.replenish.demand import DAY_MS
from jitstock.server.replenish.recalc import Recalculator
from tests.server.db_factories import seed
from tests.server.replenish.conftest import ManualClock, add_deliveries, add_picks

NOW = 1_800_000_000_000


def add_lumps(
    factory, bin_id: str, now: int, days: int, p: float, lot: float, seed: int
) -> None:
    """Consumption in lots of gamma size (mean ``lot``) on a share ``p`` of the days."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        if rng.random() < p:
            units = max(1, int(rng.gamma(0.7, lot / 0.7)))
            rows.append(
                BinEvent(
                    bin_id=bin_id,
                    ts_ms=now - (days - day) * DAY_MS + 3_600_000,
                    kind="consumption",
                    delta=-units,
                    on_hand_after=1000,
                )
            )
    with transaction(factory) as s:
        s.add_all(rows)


def _targets(factory, ids):
    with transaction(factory, readonly=True) as s:
        return {b: dict(s.get(BinPolicy, b).inputs["target"]) for b in ids}


@pytest.mark.parametrize("weight", [0.0, allocate.DEFAULT_BACKORDER_WEIGHT])
def test_full_run_allocates_the_class_and_a_single_bin_keeps_its_share(db, weight):
    params = Params(backorder_weight=weight)
    ids = seed(db.factory, bins=6, on_hand=5000)
    for i, rate in enumerate((20.0, 4.0, 9.0)):
        add_picks(db.factory, ids[i], NOW - 90 * DAY_MS, 90, rate, seed=i)
    for i, (p, lot) in enumerate(((0.12, 120.0), (0.3, 20.0), (0.08, 60.0))):
        add_lumps(db.factory, ids[3 + i], NOW, 90, p, lot, seed=10 + i)
    add_deliveries(db.factory, ids[0], NOW - 80 * DAY_MS, 8, 5.0)
    clock = ManualClock(NOW)
    recalc = Recalculator(db.factory, params, clock=clock)
    recalc.recalc_all()

    plan = recalc.class_plans["A"]  # one SKU: every bin is class A
    assert plan["target"] >= 0.99  # calibrated upwards or not, never below the class's
    assert plan["planned_fill"] >= plan["target"] - 1e-6
    t = _targets(db.factory, ids)
    for b in ids:
        assert t[b]["service_level_source"] == allocate.SOURCE
        assert t[b]["class_target"] == 0.99
        assert t[b]["fill_floor"] == 0.9
        assert t[b]["backorder_weight"] == weight
        # the floor holds as fill or as cycle service: as the part's fill, never above 0.9
        part_floor = t[b].get("part_floor", t[b]["fill_floor"])
        assert t[b]["service_level"] >= part_floor - 1e-9
        assert part_floor <= 0.9
    if not math.isnan(plan["multiplier"]):
        # shared out, not uniform: a lumpy bin buys fill dearest and gets the least (the
        # backlog's price can lift another lumpy bin to the top: its rare lot, uncovered,
        # would wait a whole lead time on backorder)
        levels = [t[b]["service_level"] for b in ids]
        assert min(levels[3:]) == min(levels) < max(levels)
        assert t[ids[0]]["class_multiplier"] == pytest.approx(plan["multiplier"])

    # the API's "recalculate now" is a fresh Recalculator: the stored multiplier gives the
    # bin its share without a full run (its forecast now also blends in the other bins'
    # stored rates, so the share moves a little — but does not fall back to 0.99)
    fresh = Recalculator(db.factory, params, clock=clock)
    assert fresh.class_plans is None
    # the bin whose share is furthest from the class's target shows that it keeps the share
    one = max(ids, key=lambda b: abs(t[b]["service_level"] - 0.99))
    fresh.recalc_bins([one], "manual")
    again = _targets(db.factory, [one])[one]
    share = t[one]["service_level"]
    if math.isnan(plan["multiplier"]):
        # the class kept one target (sharing it out would cost more): so does the bin
        assert again["service_level"] == pytest.approx(max(plan["target"], 0.99))
        return
    assert again["service_level"] == pytest.approx(share, abs=0.003)
    # its share, not the class's target
    assert abs(again["service_level"] - share) < abs(again["service_level"] - 0.99)
    assert again["class_multiplier"] == pytest.approx(plan["multiplier"])
    assert again["service_level_source"] == allocate.SOURCE


def test_a_bin_target_of_its_own_is_not_allocated(db):
    ids = seed(db.factory, bins=2, on_hand=5000)
    for i, b in enumerate(ids):
        add_picks(db.factory, b, NOW - 60 * DAY_MS, 60, 10.0, seed=10 + i)
    with transaction(db.factory) as s:
        from jitstock.server.db.models import Bin

        s.get(Bin, ids[1]).service_level = 0.93
    Recalculator(db.factory, clock=ManualClock(NOW)).recalc_all()
    t = _targets(db.factory, ids)
    assert t[ids[1]]["service_level"] == 0.93
    assert t[ids[1]]["service_level_source"] == "bin"
    assert "class_multiplier" not in t[ids[1]]
    assert t[ids[0]]["service_level_source"] == allocate.SOURCE


@pytest.mark.parametrize(
    "bad", ["nan", "inf", "1.0", "0.5", "2**63", "", "abc", "5e-324"]
)
def test_fill_floor_setting_rejects_nonsense(monkeypatch, bad):
    from pydantic import ValidationError

    from jitstock.server.settings import ServerSettings

    monkeypatch.setenv("JITSTOCK_REPLENISH_FILL_FLOOR", bad)
    with pytest.raises(ValidationError, match="replenish_fill_floor"):
        ServerSettings()


def test_fill_floor_setting_reaches_the_params(monkeypatch):
    from jitstock.server.settings import ServerSettings

    monkeypatch.setenv("JITSTOCK_REPLENISH_FILL_FLOOR", "0.85")
    assert Params.from_settings(ServerSettings()).fill_floor == 0.85
    assert Params().fill_floor == allocate.DEFAULT_FILL_FLOOR == 0.9


@pytest.mark.parametrize(
    "bad", ["nan", "inf", "-1", str(2**63), str(2**64), "1e5", "", "abc"]
)
def test_backorder_weight_setting_rejects_nonsense(monkeypatch, bad):
    from pydantic import ValidationError

    from jitstock.server.settings import ServerSettings

    monkeypatch.setenv("JITSTOCK_REPLENISH_BACKORDER_WEIGHT", bad)
    with pytest.raises(ValidationError, match="replenish_backorder_weight"):
        ServerSettings()


@pytest.mark.parametrize("good", ["0", "5e-324", "12.5"])
def test_backorder_weight_setting_reaches_the_params(monkeypatch, good):
    from jitstock.server.settings import ServerSettings

    monkeypatch.setenv("JITSTOCK_REPLENISH_BACKORDER_WEIGHT", good)
    assert Params.from_settings(ServerSettings()).backorder_weight == float(good)
    assert Params().backorder_weight == allocate.DEFAULT_BACKORDER_WEIGHT
