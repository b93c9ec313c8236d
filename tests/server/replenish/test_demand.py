"""Demand series and Syntetos–Boylan classes, with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from jitstock.server.replenish.demand import (
    DAY_MS,
    adi_cv2,
    bucket,
    classify,
    undershoot,
)


def test_events_are_summed_per_day_and_out_of_window_events_dropped():
    start = 1_000 * DAY_MS
    ts = np.array([start - 1, start, start + 5, start + DAY_MS + 1, start + 3 * DAY_MS])
    qty = np.array([100.0, 2.0, 3.0, 4.0, 100.0])
    assert bucket(ts, qty, start, start + 3 * DAY_MS).tolist() == [5.0, 4.0, 0.0]


@pytest.mark.parametrize(
    ("series", "label"),
    [
        ([5, 5, 5, 5], "smooth"),  # ADI 1, CV² 0
        ([1, 9, 1, 9], "erratic"),  # ADI 1, CV² = (64/3)/25 = 0.853
        ([0, 5, 0, 5], "intermittent"),  # ADI 2, CV² 0
        ([0, 1, 0, 9], "lumpy"),  # ADI 2, CV² = 32/25 = 1.28
    ],
)
def test_the_four_classes(series, label):
    assert classify(np.array(series, dtype=float)).label == label


def test_adi_cut_off_1_32_belongs_to_the_intermittent_side():
    at_cutoff = np.array([1.0] * 25 + [0.0] * 8)  # 33 periods / 25 demands = 1.32
    below = np.array([1.0] * 25 + [0.0] * 7)  # 32 / 25 = 1.28
    c = classify(at_cutoff)
    assert (round(c.adi, 6), c.label) == (1.32, "intermittent")
    assert classify(below).label == "smooth"


def test_cv2_cut_off_0_49():
    # sizes 1 and x: mean m=(1+x)/2, sample var (x-1)²/2, CV² = 2(x-1)²/(1+x)²
    just_below = np.array([1.0, 2.6])  # CV² = 2·2.56/12.96 = 0.395
    just_above = np.array([1.0, 2.8])  # CV² = 2·3.24/14.44 = 0.449 ... still below
    above = np.array([1.0, 3.2])  # CV² = 2·4.84/17.64 = 0.549
    assert classify(just_below).label == "smooth"
    assert classify(just_above).label == "smooth"
    assert classify(above).label == "erratic"
    _, cv2 = adi_cv2(above)
    assert cv2[0] == pytest.approx(2 * 2.2**2 / 4.2**2)


def test_a_series_without_demand_has_infinite_adi():
    adi, cv2 = adi_cv2(np.zeros(10))
    assert np.isinf(adi[0])
    assert cv2[0] == 0.0


def test_undershoot_of_the_crossing_pick():
    # picks of 1 and 9: E[X²]/(2E[X]) = (1+81)/2 / (2·5) = 4.1; steady 5s: 2.5; none: 0
    assert undershoot(np.array([[1.0, 9.0], [5.0, 5.0], [0.0, 0.0]])).tolist() == [
        4.1,
        2.5,
        0.0,
    ]
