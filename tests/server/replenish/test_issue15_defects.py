"""Issue 15's smaller defects: kanban for pack 1, manual max and z, dormant parts, unclassified SKUs."""

from __future__ import annotations

import numpy as np
import pytest

from jitstock.server.db.models import Bin
from jitstock.server.db.session import transaction
from jitstock.server.replenish import demand, policy
from jitstock.server.replenish.bin_policy import Params, compute_bin
from tests.server.db_factories import seed
from tests.server.replenish.conftest import add_picks

NOW = 1_800_000_000_000


def test_kanban_cards_for_pack_one_count_order_containers():
    # 20/day, 4 days, pack 1: a card orders Q = 140 (a week), so 20·4·1.1/140 -> 1, two-bin minimum 2
    p = policy.compute(policy.PolicyInputs(20.0, 4.0, 4.0, 0.5, 0.97, pack=1.0))
    assert float(p.order_qty) == 140
    assert float(p.kanban_cards) == 2
    # small containers: 20·4·1.1/25 = 3.52 -> 4 cards
    assert float(policy.kanban_cards(20, 4, 25, 0.1)) == 4


def test_manual_max_z_is_solved_for_the_quantity_it_orders():
    x = {
        "demand": 20.0,
        "sigma_d": 6.0,
        "lead": 4.0,
        "sigma_l": 1.0,
        "service_level": 0.99,
    }
    free = policy.compute(policy.PolicyInputs(**x))
    hi = float(free.reorder_at) + 80
    capped = policy.compute(policy.PolicyInputs(**x, manual_max=hi))
    # Q ≈ 60 instead of 140 covers less shortage: z (and SS) must rise, solved for that Q
    q = float(capped.order_qty)
    assert q == pytest.approx(hi - float(capped.reorder_at), abs=1)
    assert q < 80
    assert float(capped.z) > float(free.z) + 0.25
    sigma_lt = float(policy.safety_stock(1.0, 20, 4, 6, 1))
    expected_z = float(policy.z_for_fill_rate(0.99, sigma_lt, q))
    assert float(capped.z) == pytest.approx(expected_z, abs=0.05)
    # a max too tight for the target: the trigger stays below it (base stock at the max)
    tight = policy.compute(
        policy.PolicyInputs(**x, manual_max=float(free.reorder_at) + 5)
    )
    assert float(tight.reorder_at) <= float(free.reorder_at) + 4
    assert float(tight.order_qty) >= 1


def test_undershoot_is_its_own_number_inside_the_reorder_point():
    p = policy.compute(policy.PolicyInputs(10.0, 3.0, 2.0, 0.0, 0.95, undershoot=4.0))
    assert float(p.undershoot) == 4.0
    assert float(p.reorder_point) == pytest.approx(20 + float(p.safety_stock) + 4.0)


def test_dormant_part_fades_to_zero_trigger():
    rng = np.random.default_rng(3)
    active = rng.poisson(2.0, 120).astype(float)
    assert float(demand.dormancy_fade(active)[0]) == 1.0
    dead = np.concatenate([active[:60], np.zeros(60)])
    assert float(demand.dormancy_fade(dead)[0]) == 0.0
    half = np.concatenate([active[:78], np.zeros(42)])  # 42 idle days of a 28-day grace
    assert float(demand.dormancy_fade(half)[0]) == pytest.approx(0.5, abs=0.04)
    # what the issue saw: TSB rate 0.0102/day, σ 1.29/day stays, trigger 6 -> now 0
    x = {
        "demand": 0.0102,
        "sigma_d": 1.29,
        "lead": 5.0,
        "sigma_l": 1.0,
        "service_level": 0.95,
    }
    before = policy.compute(policy.PolicyInputs(**x, undershoot=2.0))
    assert float(before.reorder_at) >= 4
    after = policy.compute(policy.PolicyInputs(**x, undershoot=2.0, fade=0.0))
    assert float(after.reorder_at) == 0
    assert float(after.safety_stock) == 0


def test_new_sku_is_explicitly_unclassified_with_the_b_default(db):
    (bin_id,) = seed(db.factory, on_hand=500, reorder_point=20, order_qty=100)
    add_picks(db.factory, bin_id, NOW - 30 * 86_400_000, 30, 10.0, seed=2)
    with transaction(db.factory, readonly=True) as s:
        b = s.get(Bin, bin_id)
        assert b is not None
        assert b.sku.abc_class is None
        comp = compute_bin(s, b, NOW, Params())
    target = comp.inputs["target"]
    assert target["abc_class"] == "unclassified"
    assert target["service_level"] == 0.97
    assert target["service_level_source"] == "unclassified_default_B"
    # solved on lead-time demand draws: whole-Q orders leave the position above the trigger,
    # so the picks' undershoot (still reported among the inputs) is not in the reorder point
    assert comp.inputs["demand"]["lead_time_demand_method"] in ("block", "compound")
    assert comp.inputs["demand"]["undershoot"] > 0
    assert comp.result["undershoot"] == 0.0
