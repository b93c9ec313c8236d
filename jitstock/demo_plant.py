"""The demo plant: its bins, their simulated scales and demand, their suppliers' lead
times, the reorder numbers a planner would start them with, and the edge agents'
configuration files (``jitstock demo``)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from jitstock.demo_history import BinPast
from jitstock.firmware_sim.demand import BinDemand
from jitstock.firmware_sim.fleet import BinSpec
from jitstock.server.seed import BinSeed

SITE = "plant1"
# Parts per hour per bin: high, so that a minute of demo shows orders and deliveries.
DEMO_RATE_RANGE = (600.0, 1500.0)
# Parts one pick takes, by unit weight (g): a kit of small parts for a batch, a few big ones.
# Picks this size keep the synthetic history (one row per pick) to a few hundred thousand rows.
PICK_SIZE_BY_UNIT_G = {2.5: 50, 4.0: 40, 12.5: 24, 18.0: 20, 35.0: 12}
# Unit costs the demo SKUs are drawn from: ABC classes rank consumption by value.
DEMO_UNIT_COSTS = (0.08, 0.25, 0.6, 1.4, 3.5)
# The demo bins use periodic review (R,S) with this period: the demo's stand-in for a
# weekly delivery (the default order cycle, 7 days of demand, would fill a demo bin for
# a week of real time).  The live rule fires at S - d*R for d*R, so a bin cycles every ten
# minutes (two or three orders a minute over the plant) and 15 days of history hold
# about 50,000 orders.
DEMO_REVIEW_S = 600.0
# The slower demo supplier's lead time, relative to --lead-time.
SLOW_SUPPLIER_FACTOR = 1.5
# z of the planner's starting numbers: 99 % of lead times end before the bin runs dry.
DEMO_SAFETY_Z = 2.33
# Sensing the crossing pick and sending the order, before the supplier's lead time starts.
ORDER_LATENCY_S = 2.0


def reorder_numbers(
    parts_per_hour: float,
    lead_time_s: float,
    *,
    intermittent: bool = False,
    burst_gap_s: float = BinDemand.burst_gap_s,
    pick_size: int = 1,
) -> tuple[int, int, int]:
    """(reorder point, order quantity, capacity) a planner would start a demo bin with.

    Reorder point = demand over the lead time (plus the order's own latency) +
    z·σ + one pick (the crossing pick lands below it), with compound Poisson
    picks of ``pick_size`` (σ² = mean · pick size); an intermittent bin's
    bursts (picks ``burst_gap_s`` apart) land several picks in one lead time,
    so its variance is about ``1 + lead / burst_gap_s`` times more, and its
    reorder point holds at least one average batch (``burst_picks`` picks): a
    planner sizes such a bin to absorb the batch that empties it.  The order
    quantity is the demand of one review period (``DEMO_REVIEW_S``) and at
    least the reorder point; capacity is the order-up-to level.  These play
    the synthetic history and hold until the live policy's first computation
    replaces them with learnt numbers.
    """
    per_s = parts_per_hour / 3600.0
    horizon = lead_time_s + ORDER_LATENCY_S
    mean = per_s * horizon
    dispersion = 1.0 + horizon / burst_gap_s if intermittent else 1.0
    rop = math.ceil(
        mean + DEMO_SAFETY_Z * math.sqrt(mean * pick_size * dispersion) + pick_size
    )
    if intermittent:
        rop = max(rop, math.ceil(pick_size * BinDemand.burst_picks))
    qty = 10 * math.ceil(max(rop, per_s * DEMO_REVIEW_S) / 10)
    return rop, qty, 10 * math.ceil((rop + qty) / 10)


@dataclass(frozen=True, slots=True)
class DemoBin:
    """One demo bin: its server record, its simulated scale and its demand."""

    seed: BinSeed
    spec: BinSpec

    def past(self) -> BinPast:
        """What the synthetic history plays for this bin."""
        s = self.spec
        assert self.seed.supplier is not None
        return BinPast(
            s.bin,
            self.seed.sku,
            self.seed.supplier,
            BinDemand(s.parts_per_hour, s.intermittent, s.pick_size),
            self.seed.reorder_point,
            self.seed.order_qty,
            s.count,
        )


def demo_bins(
    agents: int,
    bins_per_agent: int,
    seed: int,
    lead_times: dict[str, float] | None = None,
) -> tuple[list[BinSeed], list[BinSpec]]:
    """The demo plant: server-side bin records and the matching simulated scales.

    ``lead_times`` (supplier id -> seconds) sizes each bin's reorder point and
    order quantity for the supplier that serves it (see ``reorder_numbers``).
    """
    bins = demo_plant(agents, bins_per_agent, seed, lead_times)
    return [b.seed for b in bins], [b.spec for b in bins]


def demo_plant(
    agents: int,
    bins_per_agent: int,
    seed: int,
    lead_times: dict[str, float] | None = None,
) -> list[DemoBin]:
    """The demo plant's bins (see ``demo_bins``)."""
    leads = lead_times or {"acme": 25.0, "borg": 25.0 * SLOW_SUPPLIER_FACTOR}
    rnd = random.Random(seed)
    out: list[DemoBin] = []
    for a in range(1, agents + 1):
        agent = f"line{a}-pi"
        for i in range(1, bins_per_agent + 1):
            bin_id = f"L{a}-B{i:02d}"
            unit = rnd.choice(sorted(PICK_SIZE_BY_UNIT_G))
            tare = rnd.choice([350.0, 500.0, 800.0])
            rate = rnd.uniform(*DEMO_RATE_RANGE)
            cost = rnd.choice(DEMO_UNIT_COSTS)
            pick = PICK_SIZE_BY_UNIT_G[unit]
            intermittent = i % 5 == 0
            supplier = "acme" if i % 3 else "borg"
            rop, qty, capacity = reorder_numbers(
                rate, leads[supplier], intermittent=intermittent, pick_size=pick
            )
            start = rnd.randint(rop + 4, capacity)
            bin_seed = BinSeed(
                bin_id,
                agent,
                f"SKU-{a}{i:02d}",
                unit,
                tare,
                rop,
                qty,
                capacity,
                supplier,
                area=f"Area {a}",
                line=f"Line {a}",
                lead_time_s=math.ceil(leads[supplier]),
                unit_cost=cost,
                policy="R,S",
                review_period_days=DEMO_REVIEW_S / 86_400,
            )
            spec = BinSpec(
                bin_id,
                protocol="sics" if i % 4 == 0 else "stream",
                unit_weight_g=unit,
                count=start,
                tare_g=tare,
                parts_per_hour=rate,
                intermittent=intermittent,
                pick_size=pick,
                capacity=capacity,
            )
            out.append(DemoBin(bin_seed, spec))
    return out


def write_edge_config(
    path: Path,
    agent: str,
    mqtt_url: str,
    scales: list[tuple[str, str, str]],
    workdir: Path,
) -> None:
    """A jitstock-edge TOML file for one agent reading the given simulated ports."""
    lines = [
        f'site = "{SITE}"',
        f'agent = "{agent}"',
        f'mqtt_url = "{mqtt_url}"',
        f'outbox_path = "{workdir / (agent + "-outbox.db")}"',
        "tick_s = 0.2",
        "",
    ]
    for bin_id, port, protocol in scales:
        lines += [
            "[[scales]]",
            f'port = "{port}"',
            f'bin = "{bin_id}"',
            f'protocol = "{protocol}"',
            "",
        ]
    lines += [
        "[signal]",
        "step_g = 2.0",
        "keepalive_s = 30.0",
        "stability_window_s = 0.6",
    ]
    path.write_text("\n".join(lines) + "\n")
