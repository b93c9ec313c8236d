"""SimulatedFleet: many simulated scales in one workdir, plus the demand model that picks from them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.firmware_sim.demand import BinDemand, DemandModel, DemandRunner
from jitstock.firmware_sim.scale import (
    ScaleProtocol,
    SimulatedScale,
    StreamFormat,
    Unit,
)


@dataclass(frozen=True)
class BinSpec:
    """One simulated bin: its scale, its contents and its usage."""

    bin: str
    protocol: ScaleProtocol = "stream"
    unit_weight_g: float = 12.5
    count: int = 200
    tare_g: float = 500.0
    unit: Unit = "g"
    parts_per_hour: float = 120.0
    intermittent: bool = False
    # parts taken per pick (a handful of small parts, one big part)
    pick_size: int = 1
    # top-up level when the bin runs dry (None: the initial count)
    capacity: int | None = None
    # continuous-output layout of a stream scale (docs/scales.md)
    stream_format: StreamFormat = "gs"


class SimulatedFleet:
    """Starts one SimulatedScale per BinSpec; `.scales` maps bin -> scale."""

    def __init__(
        self,
        bins: Sequence[BinSpec],
        clock: Clock = REAL_CLOCK,
        seed: int = 0,
        workdir: Path | None = None,
        *,
        rate_hz: float = 10.0,
        noise_counts: float = 20.0,
        drift_g_per_h: float = 0.0,
        settle_s: float = 0.4,
    ) -> None:
        self.specs = {spec.bin: spec for spec in bins}
        if len(self.specs) != len(bins):
            raise ValueError("bin names must be unique")
        self.clock = clock
        self.seed = seed
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix="jitstock-fleet-"))
            if workdir is None
            else workdir
        )
        self.scales: dict[str, SimulatedScale] = {
            spec.bin: SimulatedScale(
                spec.bin,
                spec.protocol,
                unit_weight_g=spec.unit_weight_g,
                count=spec.count,
                tare_g=spec.tare_g,
                unit=spec.unit,
                noise_counts=noise_counts,
                drift_g_per_h=drift_g_per_h,
                settle_s=settle_s,
                rate_hz=rate_hz,
                clock=clock,
                seed=seed * 1000 + i,
                workdir=self.workdir,
                stream_format=spec.stream_format,
            )
            for i, spec in enumerate(bins)
        }
        self._runner: DemandRunner | None = None

    def start(self) -> None:
        """Start every scale."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for scale in self.scales.values():
            scale.start()

    def stop(self) -> None:
        """Stop the demand thread and every scale; remove a temp workdir."""
        if self._runner is not None:
            self._runner.stop()
            self._runner = None
        for scale in self.scales.values():
            scale.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SimulatedFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pick(self, bin: str, n: int) -> int:
        """Take n parts from a bin; returns how many were there to take."""
        return self.scales[bin].pick(n)

    def refill(self, bin: str, n: int) -> None:
        """Put n parts into a bin (a delivery)."""
        self.scales[bin].refill(n)

    def count(self, bin: str) -> int:
        """Parts in a bin."""
        return self.scales[bin].count

    def ports(self) -> list[tuple[str, str, Literal["stream", "sics"]]]:
        """(bin, port path, protocol) per scale, in spec order."""
        return [(b, s.port, s.protocol) for b, s in self.scales.items()]

    def run_demand(self, *, auto_refill: bool = False) -> DemandRunner:
        """Start picking by the bins' demand on the fleet's clock; auto_refill tops dry bins up."""
        if self._runner is not None:
            raise RuntimeError("demand already running")
        model = DemandModel(
            {
                s.bin: BinDemand(
                    s.parts_per_hour,
                    intermittent=s.intermittent,
                    pick_size=s.pick_size,
                )
                for s in self.specs.values()
            },
            seed=self.seed,
        )
        refill_to = (
            {
                s.bin: s.capacity if s.capacity is not None else s.count
                for s in self.specs.values()
            }
            if auto_refill
            else None
        )
        self._runner = DemandRunner(model, self, self.clock, refill_to)
        self._runner.start()
        return self._runner
