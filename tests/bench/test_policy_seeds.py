"""`jitstock bench policy --seeds`: every baseline per seed, costs and a summary row each."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from jitstock.bench import policy


@pytest.mark.slow
def test_seeds_run_has_every_policy_costs_and_summary():
    assert policy.parse_seeds("1-3,7") == [1, 2, 3, 7]
    r = policy.run(argparse.Namespace(quick=True, seed=None, seeds="3"))
    (row,) = r["summary"]
    assert row["seed"] == 3
    (one,) = r["seeds"]
    assert set(one["policies"]) == {
        "jitstock",
        "textbook_rop_observed_lt_k_per_class",
        "minmax_weekly_per_class",
        "minmax_static_per_class",
        "classic_rop_quoted_lt",
    }
    for res in one["policies"].values():
        o = res["overall"]
        assert (
            o["total_cost"]
            == o["holding_cost"] + o["ordering_cost"] + o["backorder_cost"]
        )
        assert 0 <= o["value_weighted_fill"] <= 1


def test_pattern_targets_weight_class_targets_by_demand():
    plant = policy.make_plant(policy.QUICK_SKUS, 2)
    targets = policy.pattern_targets(plant)
    # every pattern's target lies between the lowest and the highest class target
    for value in targets.values():
        assert 0.95 <= value <= 0.99
    # by hand for the lumpy parts
    m = plant.pattern == policy.PATTERNS.index("lumpy")
    w = plant.demand[m, policy.HISTORY_DAYS :].sum(axis=1)
    t = np.array([policy.CLASS_TARGETS[str(c)] for c in plant.abc_class[m]])
    assert targets["lumpy"] == pytest.approx((w * t).sum() / w.sum(), abs=1e-5)
