"""Live bin levels from gross weights: counts, confidence, consumption and refill events.

The edge sends gross grams; the server owns tare and unit weight, so a
recalibration re-derives counts without touching the Pi.  Counts are absolute
(round((gross - tare) / unit weight)), never accumulated deltas, so a lost or
re-sent reading cannot drift a level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Confidence is halved for a reading the scale did not call stable (keep-alives of a moving load).
UNSTABLE_CONFIDENCE_FACTOR = 0.5


@dataclass(slots=True, frozen=True)
class BinCalibration:
    """What the server needs to turn one bin's grams into a count."""

    bin_id: str
    site_id: str
    agent_id: str
    tare_g: float
    unit_weight_g: float
    reorder_point: int = 0


def counts_from_grams(
    grams: npt.NDArray[np.float64],
    tare_g: npt.NDArray[np.float64],
    unit_g: npt.NDArray[np.float64],
    stable: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Vectorised counts and confidences (1 = exactly on an integer, 0 = half-way between)."""
    quotient = (grams - tare_g) / unit_g
    counts = np.rint(quotient)
    confidence = 1.0 - 2.0 * np.abs(quotient - counts)
    confidence = np.where(stable, confidence, confidence * UNSTABLE_CONFIDENCE_FACTOR)
    counts = np.maximum(counts, 0.0)
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
