"""In-memory view of the configured bins: what ingest needs per reading, without a query.

The state DB is the truth; the registry is reloaded from it at start, after
every API change to bins or agents, and periodically (for changes made by
another process).  It knows every agent record (with its site), not only the
agents feeding bins: a dock scanner station has no bins but may publish scans.
Ingest looks bins up by index into numpy arrays, so a flush of thousands of
readings turns into counts with a handful of vector operations.

Consistency with the last committed counts: ingest holds ``registry.lock``
from the moment it reads the previous counts until it has committed the new
ones, and a reload holds it while it reads the DB, so a reload can never put
back a count older than one ingest has already derived events from.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from jitstock.ratelog import RateLimitedLog
from jitstock.server import catalog_cache
from jitstock.server.levels import BinCalibration, calibration_problem

log = logging.getLogger(__name__)

# A bin with an unusable calibration is named in the log at most this often (reloads are every 10 s).
BAD_CALIBRATION_LOG_INTERVAL_S = 600.0
_bad_calibration_log = RateLimitedLog(log, interval_s=BAD_CALIBRATION_LOG_INTERVAL_S)

# on_hand value for a bin that has not had a stable reading yet
UNKNOWN = -1

# (calibrations, last counts by bin, site by agent id for every agent record,
#  time of the newest reading applied per bin)
Loader = Callable[
    [],
    tuple[
        Iterable[BinCalibration],
        dict[str, int | None],
        dict[str, str],
        dict[str, int | None],
    ],
]


@dataclass(slots=True, frozen=True)
class Snapshot:
    """One consistent generation of bins, indexed 0..n-1."""

    index: dict[str, int]
    cals: list[BinCalibration]
    tare: npt.NDArray[np.float64]
    unit: npt.NDArray[np.float64]
    reorder_point: npt.NDArray[np.int64]
    # every known agent: agent records and the agents bins name
    agents: frozenset[str]
    agent_sites: dict[str, str]
    # the history point tags of each bin, built once
    tags: list[tuple[tuple[str, str], ...]]
    # bins whose tare / unit weight cannot give a count (their readings are rejected): why
    unusable: dict[str, str]


class BinRegistry:
    """Calibrations and last counts of every configured bin."""

    def __init__(self, loader: Loader | None = None) -> None:
        self._loader = loader
        self.lock = threading.RLock()
        self.snapshot = _build([], {})
        self.counts: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        # ts_ms of the newest reading applied per bin (UNKNOWN: none): an older one is late
        self.seen_ms: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def set_loader(self, loader: Loader) -> None:
        """Where reload() reads bins from (the state DB)."""
        self._loader = loader

    def reload(self) -> None:
        """Re-read bins and agents from the state DB."""
        if self._loader is None:
            return
        # the catalogue facts the hot path keeps (suppliers, SKUs, sites) go with it:
        # a change made by another process is seen at the next reload at the latest
        catalog_cache.invalidate()
        with self.lock:
            cals, on_hand, agents, seen_ms = self._loader()
            self.replace(cals, on_hand, agents, seen_ms)

    def replace(
        self,
        calibrations: Iterable[BinCalibration],
        on_hand: dict[str, int | None],
        agents: dict[str, str] | None = None,
        seen_ms: dict[str, int | None] | None = None,
    ) -> None:
        """Swap in a new set of bins (and agents: id -> site; None: those bins name)."""
        snap = _build(list(calibrations), agents or {})
        counts = np.full(len(snap.cals), UNKNOWN, dtype=np.int64)
        seen = np.full(len(snap.cals), UNKNOWN, dtype=np.int64)
        for bin_id, i in snap.index.items():
            value = on_hand.get(bin_id)
            if value is not None:
                counts[i] = value
            ts = (seen_ms or {}).get(bin_id)
            if ts is not None:
                seen[i] = ts
        with self.lock:
            self.snapshot = snap
            self.counts = counts
            self.seen_ms = seen

    def calibration(self, bin_id: str) -> BinCalibration | None:
        """Tare, unit weight, site and agent of a bin, or None if unknown."""
        snap = self.snapshot
        i = snap.index.get(bin_id)
        return None if i is None else snap.cals[i]

    def on_hand(self, bin_id: str) -> int | None:
        """Last committed count of a bin (None before its first stable reading)."""
        i = self.snapshot.index.get(bin_id)
        if i is None or self.counts[i] == UNKNOWN:
            return None
        return int(self.counts[i])

    def set_counts(
        self,
        snapshot: Snapshot,
        idx: npt.NDArray[np.int64],
        values: npt.NDArray[np.int64],
    ) -> None:
        """Record counts just committed (ignored if the bins were reloaded meanwhile)."""
        with self.lock:
            if self.snapshot is snapshot:
                self.counts[idx] = values

    def set_seen(
        self,
        snapshot: Snapshot,
        idx: npt.NDArray[np.int64],
        ts_ms: npt.NDArray[np.int64],
    ) -> None:
        """Record the newest reading times just committed (ignored after a reload)."""
        with self.lock:
            if self.snapshot is snapshot:
                self.seen_ms[idx] = np.maximum(self.seen_ms[idx], ts_ms)


def _unusable(cals: list[BinCalibration]) -> dict[str, str]:
    """Bins whose calibration cannot give a count, with the reason (logged rate-limited)."""
    unusable = {}
    for c in cals:
        problem = calibration_problem(c.tare_g, c.unit_weight_g)
        if problem is not None:
            unusable[c.bin_id] = problem
            _bad_calibration_log.log(
                logging.WARNING,
                c.bin_id,
                "bin %s: %s; its readings are rejected until it is recalibrated",
                c.bin_id,
                problem,
            )
    return unusable


def _build(cals: list[BinCalibration], agents: dict[str, str]) -> Snapshot:
    agent_sites = {c.agent_id: c.site_id for c in cals} | agents
    return Snapshot(
        index={c.bin_id: i for i, c in enumerate(cals)},
        cals=cals,
        tare=np.array([c.tare_g for c in cals], dtype=np.float64),
        unit=np.array([c.unit_weight_g for c in cals], dtype=np.float64),
        reorder_point=np.array([c.reorder_point for c in cals], dtype=np.int64),
        agents=frozenset(agent_sites),
        agent_sites=agent_sites,
        tags=[
            (("agent", c.agent_id), ("bin", c.bin_id), ("site", c.site_id))
            for c in cals
        ],
        unusable=_unusable(cals),
    )
