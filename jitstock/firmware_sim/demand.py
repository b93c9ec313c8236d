"""Demand model: a production schedule that picks parts from bins.

Smooth bins see picks as a Poisson process at `parts_per_hour`; intermittent bins
are quiet most of the time and used in bursts (a batch on the line), with the same
long-run rate. :class:`DemandModel` is pure (a seeded event stream, testable without
threads); :class:`DemandRunner` plays it on a Clock against anything with
`pick(bin, n)`, `refill(bin, n)` and `count(bin)` - so a ScaledClock runs it faster
than real time.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from jitstock.clock import REAL_CLOCK, Clock, wait

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BinDemand:
    """Usage of one bin: long-run parts per hour, and how it arrives."""

    parts_per_hour: float
    intermittent: bool = False
    pick_size: int = 1
    # intermittent bins: mean picks per burst and mean seconds between picks inside one
    burst_picks: float = 8.0
    burst_gap_s: float = 15.0


@dataclass(frozen=True, slots=True)
class PickEvent:
    """Take n parts from bin at clock time t."""

    t: float
    bin: str
    n: int


class DemandModel:
    """A seeded, time-ordered stream of pick events for a set of bins."""

    def __init__(
        self, demands: Mapping[str, BinDemand], seed: int = 0, start: float = 0.0
    ) -> None:
        self.demands = dict(demands)
        self._rng = random.Random(seed)
        self._heap: list[tuple[float, int, str, int]] = []
        self._tie = 0
        for bin_, d in sorted(self.demands.items()):
            if d.parts_per_hour > 0:
                self._schedule(bin_, start)

    def _schedule(self, bin_: str, after: float) -> None:
        """Queue the next pick (smooth) or the next burst (intermittent) of one bin."""
        d = self.demands[bin_]
        rng = self._rng
        if not d.intermittent:
            rate = d.parts_per_hour / 3600.0 / d.pick_size
            self._push(after + rng.expovariate(rate), bin_, d.pick_size)
            return
        rate = d.parts_per_hour / 3600.0 / (d.pick_size * d.burst_picks)
        start = t = after + rng.expovariate(rate)
        # geometric burst length with mean burst_picks, at least one pick
        picks = 1
        while rng.random() > 1.0 / d.burst_picks:
            picks += 1
        for _ in range(picks):
            self._push(t, bin_, d.pick_size)
            t += rng.expovariate(1.0 / d.burst_gap_s)
        # bursts start as a Poisson process: the next one is drawn from this one's start
        self._push(start, bin_, 0)

    def _push(self, t: float, bin_: str, n: int) -> None:
        self._tie += 1
        heapq.heappush(self._heap, (t, self._tie, bin_, n))

    def _pop(self) -> PickEvent | None:
        t, _, bin_, n = heapq.heappop(self._heap)
        if not self.demands[bin_].intermittent or n == 0:
            self._schedule(bin_, t)
        return PickEvent(t, bin_, n) if n > 0 else None

    def next_event(self) -> PickEvent:
        """The next pick in time order (endless while any bin has demand)."""
        while self._heap:
            ev = self._pop()
            if ev is not None:
                return ev
        raise LookupError("no bin has any demand")

    def until(self, end: float) -> Iterator[PickEvent]:
        """Events up to clock time `end`; later ones stay queued for the next call."""
        while self._heap and self._heap[0][0] <= end:
            ev = self._pop()
            if ev is not None:
                yield ev


class PickTarget(Protocol):
    """What the demand runner acts on (a SimulatedFleet)."""

    def pick(self, bin: str, n: int) -> int:
        """Take n parts; returns how many there were to take."""
        ...

    def refill(self, bin: str, n: int) -> None:
        """Add n parts."""
        ...

    def count(self, bin: str) -> int:
        """Parts in the bin now."""
        ...


class DemandRunner:
    """Plays a DemandModel on a clock in a thread, optionally topping empty bins up."""

    def __init__(
        self,
        model: DemandModel,
        target: PickTarget,
        clock: Clock = REAL_CLOCK,
        refill_to: Mapping[str, int] | None = None,
    ) -> None:
        self.model = model
        self._target = target
        self._clock = clock
        self._refill_to = dict(refill_to or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.picks = 0
        self.parts = 0
        self.refills = 0

    def start(self) -> None:
        """Start playing events from the clock's current time."""
        self._offset = self._clock.monotonic()
        self._thread = threading.Thread(target=self._run, name="demand", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self.model.next_event()
            except LookupError:
                return
            if wait(
                self._clock, ev.t + self._offset - self._clock.monotonic(), self._stop
            ):
                return
            try:
                self.parts += self._target.pick(ev.bin, ev.n)
                self.picks += 1
                full = self._refill_to.get(ev.bin)
                if full is not None and self._target.count(ev.bin) < ev.n:
                    self._target.refill(ev.bin, full - self._target.count(ev.bin))
                    self.refills += 1
            except Exception:  # one bad bin must not stop the schedule
                log.exception("demand: pick on %s failed", ev.bin)
