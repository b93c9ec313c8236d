"""`make demo` runs `jitstock demo`: for 60 s it must fire orders and see deliveries."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from jitstock.demo_plant import SLOW_SUPPLIER_FACTOR, demo_bins
from tests.services import free_port

DEMO_SECONDS = 60


@pytest.mark.slow
def test_demo_fires_orders_and_deliveries(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jitstock.cli",
            "demo",
            "--duration",
            str(DEMO_SECONDS),
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        # a guard against a hang, not a stopwatch: start-up is slow on a busy machine
        timeout=DEMO_SECONDS + 600,
        env={k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    orders = re.findall(r"ORDER +(\w{8}) +bin (\S+)", out.stdout)
    deliveries = re.findall(r"DELIVERY +(\w{8}) +bin (\S+)", out.stdout)
    assert orders, out.stdout
    assert deliveries, out.stdout
    # every delivery answers an order fired in this run, and no order is delivered twice
    assert {d[0] for d in deliveries} <= {o[0] for o in orders}
    assert len({d[0] for d in deliveries}) == len(deliveries)
    # one open order per bin: a bin is not ordered again before its delivery arrives
    open_bins: set[str] = set()
    for line in out.stdout.splitlines():
        m = re.search(r"(ORDER|DELIVERY) +\w{8} +bin (\S+)", line)
        if not m:
            continue
        kind, bin_id = m.groups()
        if kind == "ORDER":
            assert bin_id not in open_bins, f"second open order for {bin_id}"
            open_bins.add(bin_id)
        else:
            open_bins.discard(bin_id)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]


def test_demo_reorder_points_cover_demand_over_the_lead_time() -> None:
    leads = {"acme": 25.0, "borg": 25.0 * SLOW_SUPPLIER_FACTOR}
    seeds, specs = demo_bins(2, 12, 1, leads)
    for b, spec in zip(seeds, specs, strict=True):
        assert b.supplier is not None
        over_lead = spec.parts_per_hour / 3600 * leads[b.supplier]
        # mean demand over the lead time plus safety stock, and an order that outlasts it
        assert b.reorder_point > over_lead + 2 * over_lead**0.5, b
        assert b.order_qty >= b.reorder_point, b
        assert b.capacity == spec.capacity >= b.reorder_point + b.order_qty, b
        assert b.reorder_point < spec.count <= spec.capacity, (b, spec)
        assert b.lead_time_s == math.ceil(leads[b.supplier]), b
