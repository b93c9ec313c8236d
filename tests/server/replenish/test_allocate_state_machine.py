"""The class allocation's memory as a state machine: full runs, single-bin recalculations, own targets.

A hypothesis ``RuleBasedStateMachine`` drives the real recalculation on a
real SQLite state DB (six bins of one SKU, class A) and checks each bin's
stored target against an independent model of what it should be: an unranked SKU gets the B target; a bin with
a target of its own keeps it and carries no class multiplier; otherwise a
full run gives it the run's multiplier, and a single-bin recalculation by a
fresh ``Recalculator`` (what ``POST …/policy/recalculate`` does) reuses the
multiplier the bin last stored — or, if the bin last had a target of its
own, falls back to the plain class target until the next full run.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from jitstock.server.db.migrate import upgrade
from jitstock.server.db.models import Bin
from jitstock.server.db.replenish_models import BinPolicy
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.replenish import allocate
from jitstock.server.replenish.demand import DAY_MS
from jitstock.server.replenish.recalc import Recalculator
from tests.server.db_factories import seed
from tests.server.replenish.conftest import ManualClock, add_deliveries, add_picks
from tests.server.replenish.test_allocate_live import add_lumps

NOW = 1_800_000_000_000
BINS = tuple(f"bin-{i}" for i in range(6))
_TEMPLATE: Path | None = None


def _template() -> Path:
    """One migrated, seeded SQLite file; each example works on a copy."""
    global _TEMPLATE
    if _TEMPLATE is None:
        path = Path(tempfile.mkdtemp(prefix="jitstock-alloc-sm-")) / "state.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        seed(factory, bins=len(BINS), on_hand=5000)
        for i, rate in enumerate((20.0, 4.0, 9.0)):
            add_picks(factory, BINS[i], NOW - 90 * DAY_MS, 90, rate, seed=i)
        # lumpy bins: with them the allocation beats one target for all (a real λ)
        for i, (p, lot) in enumerate(((0.12, 120.0), (0.3, 20.0), (0.08, 60.0))):
            add_lumps(factory, BINS[3 + i], NOW, 90, p, lot, seed=10 + i)
        add_deliveries(factory, BINS[0], NOW - 50 * DAY_MS, 8, 4.0)
        engine.dispose()
        _TEMPLATE = path
    return _TEMPLATE


class AllocationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="jitstock-alloc-sm-"))
        shutil.copy(_template(), self.dir / "state.db")
        self.engine = make_engine(f"sqlite:///{self.dir / 'state.db'}")
        self.factory = make_session_factory(self.engine)
        self.clock = ManualClock(NOW)
        # model: each bin's own target (None: its class's), and the multiplier it last stored
        self.own: dict[str, float | None] = dict.fromkeys(BINS)
        self.stored: dict[str, float | None] = dict.fromkeys(BINS)
        self.computed: set[str] = set()
        # the SKU has no ABC class until a full run ranks it (unclassified: the B target)
        self.ranked = False

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _row(self, bin_id: str) -> dict:
        with transaction(self.factory, readonly=True) as s:
            row = s.get(BinPolicy, bin_id)
            assert row is not None
            return dict(row.inputs["target"])

    @rule(bin_id=st.sampled_from(BINS), level=st.sampled_from([None, 0.93, 0.98]))
    def set_own_target(self, bin_id: str, level: float | None) -> None:
        with transaction(self.factory) as s:
            s.get(Bin, bin_id).service_level = level
        self.own[bin_id] = level

    @rule()
    def full_run(self) -> None:
        self.clock.now_ms += 3_600_000
        recalc = Recalculator(self.factory, clock=self.clock)
        recalc.recalc_all()
        self.ranked = True
        lam = recalc.class_plans["A"]["multiplier"] if recalc.class_plans else None
        for b in BINS:
            self.computed.add(b)
            if self.own[b] is None:
                self.stored[b] = None if lam is None or math.isnan(lam) else lam
                event(f"full run, multiplier {'stored' if self.stored[b] else 'none'}")
                t = self._row(b)
                assert t["service_level_source"] == allocate.SOURCE
                assert t["class_multiplier"] == self.stored[b]
            else:
                self.stored[b] = None

    @rule(bin_id=st.sampled_from(BINS))
    def recalc_one(self, bin_id: str) -> None:
        self.clock.now_ms += 60_000
        Recalculator(self.factory, clock=self.clock).recalc_bins([bin_id], "manual")
        self.computed.add(bin_id)
        t = self._row(bin_id)
        if self.own[bin_id] is not None:
            assert t["service_level_source"] == "bin"
            assert t["service_level"] == self.own[bin_id]
            assert "class_multiplier" not in t
            self.stored[bin_id] = None
            return
        if not self.ranked:
            assert t["service_level_source"] == "unclassified_default_B"
            assert t["service_level"] == 0.97
            return
        assert t["class_target"] == 0.99
        if self.stored[bin_id] is not None:
            # the bin's share from the multiplier it stored with its last computation
            assert t["class_multiplier"] == self.stored[bin_id]
            assert t["service_level_source"] == allocate.SOURCE
            assert t["part_floor"] <= t["fill_floor"]
            assert t["service_level"] >= t["part_floor"] - 1e-9
        elif t["service_level_source"] == "abc":
            # never allocated (or last computed with a target of its own): the class target
            assert t["service_level"] == 0.99
            assert t["class_multiplier"] is None

    @invariant()
    def own_targets_are_never_overridden(self) -> None:
        for b in self.computed:
            t = self._row(b)
            if t["service_level_source"] == "bin":
                assert t["service_level"] in (0.93, 0.98)
            else:
                assert np.isfinite(t["service_level"])
                assert 0.9 - 1e-9 <= t["service_level"] < 1


AllocationMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAllocationMachine = pytest.mark.slow(AllocationMachine.TestCase)
