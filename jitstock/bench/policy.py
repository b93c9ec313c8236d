"""`jitstock bench policy`: jitstock's replenishment against ERP min/max and textbook ROP, simulated.

The plant and the simulated year are in ``policy_sim``, the policies (jitstock
and the baselines) and their tuning to equal fill in ``policy_rules``; this
module runs seeds and reports.  Cycle service level counts order cycles
(between consecutive orders) without a stockout day.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from jitstock.bench.policy_rules import (
    classic_rule,
    informed_rule,
    jitstock_rule,
    minmax_rule,
    minmax_weekly_rule,
    tune,
    tune_per_class,
)
from jitstock.bench.policy_sim import (
    BACKORDER_RATE_PER_DAY,
    CLASS_TARGETS,
    DAYS,
    HISTORY_DAYS,
    HOLDING_RATE_PER_YEAR,
    ORDER_COST,
    PATTERNS,
    QUICK_SKUS,
    SKUS,
    Plant,
    breakdown,
    make_plant,
    precompute_forecasts,
    simulate,
    summarise,
)
from jitstock.server.replenish import abc
from jitstock.server.replenish.allocate import (
    DEFAULT_BACKORDER_WEIGHT as BACKORDER_WEIGHT,
)
from jitstock.server.replenish.allocate import DEFAULT_FILL_FLOOR as FILL_FLOOR

__all__ = [
    "CLASS_TARGETS",
    "HISTORY_DAYS",
    "PATTERNS",
    "QUICK_SKUS",
    "make_plant",
    "parse_seeds",
    "pattern_targets",
    "print_result",
    "run",
]

# The service-vs-inventory curve of a single-seed run: jitstock targets and min/max factors.
SWEEP_TARGETS = (0.80, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995)
MINMAX_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def pattern_targets(plant: Plant) -> dict[str, float]:
    """Per demand pattern the target its parts' fill is held to: their class targets, demand-weighted.

    A pattern's parts spread over the ABC classes; weighting each part's class
    target by its demand in the simulated year gives the fill the pattern
    would show if every part met its class's target exactly.
    """
    weight = plant.demand[:, HISTORY_DAYS:].sum(axis=1)
    target = abc.service_levels(plant.abc_class, CLASS_TARGETS)
    out = {}
    for i, name in enumerate(PATTERNS):
        m = plant.pattern == i
        w = float(weight[m].sum())
        out[name] = round(float((weight[m] * target[m]).sum()) / w, 5) if w else 1.0
    return out


def run_seed(seed: int, n: int, curve_too: bool) -> dict[str, Any]:
    """One seed: jitstock and every baseline at jitstock's per-class fill."""
    started = time.monotonic()
    plant = make_plant(n, seed)
    fc = precompute_forecasts(plant)
    targets = abc.service_levels(plant.abc_class, CLASS_TARGETS)
    plans: list[dict[str, float]] = []
    jit = simulate(
        plant, jitstock_rule(plant, fc, targets, CLASS_TARGETS, FILL_FLOOR, plans)
    )
    fills = {c: summarise(plant, jit, plant.abc_class == c)["fill_rate"] for c in "ABC"}
    k, informed = tune_per_class(
        lambda kk: simulate(plant, informed_rule(plant, fc, kk)), plant, 0.0, 6.0, fills
    )
    fw, weekly = tune_per_class(
        lambda f: simulate(plant, minmax_weekly_rule(plant, fc, f)),
        plant,
        0.0,
        8.0,
        fills,
    )
    fs, static = tune_per_class(
        lambda f: simulate(plant, minmax_rule(plant, f)), plant, 0.0, 8.0, fills
    )
    classic = simulate(plant, classic_rule(plant, fc, targets))
    results = {
        "jitstock": breakdown(plant, jit),
        "textbook_rop_observed_lt_k_per_class": breakdown(plant, informed),
        "minmax_weekly_per_class": breakdown(plant, weekly),
        "minmax_static_per_class": breakdown(plant, static),
        "classic_rop_quoted_lt": breakdown(plant, classic),
    }
    jv = results["jitstock"]["overall"]["avg_on_hand_value"]
    out: dict[str, Any] = {
        "seed": seed,
        "class_targets": CLASS_TARGETS,
        "jitstock_fill": {
            **fills,
            **{p: results["jitstock"][p]["fill_rate"] for p in PATTERNS},
        },
        "pattern_targets": pattern_targets(plant),
        "fill_floor": FILL_FLOOR,
        "backorder_weight": BACKORDER_WEIGHT,
        # per class, averaged over the weekly recalculations: the demand-weighted fill the
        # allocated plan promised on its draws, and the calibration factor it was raised by
        "jitstock_plan": {
            key: round(float(np.mean([p[key] for p in plans])), 5) for key in plans[0]
        }
        if plans
        else {},
        "tuned": {
            "textbook_k": k,
            "minmax_weekly_factor": fw,
            "minmax_static_factor": fs,
        },
        "saving_vs_textbook_rop": round(
            1
            - jv
            / results["textbook_rop_observed_lt_k_per_class"]["overall"][
                "avg_on_hand_value"
            ],
            4,
        ),
        "saving_vs_minmax_weekly": round(
            1 - jv / results["minmax_weekly_per_class"]["overall"]["avg_on_hand_value"],
            4,
        ),
        "saving_vs_minmax_static": round(
            1 - jv / results["minmax_static_per_class"]["overall"]["avg_on_hand_value"],
            4,
        ),
        "total_cost": {p: r["overall"]["total_cost"] for p, r in results.items()},
        "policies": results,
    }
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def parse_seeds(text: str) -> list[int]:
    """'1-15' or '1,3,5' or '2' -> the seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        seeds.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return seeds


def run_seeds(args: argparse.Namespace) -> dict[str, Any]:
    """``--seeds 1-15``: every seed, and a summary of where the targets hold."""
    started = time.monotonic()
    n = QUICK_SKUS if args.quick else SKUS
    per_seed = [run_seed(sd, n, False) for sd in parse_seeds(args.seeds)]
    summary = []
    for r in per_seed:
        worst = min(r["jitstock_fill"][c] - CLASS_TARGETS[c] for c in "ABC")
        cheapest = min(r["total_cost"], key=r["total_cost"].get)
        summary.append(
            {
                "seed": r["seed"],
                "fill_A": r["jitstock_fill"]["A"],
                "fill_B": r["jitstock_fill"]["B"],
                "fill_C": r["jitstock_fill"]["C"],
                "fill_lumpy": r["jitstock_fill"]["lumpy"],
                "target_lumpy": r["pattern_targets"]["lumpy"],
                "worst_class_gap_pt": round(100 * worst, 2),
                "saving_vs_textbook_rop": r["saving_vs_textbook_rop"],
                "saving_vs_minmax_weekly": r["saving_vs_minmax_weekly"],
                "saving_vs_minmax_static": r["saving_vs_minmax_static"],
                "cheapest_total_cost": cheapest,
                "jitstock_value_weighted_fill": r["policies"]["jitstock"]["overall"][
                    "value_weighted_fill"
                ],
                "orders": {p: v["overall"]["orders"] for p, v in r["policies"].items()},
                "total_cost": r["total_cost"],
            }
        )
    return {
        "skus": n,
        "days": DAYS,
        "cost_rates": {
            "holding_per_year": HOLDING_RATE_PER_YEAR,
            "per_order": ORDER_COST,
            "backorder_per_unit_day_of_unit_cost": BACKORDER_RATE_PER_DAY,
        },
        "summary": summary,
        "seeds": per_seed,
        "seconds": round(time.monotonic() - started, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; JSON-ready nested results."""
    if getattr(args, "seeds", None):
        return run_seeds(args)
    started = time.monotonic()
    # 0 is a valid seed: only a missing one falls back to 1
    raw = getattr(args, "seed", None)
    seed = 1 if raw is None else int(raw)
    n = QUICK_SKUS if args.quick else SKUS
    plant = make_plant(n, seed)
    fc = precompute_forecasts(plant)
    targets = abc.service_levels(plant.abc_class, CLASS_TARGETS)

    jit = simulate(plant, jitstock_rule(plant, fc, targets, CLASS_TARGETS, FILL_FLOOR))
    jit_fill = summarise(plant, jit)["fill_rate"]
    classic = simulate(plant, classic_rule(plant, fc, targets))
    factor, minmax = tune(
        lambda f: simulate(plant, minmax_rule(plant, f)), plant, 0.0, 8.0, jit_fill
    )
    scale, classic_eq = tune(
        lambda c: simulate(plant, classic_rule(plant, fc, targets, c)),
        plant,
        0.0,
        6.0,
        jit_fill,
    )
    results: dict[str, Any] = {
        "jitstock": breakdown(plant, jit),
        "classic_rop": breakdown(plant, classic),
        "classic_rop_equal_fill": breakdown(plant, classic_eq),
        "minmax_equal_fill": breakdown(plant, minmax),
    }
    curve: dict[str, list[dict[str, float]]] = {
        "jitstock": [],
        "classic_rop": [],
        "minmax": [],
    }
    for target in SWEEP_TARGETS:
        flat = np.full(n, target)
        for name, rule in (
            ("jitstock", jitstock_rule(plant, fc, flat)),
            ("classic_rop", classic_rule(plant, fc, flat)),
        ):
            s = summarise(plant, simulate(plant, rule))
            curve[name].append({"target": target, **s})
    for f in MINMAX_FACTORS:
        s = summarise(plant, simulate(plant, minmax_rule(plant, f)))
        curve["minmax"].append({"factor": f, **s})
    jv = results["jitstock"]["overall"]["avg_on_hand_value"]
    mv = results["minmax_equal_fill"]["overall"]["avg_on_hand_value"]
    cv = results["classic_rop_equal_fill"]["overall"]["avg_on_hand_value"]
    per_class = {
        c: {
            "target": CLASS_TARGETS[c],
            "achieved_fill_rate": results["jitstock"][f"abc_{c}"]["fill_rate"],
        }
        for c in ("A", "B", "C")
    }
    return {
        "seed": seed,
        "skus": n,
        "days": DAYS,
        "class_targets": CLASS_TARGETS,
        "mix": {p: int((plant.pattern == i).sum()) for i, p in enumerate(PATTERNS)},
        "reliable_suppliers_share": round(float(plant.reliable.mean()), 3),
        "minmax_factor_at_equal_fill": round(factor, 4),
        "classic_z_scale_at_equal_fill": round(scale, 4),
        "inventory_saving_vs_minmax": round(1 - jv / mv, 4) if mv else None,
        "inventory_saving_vs_classic": round(1 - jv / cv, 4) if cv else None,
        "jitstock_per_class": per_class,
        "policies": results,
        "curve": curve,
        "seconds": round(time.monotonic() - started, 1),
    }


def print_result(result: dict[str, Any]) -> None:
    """Tables: the policies overall and per class, the per-class targets, the curve."""
    if "summary" in result:
        print(f"  {result['skus']} SKUs x {result['days']} days, {result['seconds']} s")
        keys = list(result["summary"][0])
        print("  " + " ".join(f"{k[:22]:>23}" for k in keys))
        for row in result["summary"]:
            print("  " + " ".join(f"{str(row[k]):>23}" for k in keys))
        return
    print(
        f"  {result['skus']} SKUs x {result['days']} days, seed {result['seed']}, "
        f"{result['seconds']} s; min/max factor tuned to {result['minmax_factor_at_equal_fill']}"
    )
    cols = (
        "fill_rate",
        "cycle_service_level",
        "avg_on_hand_units",
        "avg_on_hand_value",
        "stockout_days",
        "orders",
    )
    groups = ["overall", "abc_A", "abc_B", "abc_C", *PATTERNS]
    print(f"  {'policy':<24}{'group':<14}" + "".join(f"{c[:18]:>20}" for c in cols))
    for name, res in result["policies"].items():
        for g in groups:
            row = res[g]
            print(f"  {name:<24}{g:<14}" + "".join(f"{row[c]:>20,}" for c in cols))
    print(
        f"  inventory saving at equal fill rate: vs min/max {result['inventory_saving_vs_minmax']:.1%}, "
        f"vs classic ROP {result['inventory_saving_vs_classic']:.1%}"
    )
    for c, v in result["jitstock_per_class"].items():
        print(
            f"  class {c}: target {v['target']:.2%}  achieved fill {v['achieved_fill_rate']:.2%}"
        )
    print("  service-vs-inventory curve (fill rate -> avg on-hand value):")
    for name, points in result["curve"].items():
        pts = ", ".join(
            f"{p['fill_rate']:.3f}->{p['avg_on_hand_value']:,.0f}" for p in points
        )
        print(f"    {name:<12} {pts}")
