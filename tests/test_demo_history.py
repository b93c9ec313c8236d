"""The demo's made-up history is consistent with the level the live demo starts at.

Every order the history records as delivered has its refill in the history and in
the bin's last level; an order still on its way at the history's end is open (for
the live demo's supplier to deliver), so no bin starts at or below its reorder
point without an order coming: the live demo does not order that crossing again.
"""

from __future__ import annotations

import pytest

from jitstock.demo import (
    DEMO_EARLY_S,
    DEMO_LATE_FRACTION,
    DEMO_UNRELIABLE_LATE_FRACTION,
)
from jitstock.demo_history import SupplierHabits, build_history
from jitstock.demo_plant import SLOW_SUPPLIER_FACTOR, demo_plant
from jitstock.server.db.models import AWAITING_DELIVERY_STATES

NOW_MS = 1_796_088_171_000
LEAD_S = 25.0  # `jitstock demo --lead-time` default
LEADS = {"acme": LEAD_S, "borg": LEAD_S * SLOW_SUPPLIER_FACTOR}
HABITS = {
    "acme": SupplierHabits(
        LEADS["acme"], 1.0, min(DEMO_EARLY_S, LEADS["acme"] / 4), DEMO_LATE_FRACTION
    ),
    "borg": SupplierHabits(
        LEADS["borg"],
        3.0,
        min(DEMO_EARLY_S, LEADS["borg"] / 4),
        DEMO_UNRELIABLE_LATE_FRACTION,
    ),
}


@pytest.mark.parametrize("seed", [1, 2, 7])  # 1: the demo's default
def test_history_ends_where_the_scales_start(seed: int) -> None:
    plant = demo_plant(2, 12, seed, LEADS)
    pasts = {b.spec.bin: b.past() for b in plant}
    histories = build_history("s", list(pasts.values()), HABITS, NOW_MS, seed=seed)
    problems: list[str] = []
    for bin_id, h in histories.items():
        past = pasts[bin_id]
        assert h.events, bin_id
        ts = [e["ts_ms"] for e in h.events]
        assert ts == sorted(ts), bin_id
        assert ts[-1] < NOW_MS, bin_id
        if h.final_count != h.events[-1]["on_hand_after"]:
            problems.append(
                f"{bin_id}: starts at {h.final_count}, history ended at "
                f"{h.events[-1]['on_hand_after']}"
            )
        refills = {(e["ts_ms"], e["delta"]) for e in h.events if e["kind"] == "refill"}
        closed = [o for o in h.orders if o["state"] == "closed"]
        open_ = [o for o in h.orders if o["state"] != "closed"]
        for o in closed:
            if o["delivered_ms"] >= NOW_MS:
                problems.append(f"{bin_id}: order delivered after the history's end")
            if (o["delivered_ms"], o["qty"]) not in refills:
                problems.append(
                    f"{bin_id}: order {o['id'][:8]} delivered with no refill"
                )
        if len(refills) != len(closed):
            problems.append(f"{bin_id}: {len(refills)} refills, {len(closed)} orders")
        for o in open_:
            assert o["state"] in AWAITING_DELIVERY_STATES, o
            assert o["delivered_ms"] is None, o
            assert o["closed_ms"] is None, o
            assert o is h.orders[-1], f"{bin_id}: an open order before the last"
        if h.final_count <= past.reorder_point and not open_:
            problems.append(
                f"{bin_id}: starts at {h.final_count} <= reorder point "
                f"{past.reorder_point} with no order on its way"
            )
    assert not problems, problems
