"""Closed-loop fill: each (ABC class, lumpy or not) group's plan corrected by the fill it has delivered.

The plan aims at a fill on lead-time demand draws, and what a group of bins
then achieves falls short of it by an amount no back-test predicts well
(lumpy parts most: docs/replenishment-benchmark.md, rounds 5 and 7).  So the
server measures what it delivered and corrects the plan for it, as a
controller would.

The measured signal is what the server knows of its own bins: the time each
bin stood empty times its demand rate, plus, for each pick that emptied it,
the expected part of that pick it could not serve given the units it found
(``excess_short``, from the bin's own past pick sizes), is the demand it
could not serve (``estimated short``); the time times the rate is the
demand it was asked for.  Summed over a group since the controller started, their ratio
against the allowed shortage (1 − β)·demand is the realized shortfall ratio
r — 1 on target, 2 for twice the shortage allowed.

The group's planning multiplier f divides its allowed shortage (as the
back-test calibration does, ``allocate.allocate``'s ``calibration``): the
plan aims at 1 − (1 − β)/f.  At each recalculation, with e = log r (clipped
to ±``MAX_ERROR``) once the group has ``min_days`` of observed demand-days:

    integral ← integral + ki·e      (not where the output is clipped and e pushes past the bound)
    log f    ← clip(kp·e + integral, log f_min, log f_max)

so the integral stays within [log f_min, log f_max] (anti-windup).

Integral action on the *cumulative* ratio is what makes the year's fill
land on β: a group behind keeps a raised aim until its cumulative shortage is
back at the allowance.  The state is four numbers per group
(``GroupState``); the server persists it, so a restart resumes the loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# The group of a lumpy bin (Syntetos–Boylan, on the bin's own window) is its class and this.
LUMPY_SUFFIX = "/lumpy"
# A log shortfall ratio beyond this (a factor of 4) is a demand shock, not a plan error.
MAX_ERROR = math.log(4.0)
# Pseudo-picks at the tail's excess in ``excess_short`` (a prior: one pick's worth of evidence).
TAIL_WEIGHT = 1.0


@dataclass(slots=True, frozen=True)
class Settings:
    """Controller gains and bounds (log-space PI on the cumulative shortfall ratio)."""

    kp: float = 0.5
    ki: float = 0.15
    min_mult: float = 0.5
    max_mult: float = 6.0
    # days the group has been observed before the controller acts (a month of evidence)
    min_days: float = 28.0

    def __post_init__(self) -> None:
        for name in ("kp", "ki", "min_mult", "max_mult", "min_days"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise TypeError(f"{name} must be a number")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and >= 0")
        if not 0 < self.min_mult <= 1 <= self.max_mult:
            raise ValueError("need 0 < min_mult <= 1 <= max_mult")


@dataclass(slots=True, frozen=True)
class GroupState:
    """One group's controller: cumulative estimated short and asked units, its integral and multiplier."""

    short: float = 0.0
    asked: float = 0.0
    days: float = 0.0
    integral: float = 0.0
    log_mult: float = 0.0

    @property
    def multiplier(self) -> float:
        """The factor dividing the group's allowed shortage."""
        return math.exp(self.log_mult)

    def to_json(self) -> dict[str, float]:
        """Plain numbers for storage."""
        return {
            "short": self.short,
            "asked": self.asked,
            "days": self.days,
            "integral": self.integral,
            "log_mult": self.log_mult,
        }

    @staticmethod
    def from_json(doc: Any, settings: Settings | None = None) -> GroupState:
        """A stored state; anything malformed starts the group afresh (never a crash, never a wild f)."""
        st = settings or Settings()
        if not isinstance(doc, Mapping):
            return GroupState()
        vals = {}
        for key in ("short", "asked", "days", "integral", "log_mult"):
            v = doc.get(key, 0.0)
            if isinstance(v, bool) or not isinstance(v, int | float):
                return GroupState()
            v = float(v)
            if not math.isfinite(v):
                return GroupState()
            vals[key] = v
        if vals["short"] < 0 or vals["asked"] < 0 or vals["days"] < 0:
            return GroupState()
        lo, hi = math.log(st.min_mult), math.log(st.max_mult)
        vals["log_mult"] = min(max(vals["log_mult"], lo), hi)
        vals["integral"] = min(max(vals["integral"], lo), hi)
        return GroupState(**vals)


def excess_short(sizes: FloatArray, left: FloatArray) -> FloatArray:
    """Expected units a pick that emptied a bin could not serve, given the units it found left.

    What the server saw is a pick X that took everything, X ≥ y; what it
    could not serve is X − y.  Estimated per emptying as E[X − y | X ≥ y]
    over the bin's own past pick sizes (its demand window, zeros ignored),
    with one pseudo-pick at the tail's excess: a gamma's mean excess over a
    high y tends to its scale, mean·CV² — which is what the window cannot
    show where y is above nearly every pick it holds (a lumpy part's rare
    large lot).  This is what the time at zero misses: a lot that empties
    the bin leaves most of itself unserved at one instant.
    """
    x = np.asarray(sizes, np.float64).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    y = np.atleast_1d(np.asarray(left, np.float64))
    if x.size == 0:
        return np.zeros(y.shape)
    mean = float(x.mean())
    cv2 = float(x.var(ddof=1)) / mean**2 if x.size > 1 else 1.0
    tail = mean * cv2
    over = x[None, :] - np.where(np.isfinite(y), y, 0.0)[:, None]
    hit = over >= 0
    total = np.where(hit, over, 0.0).sum(axis=1) + TAIL_WEIGHT * tail
    return np.asarray(total / (hit.sum(axis=1) + TAIL_WEIGHT), np.float64)


def group_of(abc_class: str, lumpy: bool) -> str:
    """The controller group of a bin: its ABC class, split by the Syntetos–Boylan lumpy class."""
    return f"{abc_class}{LUMPY_SUFFIX}" if lumpy else abc_class


def class_of(group: str) -> str:
    """The ABC class a group belongs to."""
    return group.removesuffix(LUMPY_SUFFIX)


def observe(state: GroupState, short: float, asked: float, days: float) -> GroupState:
    """Add a period's estimated short units, asked units and bin-days to the group's totals."""
    vals = [float(v) for v in (short, asked, days)]
    if not all(math.isfinite(v) and v >= 0 for v in vals):
        return state
    s, a, d = vals
    return replace(
        state, short=state.short + min(s, a), asked=state.asked + a, days=state.days + d
    )


def step(
    state: GroupState, target: float, settings: Settings | None = None
) -> GroupState:
    """One recalculation: the multiplier from the cumulative shortfall ratio (PI, clipped, anti-windup)."""
    st = settings or Settings()
    if not (math.isfinite(target) and 0 < target < 1):
        return state
    allowed = (1 - target) * state.asked
    if state.days < st.min_days or allowed <= 0:
        return state
    # no shortage at all reads as the lowest ratio, not as −∞
    ratio = state.short / allowed
    e = max(-MAX_ERROR, min(MAX_ERROR, math.log(ratio))) if ratio > 0 else -MAX_ERROR
    lo, hi = math.log(st.min_mult), math.log(st.max_mult)
    integral = state.integral + st.ki * e
    raw = st.kp * e + integral
    # anti-windup: where the output is clipped, the integral stops growing past the bound
    # (so it always stays within [log f_min, log f_max])
    if (raw > hi and e > 0) or (raw < lo and e < 0):
        integral = state.integral
    return replace(state, integral=integral, log_mult=min(max(raw, lo), hi))
