"""Clocks: the real one, and a scaled one that lets simulations run faster than real time.

Everything whose behaviour depends on time (stability windows, keep-alives, backoff,
demand schedules) takes a :class:`Clock`, so a test can share one :class:`ScaledClock`
between a simulated scale and the reader and cover a simulated hour in seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds, wall-clock milliseconds and sleeping, on one time base."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` of this clock's time."""
        ...


class _RealClock:
    """The process's own clocks."""

    def monotonic(self) -> float:
        """Seconds from `time.monotonic`."""
        return time.monotonic()

    def time_ms(self) -> int:
        """Milliseconds from `time.time_ns`."""
        return time.time_ns() // 1_000_000

    def sleep(self, seconds: float) -> None:
        """`time.sleep`, ignoring negative durations."""
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "REAL_CLOCK"


REAL_CLOCK: Clock = _RealClock()


class ScaledClock:
    """Simulated time running `speed` times faster than real time (thread-safe: read-only after init)."""

    def __init__(self, speed: float, start_ms: int | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.speed = float(speed)
        self._real_origin = time.monotonic()
        self._start_ms = (
            time.time_ns() // 1_000_000 if start_ms is None else int(start_ms)
        )

    def _elapsed(self) -> float:
        return (time.monotonic() - self._real_origin) * self.speed

    def monotonic(self) -> float:
        """Simulated seconds since this clock was made."""
        return self._elapsed()

    def time_ms(self) -> int:
        """Simulated wall-clock milliseconds: `start_ms` plus scaled elapsed time."""
        return self._start_ms + int(self._elapsed() * 1000.0)

    def sleep(self, seconds: float) -> None:
        """Sleep `seconds` of simulated time, i.e. `seconds / speed` real seconds."""
        if seconds > 0:
            time.sleep(seconds / self.speed)

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed})"


# Longest single real sleep inside `wait`, so a stop request is noticed promptly.
_WAIT_SLICE_REAL_S = 0.05


def wait(clock: Clock, seconds: float, stop: threading.Event) -> bool:
    """Sleep `seconds` of clock time unless `stop` is set first; True when stopped."""
    deadline = clock.monotonic() + seconds
    while not stop.is_set():
        left = deadline - clock.monotonic()
        if left <= 0:
            return False
        speed = getattr(clock, "speed", 1.0)
        clock.sleep(min(left, _WAIT_SLICE_REAL_S * speed))
    return True


def real_seconds(clock: Clock, seconds: float) -> float:
    """Real seconds that `seconds` of this clock's time take (a ScaledClock runs `speed` x faster)."""
    return seconds / float(getattr(clock, "speed", 1.0))
