"""The load cell model: noise level, drift, settling."""

from __future__ import annotations

import statistics

from jitstock.firmware_sim.loadcell import ZERO_COUNTS, LoadCell


def test_noise_is_about_20_counts_rms() -> None:
    cell = LoadCell(1000.0, noise_counts=20.0, counts_per_gram=100.0, seed=1)
    raw = [cell.raw_counts(1.0) for _ in range(4000)]
    assert abs(statistics.mean(raw) - (ZERO_COUNTS + 100_000)) < 3
    assert 18 < statistics.pstdev(raw) < 22


def test_drift_moves_the_reading_slowly() -> None:
    cell = LoadCell(1000.0, noise_counts=0.0, drift_g_per_h=12.0, seed=1)
    assert abs(cell.sample(0.0).grams - 1000.0) < 0.01
    assert abs(cell.sample(1800.0).grams - 1006.0) < 0.01


def test_settling_rings_then_reads_the_new_load() -> None:
    cell = LoadCell(1000.0, noise_counts=0.0, settle_s=0.4, seed=1)
    cell.set_load(962.5, 10.0)
    ringing = [cell.sample(10.0 + i * 0.05) for i in range(8)]
    assert all(not s.stable for s in ringing)
    assert max(s.grams for s in ringing) - min(s.grams for s in ringing) > 30
    settled = cell.sample(11.5)
    assert settled.stable
    assert abs(settled.grams - 962.5) < 0.01


def test_overload_is_flagged() -> None:
    cell = LoadCell(10_000_000.0, seed=1)
    assert cell.sample(0.0).overload
