"""Load cell model: what an HX711-based scale controller would display for a given load.

Raw reading = zero offset + load x counts_per_gram + Gaussian noise (HX711 at 10 SPS,
gain 128: about 20 counts rms) + slow drift, clipped to the 24-bit signed range.
After a load change the mechanics ring: a decaying oscillation lasting `settle_s`,
during which the controller flags its frames unstable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# 24-bit signed ADC range
ADC_MIN = -(1 << 23)
ADC_MAX = (1 << 23) - 1
# Typical HX711 + 5 kg cell calibration: ~100 counts per gram, so 20 counts rms = 0.2 g rms.
DEFAULT_COUNTS_PER_GRAM = 100.0
# Raw offset with nothing on the platform (the controller subtracts its calibrated zero).
ZERO_COUNTS = 40_000
# Ringing frequency of a loaded bin on its platform: slower than the 10 Hz frame rate, so it shows.
RING_HZ = 3.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One converted reading: grams as the controller computes them, its stability flag, overload."""

    grams: float
    stable: bool
    overload: bool


class LoadCell:
    """A load cell plus ADC; `set_load` at a time, `sample` at a later time (clock seconds)."""

    def __init__(
        self,
        load_g: float,
        *,
        counts_per_gram: float = DEFAULT_COUNTS_PER_GRAM,
        noise_counts: float = 20.0,
        drift_g_per_h: float = 0.0,
        settle_s: float = 0.4,
        seed: int = 0,
        t0: float = 0.0,
    ) -> None:
        self.counts_per_gram = counts_per_gram
        self.noise_counts = noise_counts
        self.drift_g_per_h = drift_g_per_h
        self.settle_s = settle_s
        self._rng = random.Random(seed)
        self._t0 = t0
        self._load = load_g
        self._from = load_g
        self._changed_at = t0 - settle_s * 10

    @property
    def load_g(self) -> float:
        """The true load on the platform."""
        return self._load

    def set_load(self, load_g: float, t: float) -> None:
        """Change the load at time t; the reading rings from where it was towards the new load."""
        self._from = self.mechanical_g(t)
        self._load = load_g
        self._changed_at = t

    def mechanical_g(self, t: float) -> float:
        """Noise-free force on the cell at time t, including the ringing after a change."""
        dt = t - self._changed_at
        if dt >= self.settle_s * 3 or self.settle_s <= 0:
            return self._load
        # amplitude falls to ~2 % by settle_s (e^-4) and the ringing starts at the old load
        tau = self.settle_s / 4.0
        return self._load + (self._from - self._load) * math.exp(-dt / tau) * math.cos(
            2 * math.pi * RING_HZ * dt
        )

    def raw_counts(self, t: float) -> int:
        """The 24-bit ADC reading at time t."""
        drift_g = self.drift_g_per_h * (t - self._t0) / 3600.0
        counts = (
            ZERO_COUNTS
            + (self.mechanical_g(t) + drift_g) * self.counts_per_gram
            + self._rng.gauss(0.0, self.noise_counts)
        )
        return int(min(ADC_MAX, max(ADC_MIN, round(counts))))

    def sample(self, t: float) -> Sample:
        """What the controller displays at time t."""
        raw = self.raw_counts(t)
        overload = raw >= ADC_MAX or raw <= ADC_MIN
        grams = (raw - ZERO_COUNTS) / self.counts_per_gram
        stable = (t - self._changed_at) >= self.settle_s
        return Sample(grams, stable, overload)
