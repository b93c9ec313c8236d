"""The resend bench's rate sweep: the highest rate a server sustains under the re-send load.

Rates are tried from the lowest up, one phase of SWEEP_S each; a phase is sustained when
every reading it published was applied and the ingest lag p99 stayed within
SUSTAINED_LAG_P99_S.  The phase itself (load, counters, trigger latency) is the caller's
(:mod:`jitstock.bench.resend` measures one the same way as its trigger run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# Each sweep phase of the sustained-rate search runs this long.
SWEEP_S = 10.0
SUSTAINED_LAG_P99_S = 1.0
# Bins crossing their reorder point in each sweep phase (trigger latency at each rate).
SWEEP_CROSSINGS = 60
# The sweep (rates tried from the lowest up) stops after this many failed phases in a row.
SWEEP_STOP_FAILURES = 2

# rate (readings/s), seconds, crossings -> the phase's numbers, "sustained" among them
Phase = Callable[[int, float, int], dict[str, Any]]


def sustained(
    applied: int, sent: int, caught_up: bool, lag_p99_s: float | None
) -> bool:
    """Whether a phase held its rate: nothing lost, caught up, lag p99 within bounds (no
    lag figure counts as a failure)."""
    return applied == sent and caught_up and (lag_p99_s or 99) <= SUSTAINED_LAG_P99_S


def sweep(rates: Iterable[int], phase: Phase) -> dict[str, Any]:
    """Run `phase` at each rate from the lowest up until keep_sweeping says stop; the
    phases (under "sweep") and their sustained_summary."""
    phases: list[dict[str, Any]] = []
    for r in sorted(set(rates)):
        phases.append(phase(r, SWEEP_S, SWEEP_CROSSINGS))
        if not keep_sweeping(phases):
            break
    return {"sweep": phases, **sustained_summary(phases)}


def keep_sweeping(phases: list[dict[str, Any]]) -> bool:
    """Whether to try the next (higher) rate: not after SWEEP_STOP_FAILURES failed
    phases in a row (one failure can be a busy moment of the machine; higher rates
    only take longer to fail)."""
    tail = phases[-SWEEP_STOP_FAILURES:]
    return len(tail) < SWEEP_STOP_FAILURES or any(p["sustained"] for p in tail)


def sustained_summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest rate sustained (zero loss, lag p99 <= 1 s): the highest target rate
    of any sustained phase, and the highest below the first failure (the strict one)."""
    ok = [p for p in phases if p["sustained"]]
    strict = 0
    for p in phases:
        if not p["sustained"]:
            break
        strict = p["target_readings_s"]
    failed = [p["target_readings_s"] for p in phases if not p["sustained"]]
    return {
        "max_sustained_readings_s": max(
            (p["published_readings_s"] for p in ok), default=0
        ),
        "max_sustained_target_readings_s": max(
            (p["target_readings_s"] for p in ok), default=0
        ),
        "sustained_below_first_failure_readings_s": strict,
        "lowest_failed_target_readings_s": min(failed, default=None),
    }
