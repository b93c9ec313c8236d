"""`jitstock bench policy --seed 0` runs seed 0, not seed 1."""

from __future__ import annotations

import argparse

import pytest

from jitstock.bench import policy


@pytest.mark.slow
def test_seed_zero_is_not_seed_one():
    zero = policy.make_plant(policy.QUICK_SKUS, 0)
    one = policy.make_plant(policy.QUICK_SKUS, 1)
    assert not (zero.demand == one.demand).all()
    r = policy.run(argparse.Namespace(quick=True, seed=0))
    assert r["seed"] == 0
