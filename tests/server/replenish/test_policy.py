"""Safety stock, reorder point, order quantity, kanban cards, ABC and lead times by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jitstock.server.replenish import abc, leadtime, policy


def test_textbook_example_ss_and_rop():
    # SS = 1.645·√(4·5² + 20²·1²) = 1.645·√500 = 36.78; ROP = 20·4 + SS = 116.78
    ss = policy.safety_stock(1.645, 20, 4, 5, 1)
    assert float(ss) == pytest.approx(36.8, abs=0.05)
    assert float(policy.reorder_point(20, 4, ss)) == pytest.approx(116.8, abs=0.05)


def test_z_for_service_levels():
    assert float(policy.z_for(0.95)) == pytest.approx(1.645, abs=1e-3)
    assert float(policy.z_for(0.99)) == pytest.approx(2.326, abs=1e-3)
    assert policy.z_for([0.5, 1.0]).tolist()[0] == 0.0  # clipped, never infinite
    assert math.isfinite(policy.z_for([0.5, 1.0]).tolist()[1])


def test_z_for_a_fill_rate_target():
    # G(1) = φ(1) − (1 − Φ(1)) = 0.24197 − 0.15866 = 0.08332; σ_LT=10, Q=100:
    # β = 1 − 0.08332·10/100 = 0.991668 needs z = 1
    assert float(policy.normal_loss(0)) == pytest.approx(0.39894, abs=1e-4)
    assert float(policy.z_for_fill_rate(0.991668, 10, 100)) == pytest.approx(
        1.0, abs=2e-3
    )
    # a big order alone reaches the target: no safety stock, never a negative one
    assert float(policy.z_for_fill_rate(0.9, 10, 1000)) == 0.0


@pytest.mark.parametrize(
    ("qty", "pack", "moq", "expected"),
    [
        (130, 25, 0, 150),  # up to whole packs
        (10, 25, 100, 100),  # MOQ first
        (101, 25, 100, 125),  # MOQ, then packs
        (0, 1, 0, 1),  # never zero
        (50, 50, 0, 50),  # exact multiple stays
        (7e6, 1, 0, 1_000_000),  # at most what one receipt can carry (the API's max)
        (7e6, 7, 0, 999_999),  # ...in whole packs
        (float("inf"), 1, 0, 1_000_000),
        (2.0**63, 1, 0, 1_000_000),
    ],
)
def test_pack_and_moq_rounding(qty, pack, moq, expected):
    assert float(policy.round_order_qty(qty, pack, moq)) == expected


def test_eoq():
    # √(2·1000·50/2.5) = 200
    assert float(policy.eoq(1000, 50, 2.5)) == pytest.approx(200)


def test_kanban_cards():
    # 20/day · 4 days · 1.1 / 25 per container = 3.52 -> 4 cards
    assert float(policy.kanban_cards(20, 4, 25, 0.1)) == 4


def test_compute_s_q_matches_the_formula_and_rounds_q():
    p = policy.compute(
        policy.PolicyInputs(
            demand=20,
            sigma_d=5,
            lead=4,
            sigma_l=1,
            service_level=0.95,
            pack=25,
            fill_rate=False,
        )
    )
    assert float(p.reorder_point) == pytest.approx(
        80 + 1.6449 * math.sqrt(500), abs=0.01
    )
    assert float(p.reorder_at) == 117
    assert float(p.order_qty) == 150  # 7 days · 20 = 140 -> 6 packs of 25
    assert not bool(p.override)


def test_compute_r_s_protects_lead_time_plus_review():
    p = policy.compute(
        policy.PolicyInputs(
            demand=20,
            sigma_d=5,
            lead=4,
            sigma_l=1,
            service_level=0.95,
            policy=float(policy.RS),
            review_days=3,
            fill_rate=False,
        )
    )
    up_to = 20 * 7 + 1.6449 * math.sqrt(7 * 25 + 400)
    assert float(p.order_up_to) == pytest.approx(up_to, abs=0.01)
    assert float(p.order_qty) == 60  # one review period of demand
    assert float(p.reorder_at) == math.ceil(up_to - 60)


def test_manual_min_max_wins_and_is_flagged():
    p = policy.compute(
        policy.PolicyInputs(
            demand=np.array([20.0, 20.0]),
            sigma_d=5,
            lead=4,
            sigma_l=1,
            service_level=0.95,
            manual_min=np.array([40.0, np.nan]),
            manual_max=np.array([100.0, np.nan]),
            fill_rate=False,
        )
    )
    assert p.reorder_at.tolist() == [40.0, 117.0]
    assert p.order_qty.tolist() == [60.0, 140.0]
    assert p.override.tolist() == [True, False]


def test_abc_pareto_split():
    values = [3, 50, 2, 10, 30, 5]  # total 100: 50+30 = 80 % A, +10+5 = 95 % B
    assert abc.abc_classes(values).tolist() == ["C", "A", "C", "B", "A", "B"]
    assert abc.abc_classes([0, 0]).tolist() == ["C", "C"]
    assert abc.service_levels(["A", "B", "C"]).tolist() == [0.99, 0.97, 0.95]


def test_lead_time_starts_at_the_quote_and_learns():
    none = leadtime.estimate(np.full((1, 0), np.nan), np.array([3.0]))
    assert (none.mean[0], none.sigma[0]) == (3.0, pytest.approx(0.75))
    many = leadtime.estimate(np.full((1, 30), 5.0), np.array([3.0]))
    assert many.mean[0] == pytest.approx(5.0, abs=0.15)
    # the newest deliveries weigh most: two days late lately moves the mean and widens σ
    late = leadtime.estimate(
        np.r_[np.full(20, 3.0), np.full(4, 5.0)][None, :], np.array([3.0])
    )
    on_time = leadtime.estimate(np.full((1, 24), 3.0), np.array([3.0]))
    assert late.mean[0] > on_time.mean[0] + 0.7
    assert late.sigma[0] > on_time.sigma[0]
