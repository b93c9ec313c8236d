"""`jitstock bench policy --seeds`: every baseline per seed, costs and a summary row each."""

from __future__ import annotations

import argparse

from jitstock.bench import policy


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
