"""Per-scale signal path: median filter, stability detection with hysteresis, change and keep-alive output.

Pure and I/O-free (the benchmark measures it per million frames). The caller parses
frames, checks the range and calls :meth:`SignalPath.feed` per frame and
:meth:`SignalPath.tick` now and then; both return an :class:`Output` when something
should be published.

The reference for "has the weight changed" is the last *published* value, keep-alives
included: slow load-cell drift is therefore carried along by the keep-alives and never
shows up as a change, while a pick (a step of one unit weight or more) does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.frames import Frame

# A window is judged only once it spans this share of stability_window_s: frames
# arrive at discrete times, so a 1 s window at 10 Hz spans 0.9 s between its ends.
_WINDOW_FILL = 0.85


@dataclass
class SignalSettings:
    """Thresholds of one scale's signal path and health checks (grams, seconds)."""

    median_window: int = 5
    stability_window_s: float = 1.0
    stability_spread_g: float = 2.0
    stability_slope_g_per_s: float = 2.0
    hysteresis: float = 2.0
    step_g: float = 2.0
    keepalive_s: float = 60.0
    no_data_timeout_s: float = 5.0
    min_grams: float = 0.0
    max_grams: float = 200_000.0
    # The scale's display increment (0: finer than any threshold). A value flickering
    # between two adjacent divisions is neither motion nor a change: spread and step
    # are at least one division.
    division_g: float = 0.0

    @property
    def spread_limit_g(self) -> float:
        """Largest window spread that still counts as stable."""
        return max(self.stability_spread_g, self.division_g)

    @property
    def step_limit_g(self) -> float:
        """A stable weight must move by more than this to be published."""
        return max(self.step_g, self.division_g)

    def in_range(self, grams: float) -> bool:
        """True when `grams` lies within [min_grams, max_grams]."""
        return self.min_grams <= grams <= self.max_grams


@dataclass(frozen=True, slots=True)
class Output:
    """Something to publish: a changed stable weight, or a keep-alive with the last stable weight."""

    ts_ms: int
    grams: float
    stable: bool
    keepalive: bool


class SignalPath:
    """Filter and stability state of one scale (not thread-safe: one reader thread owns it)."""

    def __init__(
        self, settings: SignalSettings | None = None, clock: Clock = REAL_CLOCK
    ) -> None:
        self._clock = clock
        self.settings = settings or SignalSettings()
        self._median: deque[float] = deque(maxlen=max(1, self.settings.median_window))
        self._times: deque[float] = deque()
        self._values: deque[float] = deque()
        self._window_start: float | None = None
        self.stable = False
        self.stable_grams: float | None = None
        self._published_grams: float | None = None
        self._published_at = 0.0
        self.frames = 0

    def reconfigure(self, settings: SignalSettings) -> None:
        """Apply new thresholds; the filter restarts, the last published weight is kept."""
        self.settings = settings
        self._median = deque(maxlen=max(1, settings.median_window))
        self._reset_window()

    def _reset_window(self) -> None:
        self._median.clear()
        self._times.clear()
        self._values.clear()
        self._window_start = None
        self.stable = False

    def feed(self, frame: Frame) -> Output | None:
        """Take one parsed, in-range frame; return an Output when the stable weight changed."""
        grams = frame.grams
        self.frames += 1
        now = self._clock.monotonic()
        if self._times and now - self._times[-1] > self.settings.stability_window_s:
            # no frame for longer than a window (a silent or unplugged scale): what came
            # before says nothing about the load now, and the median must not carry it on
            self._reset_window()
        if not frame.stable:
            # the scale itself says the load moves: nothing from here on is a weight yet
            self._reset_window()
            return None
        s = self.settings
        med = self._median
        med.append(grams)
        value = sorted(med)[len(med) // 2]
        times, values = self._times, self._values
        times.append(now)
        values.append(value)
        if self._window_start is None:
            self._window_start = now
        horizon = now - s.stability_window_s
        while times[0] < horizon:
            times.popleft()
            values.popleft()
        if (
            now - self._window_start < s.stability_window_s * _WINDOW_FILL
            or len(values) < 2
        ):
            return None
        spread = max(values) - min(values)
        slope = abs(_slope(times, values))
        strict = spread <= s.spread_limit_g and slope <= s.stability_slope_g_per_s
        if self.stable:
            factor = s.hysteresis
            if (
                spread > s.spread_limit_g * factor
                or slope > s.stability_slope_g_per_s * factor
            ):
                self.stable = False
                return None
        elif strict:
            self.stable = True
        else:
            return None
        mean = sum(values) / len(values)
        self.stable_grams = mean
        # publish only from a tight window: hysteresis keeps the state, not loose values
        if strict and (
            self._published_grams is None
            or abs(mean - self._published_grams) > s.step_limit_g
        ):
            return self._publish(now, mean, keepalive=False)
        return None

    def motion(self) -> None:
        """The scale says the load moves without giving a weight (MT-SICS `S I`)."""
        self._reset_window()

    def tick(self) -> Output | None:
        """Return a keep-alive when keepalive_s passed since the last output and a stable weight is known."""
        if self.stable_grams is None:
            return None
        now = self._clock.monotonic()
        if now - self._published_at < self.settings.keepalive_s:
            return None
        return self._publish(now, self.stable_grams, keepalive=True)

    def _publish(self, now: float, grams: float, *, keepalive: bool) -> Output:
        self._published_grams = grams
        self._published_at = now
        return Output(self._clock.time_ms(), round(grams, 3), self.stable, keepalive)


def _slope(times: deque[float], values: deque[float]) -> float:
    """Least-squares slope of values over times (units per second)."""
    n = len(times)
    t0 = times[0]
    mt = sum(times) / n - t0
    mv = sum(values) / n
    num = 0.0
    den = 0.0
    for t, v in zip(times, values, strict=True):
        dt = t - t0 - mt
        num += dt * (v - mv)
        den += dt * dt
    return num / den if den > 0 else 0.0
