"""Helpers for the edge sensor tests: a hand-driven clock and a recording sink."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.waits import WAIT_S


class ManualClock:
    """A Clock the test moves by hand (sleep advances it)."""

    def __init__(
        self, start: float = 1000.0, start_ms: int = 1_700_000_000_000
    ) -> None:
        self.t = start
        self._t0 = start
        self._start_ms = start_ms

    def monotonic(self) -> float:
        return self.t

    def time_ms(self) -> int:
        return self._start_ms + int((self.t - self._t0) * 1000)

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Reading:
    bin: str
    ts_ms: int
    grams: float
    stable: bool


@dataclass
class RecordingSink:
    """ReadingSink + ScanSink that records everything, thread-safe."""

    readings: list[Reading] = field(default_factory=list)
    health: list[tuple[str, bool, str | None]] = field(default_factory=list)
    scans: list[tuple[str, int, str]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def on_reading(self, bin: str, ts_ms: int, grams: float, stable: bool) -> None:
        with self._cond:
            self.readings.append(Reading(bin, ts_ms, grams, stable))
            self._cond.notify_all()

    def on_health(self, bin: str, ok: bool, fault: str | None) -> None:
        with self._cond:
            self.health.append((bin, ok, fault))
            self._cond.notify_all()

    def on_scan(self, scanner: str, ts_ms: int, code: str) -> None:
        with self._cond:
            self.scans.append((scanner, ts_ms, code))
            self._cond.notify_all()

    def readings_of(self, bin: str) -> list[Reading]:
        with self._cond:
            return [r for r in self.readings if r.bin == bin]

    def health_of(self, bin: str) -> list[tuple[bool, str | None]]:
        with self._cond:
            return [(ok, fault) for b, ok, fault in self.health if b == bin]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
        """Wait until predicate() holds (re-checked on every event); fail on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out; readings={self.readings[-5:]} health={self.health}"
                    )
                self._cond.wait(min(left, 0.1))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()
