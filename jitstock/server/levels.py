"""Live bin levels from gross weights: counts, confidence, consumption and refill events.

The edge sends gross grams; the server owns tare and unit weight, so a
recalibration re-derives counts without touching the Pi.  Counts are absolute
(round((gross - tare) / unit weight)), never accumulated deltas, so a lost or
re-sent reading cannot drift a level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Confidence is halved for a reading the scale did not call stable (keep-alives of a moving load).
UNSTABLE_CONFIDENCE_FACTOR = 0.5
# Lightest part counted by weight (1 mg): below it a load cell's noise is many parts, and
# a denormal like 5e-324 would make every count infinite.
MIN_UNIT_WEIGHT_G = 0.001
# Tare beyond the heaviest gross weight the wire accepts is a typing error.
MAX_TARE_G = 2_000_000.0
# Largest count stored: bins.on_hand is a 32-bit INTEGER (2 t of 1 mg parts is 2e9, below it).
MAX_COUNT = 2**31 - 1
# A weight clearly below the empty bin's (its tare) is not a level but a scale that is not
# weighing: an indicator restarting reads 0 g, a load cell lifted or unplugged reads less
# than the bin.  "Clearly": by more than half a part, 2 % of the tare and 5 g (a zero that
# drifts a few grams, or a tare measured a little heavy, still reads as an empty bin).
BELOW_TARE_FRACTION = 0.02
BELOW_TARE_MIN_G = 5.0


@dataclass(slots=True, frozen=True)
class BinCalibration:
    """What the server needs to turn one bin's grams into a count."""

    bin_id: str
    site_id: str
    agent_id: str
    tare_g: float
    unit_weight_g: float
    reorder_point: int = 0


def calibration_problem(
    tare_g: float | None, unit_weight_g: float | None
) -> str | None:
    """Why a bin's tare and unit weight cannot turn grams into counts, or None if they can."""
    if unit_weight_g is None or not math.isfinite(unit_weight_g):
        return "no finite unit weight"
    if unit_weight_g < MIN_UNIT_WEIGHT_G:
        return f"unit weight {unit_weight_g!r} g below {MIN_UNIT_WEIGHT_G} g"
    if tare_g is None or not math.isfinite(tare_g) or abs(tare_g) > MAX_TARE_G:
        return f"tare {tare_g!r} g not finite or beyond {MAX_TARE_G:g} g"
    return None


def tare_floor(
    tare_g: npt.NDArray[np.float64], unit_g: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """The lightest weight of each bin that is still an empty bin (or fuller): its tare
    less max(half a part, 2 % of the tare, 5 g).  NaN for a NaN tare."""
    with np.errstate(all="ignore"):
        # fmax: a NaN unit weight (never registered, see calibration_problem) leaves
        # the other terms
        slack = np.fmax(0.5 * unit_g, BELOW_TARE_FRACTION * np.abs(tare_g))
        out: npt.NDArray[np.float64] = tare_g - np.fmax(slack, BELOW_TARE_MIN_G)
    return out


def below_tare(
    grams: npt.NDArray[np.float64],
    tare_g: npt.NDArray[np.float64],
    unit_g: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Readings clearly below their bin's tare: held, not counted (the level stays where the
    scale last weighed it; ``scale_fault`` says why).  False for NaN anywhere."""
    with np.errstate(all="ignore"):
        return np.asarray(grams < tare_floor(tare_g, unit_g))


def tare_fault(
    grams: float | None, tare_g: float | None, unit_g: float | None
) -> str | None:
    """Why a bin's last weight is not a level (it reads clearly below the bin's tare), or None."""
    if grams is None or tare_g is None or unit_g is None:
        return None
    if not below_tare(np.array([grams]), np.array([tare_g]), np.array([unit_g]))[0]:
        return None
    return (
        f"weight {grams:g} g is below the empty bin's tare of {tare_g:g} g: the scale is "
        "not weighing (restarting, lifted or unplugged) or the tare is wrong; the level "
        "is held at its last count"
    )


def scale_health(
    sensor_ok: bool,
    sensor_fault: str | None,
    grams: float | None,
    tare_g: float | None,
    unit_g: float | None,
) -> tuple[bool, str | None]:
    """A bin's scale health: the fault its agent reported, else a weight below tare."""
    if not sensor_ok:
        return False, sensor_fault
    fault = tare_fault(grams, tare_g, unit_g)
    return fault is None, fault


def counts_from_grams(
    grams: npt.NDArray[np.float64],
    tare_g: npt.NDArray[np.float64],
    unit_g: npt.NDArray[np.float64],
    stable: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Vectorised counts and confidences (1 = exactly on an integer, 0 = half-way between).

    Never yields inf or NaN: a quotient that is not finite (a calibration that
    :func:`calibration_problem` would refuse) gives count 0 with confidence 0,
    and counts are clipped to 0..MAX_COUNT.
    """
    with np.errstate(all="ignore"):
        quotient = (grams - tare_g) / unit_g
        bad = ~np.isfinite(quotient)
        quotient = np.where(bad, 0.0, np.clip(quotient, -1.0, float(MAX_COUNT)))
        counts = np.rint(quotient)
        confidence = 1.0 - 2.0 * np.abs(quotient - counts)
    confidence = np.where(stable, confidence, confidence * UNSTABLE_CONFIDENCE_FACTOR)
    confidence = np.where(bad, 0.0, confidence)
    counts = np.clip(counts, 0.0, float(MAX_COUNT))
    return counts.astype(np.int64), np.clip(confidence, 0.0, 1.0)


def count_of(grams: float, tare_g: float, unit_weight_g: float) -> tuple[int, float]:
    """Scalar count and confidence for one weight (API, recalibration)."""
    c, conf = counts_from_grams(
        np.array([grams]),
        np.array([tare_g]),
        np.array([unit_weight_g]),
        np.array([True]),
    )
    return int(c[0]), float(conf[0])
