"""In-memory view of the configured bins: what ingest needs per reading, without a query.

The state DB is the truth; the registry is reloaded from it at start, after
every API change to bins, and periodically (for changes made by another
process).  Reads are lock-free dictionary lookups; a reload swaps whole maps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from jitstock.server.levels import BinCalibration


class BinRegistry:
    """Calibrations and last counts of every configured bin, by bin id."""

    def __init__(
        self,
        loader: Callable[[], tuple[Iterable[BinCalibration], dict[str, int | None]]]
        | None = None,
    ):
        self._loader = loader
        self._cal: dict[str, BinCalibration] = {}
        self._agents: frozenset[str] = frozenset()
        self._on_hand: dict[str, int | None] = {}
        self._lock = threading.Lock()

    def set_loader(
        self,
        loader: Callable[[], tuple[Iterable[BinCalibration], dict[str, int | None]]],
    ) -> None:
        """Where reload() reads bins from (the state DB)."""
        self._loader = loader

    def reload(self) -> None:
        """Re-read bins from the state DB."""
        if self._loader is None:
            return
        cals, on_hand = self._loader()
        self.replace(cals, on_hand)

    def replace(
        self, calibrations: Iterable[BinCalibration], on_hand: dict[str, int | None]
    ) -> None:
        """Swap in a new set of bins."""
        cal = {c.bin_id: c for c in calibrations}
        with self._lock:
            self._cal = cal
            self._agents = frozenset(c.agent_id for c in cal.values())
            self._on_hand = dict(on_hand)

    def calibration(self, bin_id: str) -> BinCalibration | None:
        """Tare, unit weight, site and agent of a bin, or None if unknown."""
        return self._cal.get(bin_id)

    def agent_known(self, agent_id: str) -> bool:
        """Whether any configured bin is fed by this agent."""
        return agent_id in self._agents

    def on_hand(self, bin_id: str) -> int | None:
        """Last committed count of a bin (None before its first stable reading)."""
        return self._on_hand.get(bin_id)

    def set_on_hand(self, updates: dict[str, int]) -> None:
        """Record counts just committed."""
        with self._lock:
            self._on_hand.update(updates)

    def bins(self) -> list[BinCalibration]:
        """Every configured bin."""
        return list(self._cal.values())
