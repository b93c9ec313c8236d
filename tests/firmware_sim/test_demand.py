"""Demand model: long-run rates, intermittent bursts, scripted and clocked runs on a fleet."""

from __future__ import annotations

import time
from collections import Counter

from jitstock.clock import ScaledClock
from jitstock.firmware_sim.demand import BinDemand, DemandModel
from jitstock.firmware_sim.fleet import BinSpec, SimulatedFleet

HOURS = 500


def test_long_run_rates_match_the_schedule() -> None:
    model = DemandModel(
        {"smooth": BinDemand(120.0), "lumpy": BinDemand(60.0, intermittent=True)},
        seed=3,
    )
    parts = Counter[str]()
    for ev in model.until(HOURS * 3600.0):
        parts[ev.bin] += ev.n
    assert abs(parts["smooth"] / HOURS - 120.0) < 6
    assert abs(parts["lumpy"] / HOURS - 60.0) < 10


def test_intermittent_bins_are_quiet_most_periods() -> None:
    model = DemandModel(
        {"smooth": BinDemand(120.0), "lumpy": BinDemand(12.0, intermittent=True)},
        seed=4,
    )
    busy: dict[str, set[int]] = {"smooth": set(), "lumpy": set()}
    for ev in model.until(HOURS * 3600.0):
        busy[ev.bin].add(int(ev.t // 600))  # 10-minute periods
    periods = HOURS * 6
    assert len(busy["smooth"]) > 0.99 * periods
    assert (
        periods / len(busy["lumpy"]) > 1.32
    )  # average inter-demand interval: intermittent


def test_same_seed_same_schedule() -> None:
    def events(seed: int) -> list[tuple[float, str, int]]:
        m = DemandModel(
            {"a": BinDemand(100.0), "b": BinDemand(30.0, intermittent=True)}, seed
        )
        return [(e.t, e.bin, e.n) for e in m.until(36_000.0)]

    assert events(9) == events(9)
    assert events(9) != events(10)


def test_fleet_picks_by_script_and_by_demand_faster_than_real_time() -> None:
    clock = ScaledClock(3600.0)  # an hour a second
    specs = [
        BinSpec("B1", count=1000, parts_per_hour=600.0),
        BinSpec("B2", "sics", count=50, parts_per_hour=600.0, unit_weight_g=4.0),
    ]
    with SimulatedFleet(specs, clock, seed=2, rate_hz=5.0) as fleet:
        assert fleet.pick("B1", 3) == 3
        fleet.refill("B1", 1)
        assert fleet.count("B1") == 998
        assert fleet.scales["B2"].gross_g == 500.0 + 50 * 4.0
        runner = fleet.run_demand(auto_refill=True)
        time.sleep(1.0)
        runner.stop()
        assert (
            runner.parts > 300
        )  # ~1,200 parts due in the simulated hour, loaded machines lag
        assert fleet.count("B1") < 998
        assert runner.refills >= 1  # B2 (50 parts, 600/h) ran dry and was topped up
        assert 0 <= fleet.count("B2") <= 50
