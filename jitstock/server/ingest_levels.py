"""The numeric part of a flush: counts, events, reorder candidates and the history frame
of its readings, computed with numpy over the bin registry's arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from jitstock.server.flush import Flush
from jitstock.server.levels import counts_from_grams
from jitstock.server.registry import UNKNOWN, BinRegistry, Snapshot
from jitstock.server.tsdb import Frame

MEASUREMENT = "bin_level"


class FlushLevels:
    """Computes a flush's levels; remembers which low bins were decided since the last
    registry reload (each is decided once more per reload, see :meth:`compute`)."""

    def __init__(self, registry: BinRegistry, later: Callable[..., None]) -> None:
        """``later(fn, *args)`` runs fn once the flush is durable."""
        self.registry = registry
        self._later = later
        # low bins decided since the last registry reload (by snapshot position)
        self._recheck_snap: Snapshot | None = None
        self._rechecked: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)

    def compute(
        self,
        flush: Flush,
        snap: Snapshot,
        idx_l: list[int],
        ts_l: list[int],
        grams_l: list[float],
        stable_l: list[bool],
    ) -> tuple[
        Frame | None,
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
        npt.NDArray[np.int64],
    ]:
        """Counts, events and the history frame for every reading of the flush, with numpy;
        also the bins it saw and their newest reading times."""
        n = len(idx_l)
        flush.readings = n
        empty = np.empty(0, dtype=np.int64)
        if n == 0:
            return None, empty, empty, empty, empty
        idx = np.array(idx_l, dtype=np.int64)
        ts = np.array(ts_l, dtype=np.int64)
        grams = np.array(grams_l, dtype=np.float64)
        stable = np.array(stable_l, dtype=np.bool_)
        counts, conf = counts_from_grams(grams, snap.tare[idx], snap.unit[idx], stable)

        # readings of a bin may arrive out of order across batches: apply them by (bin, time)
        order = np.lexsort((ts, idx))
        o_idx = idx[order]
        last = np.flatnonzero(np.r_[o_idx[1:] != o_idx[:-1], True])
        last_pos = order[last]
        # A bin whose newest reading here is older than one already applied (a late batch,
        # an outbox replayed out of order) keeps its state: the state DB ignores it (its
        # UPDATE is guarded by last_seen_ms), so its count must not move here either — a
        # stale count would make a phantom pick and then a phantom refill (a receipt by weight).
        counted = stable
        fresh_bin = ts[last_pos] >= self.registry.seen_ms[o_idx[last]]
        if not fresh_bin.all():
            late = np.zeros(len(snap.cals), dtype=np.bool_)
            late[o_idx[last][~fresh_bin]] = True
            counted = stable & ~late[idx]
            last, last_pos = last[fresh_bin], last_pos[fresh_bin]
        seen_idx, seen_ts = o_idx[last], ts[last_pos]
        cals = snap.cals
        flush.seen = [
            (cals[i].bin_id, g, t)
            for i, g, t in zip(
                o_idx[last].tolist(),
                grams[last_pos].tolist(),
                ts[last_pos].tolist(),
                strict=True,
            )
        ]

        s_pos = order[counted[order]]  # stable readings (not late), by (bin, time)
        count_idx, count_values = empty, empty
        if len(s_pos):
            s_idx = idx[s_pos]
            s_last = np.flatnonzero(np.r_[s_idx[1:] != s_idx[:-1], True])
            count_idx = s_idx[s_last]
            count_values = counts[s_pos[s_last]]
            flush.counts = [
                (cals[i].bin_id, c, f)
                for i, c, f in zip(
                    count_idx.tolist(),
                    count_values.tolist(),
                    conf[s_pos[s_last]].tolist(),
                    strict=True,
                )
            ]
            # One event per bin and flush: the net change of its count.  A flush spans
            # milliseconds while a scale needs about a second to settle after a pick,
            # so under normal load this is exactly one pick or refill; under a flood it
            # keeps the state DB's work per bin, not per reading.
            prev = self.registry.counts[count_idx]
            delta = count_values - prev
            ev = np.flatnonzero((prev != UNKNOWN) & (delta != 0))
            if len(ev):
                flush.events = [
                    (cals[i].bin_id, t, "consumption" if d < 0 else "refill", d, c)
                    for i, t, d, c in zip(
                        count_idx[ev].tolist(),
                        ts[s_pos[s_last[ev]]].tolist(),
                        delta[ev].tolist(),
                        count_values[ev].tolist(),
                        strict=True,
                    )
                ]
            # Only a count that moved can change a decision: a re-sent unchanged reading costs
            # no rule evaluation (a position moved by receiving is decided by the state writer).
            # A bin edited by hand (reorder point, supplier, pause) reaches ingest with the
            # next registry reload: each low bin is decided once more per reload.
            moved = delta != 0  # a first count (prev UNKNOWN) is a change too
            if moved.any():
                flush.count_changed = [
                    cals[i].bin_id for i in count_idx[moved].tolist()
                ]
            if self._recheck_snap is not snap:
                self._recheck_snap = snap
                self._rechecked = np.zeros(len(cals), dtype=np.bool_)
            # position = on hand + pending + on order >= on hand: above the reorder point nothing can fire
            low = (moved | ~self._rechecked[count_idx]) & (
                count_values <= snap.reorder_point[count_idx]
            )
            if low.any():
                decided = count_idx[low]
                flush.decide = [cals[i].bin_id for i in decided.tolist()]
                self._later(self._mark_rechecked, snap, decided)

        tags = snap.tags
        if not stable.all():
            # History keeps what the live count keeps: a reading the scale did not call
            # stable (a load still moving) would chart a level that never was.
            k = np.flatnonzero(stable)
            if not len(k):
                return None, count_idx, count_values, seen_idx, seen_ts
            idx_l = idx[k].tolist()
            grams_l = grams[k].tolist()
            ts_l = ts[k].tolist()
            counts = counts[k]
        frame = Frame(
            MEASUREMENT,
            [tags[i] for i in idx_l],
            ("grams", "count"),
            [grams_l, counts.tolist()],
            ts_l,
        )
        return frame, count_idx, count_values, seen_idx, seen_ts

    def _mark_rechecked(self, snap: Snapshot, idx: npt.NDArray[np.int64]) -> None:
        """These low bins were decided under this snapshot (called once the flush is durable)."""
        if self._recheck_snap is snap:
            self._rechecked[idx] = True
