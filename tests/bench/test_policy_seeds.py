"""`jitstock bench policy --seeds`: every baseline per seed, costs and a summary row each."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from jitstock.bench import policy
from jitstock.bench.policy_rules import informed_rule, lumpy_groups, tune_per_class
from jitstock.bench.policy_sim import precompute_forecasts, simulate, summarise


def test_seeds_run_has_every_policy_costs_and_summary():
    assert policy.parse_seeds("1-3,7") == [1, 2, 3, 7]
    r = policy.run(argparse.Namespace(quick=True, seed=None, seeds="3"))
    (row,) = r["summary"]
    assert row["seed"] == 3
    (one,) = r["seeds"]
    assert set(one["policies"]) == {
        "jitstock",
        "textbook_rop_observed_lt_k_per_class_and_lumpy",
        "textbook_rop_observed_lt_k_per_class_only",
        "minmax_weekly_per_class_and_lumpy",
        "minmax_static_per_class_and_lumpy",
        "classic_rop_quoted_lt",
    }
    # the baselines are tuned to jitstock's fill per class and on each class's lumpy parts:
    # every group at least as full as jitstock's (the bisection's smallest such parameter)
    plant = policy.make_plant(policy.QUICK_SKUS, 3)
    groups = policy.lumpy_groups(plant)
    assert {"A lumpy", "B lumpy", "C lumpy"} <= set(groups.tolist())
    fills = one["jitstock_fill_groups"]
    assert set(one["tuned"]["textbook_k"]) == set(groups.tolist())
    assert set(one["tuned"]["textbook_k_per_class_only"]) == {"A", "B", "C"}
    informed = one["policies"]["textbook_rop_observed_lt_k_per_class_and_lumpy"]
    # the old baseline (one k per class) reaches the class fills, not the lumpy groups'
    assert 0 <= informed["lumpy"]["fill_rate"] <= 1
    for name in ("A lumpy", "B lumpy", "C lumpy"):
        assert 0 <= fills[name] <= 1
    for res in one["policies"].values():
        o = res["overall"]
        assert (
            o["total_cost"]
            == o["holding_cost"] + o["ordering_cost"] + o["backorder_cost"]
        )
        assert 0 <= o["value_weighted_fill"] <= 1


def test_per_group_tuning_meets_each_groups_fill():
    """tune_per_class with groups: each group's fill reaches its own target, bisected together."""
    plant = policy.make_plant(policy.QUICK_SKUS, 2)
    fc = precompute_forecasts(plant)
    groups = lumpy_groups(plant)
    lumpy = plant.pattern == policy.PATTERNS.index("lumpy")
    assert all(g.endswith(" lumpy") == lp for g, lp in zip(groups, lumpy, strict=True))
    want = {g: 0.9 if g.endswith("lumpy") else 0.97 for g in set(groups.tolist())}
    k, o = tune_per_class(
        lambda kk: simulate(plant, informed_rule(plant, fc, kk)),
        plant,
        0.0,
        6.0,
        want,
        steps=6,
        groups=groups,
    )
    assert set(k) == set(want)
    for g, fill in want.items():
        assert summarise(plant, o, groups == g)["fill_rate"] >= fill


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
