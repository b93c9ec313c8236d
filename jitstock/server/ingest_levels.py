"""The numeric part of a flush: counts, events, reorder candidates and the history frame
of its readings, computed with numpy over the bin registry's arrays.

Most readings change nothing: agents re-send every bin on every tick.  A bin's newest
reading whose grams equal the last ones written to the state DB costs no row there:
its ``last_seen_ms`` is kept here ("dirty") and written for all such bins together at
most every ``SEEN_WRITE_S``.  That is exact for everything that reads the state DB's
reading times: a reading replayed late into the unwritten window carries the same
grams as the row (any other grams would have been written at once), so it cannot move
a count either.  What a crash loses is that window, so it is kept short in reading
time as well: an unchanged reading more than ``SEEN_DEFER_MAX_MS`` newer than its
bin's written one (an outbox replayed after an outage, a keep-alive after a quiet
spell) is written with its flush.  Otherwise a late reading from before it, arriving
after a crash, would be newer than the row and move the count back to a level the
scale no longer showed.

History keeps what changed: a stable reading is a point when its grams differ from the
bin's previous point, and otherwise once every ``HISTORY_KEEPALIVE_S`` per bin (so a
chart of a quiet bin has a point in every minute).  Readings of a late batch (an
outbox replayed after an outage) are all kept: they fill the gap they left.

A reading clearly below its bin's tare (:func:`jitstock.server.levels.below_tare`: an
indicator that reads 0 g while it restarts, a lifted load cell) counts like one the
scale did not call stable: the level, its events, the reorder rule and the history keep
the last weighed count; its grams are written like any (``last_grams``: the scale fault
the API, the floor and the alerts show), and a bin going below or coming back is told to
the alert monitor (``Flush.tare_changed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from jitstock.server.flush import Flush
from jitstock.server.levels import BinCalibration, counts_from_grams, tare_floor
from jitstock.server.registry import UNKNOWN, BinRegistry, Snapshot
from jitstock.server.tsdb import Frame

MEASUREMENT = "bin_level"
# Unchanged bins' last_seen_ms reaches the state DB at most this late (the agent and
# sensor silence alerts work in minutes; a server stop writes what is left).
SEEN_WRITE_S = 1.0
# ...and never more than this far (in reading time) behind the bin's newest reading.
SEEN_DEFER_MAX_MS = 5_000
# An unchanged bin still gets a history point this often.
HISTORY_KEEPALIVE_S = 60.0

_EMPTY = np.empty(0, dtype=np.int64)
_NO_GRAMS = np.empty(0, dtype=np.float64)


@dataclass(slots=True)
class Computed:
    """What the registry and this module learn once the flush is durable."""

    snap: Snapshot
    count_idx: npt.NDArray[np.int64]
    count_values: npt.NDArray[np.int64]
    seen_idx: npt.NDArray[np.int64]
    seen_ts: npt.NDArray[np.int64]
    seen_grams: npt.NDArray[np.float64]
    written: npt.NDArray[np.bool_]  # per seen bin: its row is in the flush
    dirty_written: npt.NDArray[np.int64]  # dirty bins of earlier flushes written now
    seen_write_at: float | None  # monotonic time of a full write of dirty bins
    # per bin of the history frame: its newest stable reading's grams, its newest point's time
    hist_idx: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)
    hist_grams: npt.NDArray[np.float64] = field(default_factory=lambda: _NO_GRAMS)
    point_idx: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)
    point_ts: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)


def _ends(sorted_idx: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Where each run of equal values ends (np.r_ costs tens of microseconds a call)."""
    out = np.empty(len(sorted_idx), dtype=np.bool_)
    out[-1] = True
    np.not_equal(sorted_idx[1:], sorted_idx[:-1], out=out[:-1])
    return out


def _events(
    flush: Flush,
    cals: list[BinCalibration],
    b: npt.NDArray[np.int64],
    c: npt.NDArray[np.int64],
    t: npt.NDArray[np.int64],
    prev: npt.NDArray[np.int64],
    b_last: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """The flush's consumption and refill events from its counted readings ``b``, ``c``,
    ``t`` (bin, count, time; sorted by bin and time, ``b_last`` where each bin's run ends,
    ``prev`` each bin's count before the flush); returns the bins that have one.

    Each change of direction of a bin's count is an event; steps the same way are one
    event (a pick is several readings while the load settles, and one flush spans
    milliseconds).  So readings that arrive together — an outbox re-sent after a
    reconnect, the broker's backlog after a restart — make the events they make one at
    a time: a delivery followed by picks is a refill and a consumption, never a net
    change that hides the delivery from receiving by weight.  A bin's first count ever
    is no event.
    """
    before = np.empty(len(c), dtype=np.int64)
    before[1:] = c[:-1]
    first = np.empty(len(b_last), dtype=np.int64)
    first[0] = 0
    first[1:] = b_last[:-1] + 1
    before[first] = prev
    step = np.where(before != UNKNOWN, c - before, 0)
    k = np.flatnonzero(step)
    if not len(k):
        return _EMPTY
    kb, up = b[k], step[k] > 0
    new = np.empty(len(k), dtype=np.bool_)
    new[0] = True
    new[1:] = (kb[1:] != kb[:-1]) | (up[1:] != up[:-1])
    starts = np.flatnonzero(new)
    ends = np.empty(len(starts), dtype=np.int64)
    ends[:-1] = starts[1:] - 1
    ends[-1] = len(k) - 1
    deltas = np.add.reduceat(step[k], starts)
    at = k[ends]
    flush.events = [
        (cals[i].bin_id, ts, "consumption" if d < 0 else "refill", d, after)
        for i, ts, d, after in zip(
            kb[starts].tolist(),
            t[at].tolist(),
            deltas.tolist(),
            c[at].tolist(),
            strict=True,
        )
    ]
    return kb[starts]


def _paths(
    cals: list[BinCalibration],
    b: npt.NDArray[np.int64],
    c: npt.NDArray[np.int64],
    t: npt.NDArray[np.int64],
    b_last: npt.NDArray[np.int64],
) -> dict[str, list[tuple[int, int]]]:
    """Cluster mode: for each bin whose count changed within the flush, (time, count) of
    its first counted reading and of every reading that changed it (arguments as for
    :func:`_events`)."""
    first = np.empty(len(b_last), dtype=np.int64)
    first[0] = 0
    first[1:] = b_last[:-1] + 1
    change = np.ones(len(c), dtype=np.bool_)
    np.not_equal(c[1:], c[:-1], out=change[1:])
    change[first] = False
    if not change.any():
        return {}
    has = np.zeros(len(cals), dtype=np.bool_)
    has[b[change]] = True
    change[first] = True
    sel = change & has[b]
    out: dict[str, list[tuple[int, int]]] = {}
    for i, ts, n in zip(b[sel].tolist(), t[sel].tolist(), c[sel].tolist(), strict=True):
        out.setdefault(cals[i].bin_id, []).append((ts, n))
    return out


class FlushLevels:
    """Computes a flush's levels; remembers which low bins were decided since the last
    registry reload (each is decided once more per reload, see :meth:`compute`) and which
    bins' last reading time the state DB does not have yet."""

    def __init__(
        self,
        registry: BinRegistry,
        later: Callable[..., None],
        *,
        cluster: bool = False,
    ) -> None:
        """``later(fn, *args)`` runs fn once the flush is durable.

        ``cluster``: other nodes write the same bins, so what this node wrote last says
        nothing: every bin seen gets its row, every stable reading its history point
        (idempotent: the same series and time overwrite), see docs/cluster.md.
        """
        self.registry = registry
        self.cluster = cluster
        self._later = later
        # low bins decided since the last registry reload (by snapshot position)
        self._recheck_snap: Snapshot | None = None
        self._rechecked: npt.NDArray[np.bool_] = np.zeros(0, dtype=np.bool_)
        # per bin of self._snap: grams last written (NaN: unknown), and the time of the
        # newest reading not written yet (0: none)
        self._snap: Snapshot | None = None
        self._grams: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._dirty_ts: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        # per bin of self._snap: the reading time the state DB has (UNKNOWN: none)
        self._written_ms: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        # per bin: grams of its newest stable reading (NaN: unknown) and the time of its
        # newest history point (UNKNOWN: none since this process started)
        self._hist_grams: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._hist_ms: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        # per bin of self._snap: grams below this are a scale not weighing (levels.below_tare)
        self._tare_floor: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._seen_written = time.monotonic()

    def seen_pending(self, *, due_only: bool) -> bool:
        """Unwritten reading times wait (and their batch is due): an idle ingest writes
        them, and a stop; ``due_only=False`` also makes the next flush write them."""
        if not self._dirty_ts.any():
            return False
        if due_only:
            return time.monotonic() - self._seen_written >= SEEN_WRITE_S
        self._seen_written = time.monotonic() - SEEN_WRITE_S
        return True

    def _follow(self, snap: Snapshot) -> None:
        """Carry the in-memory state over a registry reload (by bin id): the reload read
        the state DB's reading times, older than the unwritten ones (called under the
        registry lock)."""
        if self._snap is snap:
            return
        n = len(snap.cals)
        grams = np.full(n, np.nan, dtype=np.float64)
        dirty = np.zeros(n, dtype=np.int64)
        hist_grams = np.full(n, np.nan, dtype=np.float64)
        hist_ms = np.full(n, UNKNOWN, dtype=np.int64)
        # the reload read the state DB's reading times: what is written
        written = (
            self.registry.seen_ms.copy()
            if self.registry.snapshot is snap
            else np.full(n, UNKNOWN, dtype=np.int64)
        )
        old = self._snap
        if old is not None:
            pairs = [(i, old.index[b]) for b, i in snap.index.items() if b in old.index]
            if pairs:
                both = np.array(pairs, dtype=np.int64)
                new_i, old_i = both[:, 0], both[:, 1]
                grams[new_i] = self._grams[old_i]
                dirty[new_i] = self._dirty_ts[old_i]
                hist_grams[new_i] = self._hist_grams[old_i]
                hist_ms[new_i] = self._hist_ms[old_i]
                if self.registry.snapshot is snap:
                    seen = self.registry.seen_ms
                    seen[new_i] = np.maximum(seen[new_i], dirty[new_i])
        self._snap, self._grams, self._dirty_ts = snap, grams, dirty
        self._written_ms = written
        self._hist_grams, self._hist_ms = hist_grams, hist_ms
        self._tare_floor = tare_floor(snap.tare, snap.unit)

    def compute(
        self,
        flush: Flush,
        snap: Snapshot,
        idx_l: list[int],
        ts_l: list[int],
        grams_l: list[float],
        stable_l: list[bool],
    ) -> tuple[Frame | None, Computed]:
        """Counts, events and the history frame for every reading of the flush, with numpy;
        the flush's bin rows: bins whose grams or count changed, and when due every bin
        whose newest reading time is not written yet."""
        self._follow(snap)
        n = len(idx_l)
        flush.readings = n
        cals = snap.cals
        due = time.monotonic() - self._seen_written >= SEEN_WRITE_S
        if n == 0:
            res = Computed(
                snap,
                _EMPTY,
                _EMPTY,
                _EMPTY,
                _EMPTY,
                _NO_GRAMS,
                np.empty(0, dtype=np.bool_),
                _EMPTY,
                None,
            )
            if due:
                self._add_dirty(flush, res, np.zeros(len(cals), dtype=np.bool_))
            return None, res
        idx = np.array(idx_l, dtype=np.int64)
        # A reading is never newer than the flush that applies it: the protocol accepts a
        # device clock up to MAX_FUTURE_MS ahead, but a reading dated in the future would
        # make every reading after it "late" (and its count ignored) until the server's
        # clock caught up — one skewed reading would freeze its bin, and its reorder, for
        # minutes.  Times, events and history are the server's now for such readings; their
        # order among themselves is their arrival order (the sorts below are stable).
        # Not in cluster mode: there each node would date such a reading at its own now, so
        # of two batches applied by two nodes the one applied later would count as newer
        # whatever was measured first (a phantom refill, a lost level change); the device's
        # time (at most MAX_FUTURE_MS ahead, the protocol's check) is the only order the
        # nodes share.
        ts = np.array(ts_l, dtype=np.int64)
        if not self.cluster:
            ts = np.minimum(ts, flush.now_ms)
        grams = np.array(grams_l, dtype=np.float64)
        stable = np.array(stable_l, dtype=np.bool_)
        counts, conf = counts_from_grams(grams, snap.tare[idx], snap.unit[idx], stable)
        # a weight clearly below the empty bin's is a scale not weighing: held, not counted
        off = grams < self._tare_floor[idx]
        if off.any():
            flush.below_tare = int(off.sum())
            stable = stable & ~off

        # readings of a bin may arrive out of order across batches: apply them by (bin, time)
        order = np.lexsort((ts, idx))
        o_idx = idx[order]
        last = np.flatnonzero(_ends(o_idx))
        last_pos = order[last]
        # A bin whose newest reading here is older than one already applied (a late batch,
        # an outbox replayed out of order) keeps its state: the state DB ignores it (its
        # UPDATE is guarded by last_seen_ms), so its count must not move here either — a
        # stale count would make a phantom pick and then a phantom refill (a receipt by weight).
        # Per reading, too: one older than the bin's newest applied reading moves nothing,
        # whether or not a newer one of the bin came in the same flush (its events are
        # the readings' own, see _events).
        seen_before = self.registry.seen_ms[idx]
        counted = stable & (ts >= seen_before)
        late = None
        fresh_bin = ts[last_pos] >= seen_before[last_pos]
        if not fresh_bin.all():
            late = np.zeros(len(cals), dtype=np.bool_)
            late[o_idx[last][~fresh_bin]] = True
            last, last_pos = last[fresh_bin], last_pos[fresh_bin]
        seen_idx, seen_ts = o_idx[last], ts[last_pos]
        seen_grams = grams[last_pos]
        # a bin row is written when its grams changed (NaN, unknown, never equals)
        write = np.zeros(len(cals), dtype=np.bool_)
        write[seen_idx[seen_grams != self._grams[seen_idx]]] = True
        # ...or its reading time is far ahead of the written one (see the module docstring)
        write[seen_idx[seen_ts - self._written_ms[seen_idx] > SEEN_DEFER_MAX_MS]] = True
        if self.cluster:
            write[seen_idx] = True

        s_pos = order[counted[order]]  # stable readings (not late), by (bin, time)
        count_idx, count_values = _EMPTY, _EMPTY
        if len(s_pos):
            s_idx = idx[s_pos]
            s_last = np.flatnonzero(_ends(s_idx))
            count_idx = s_idx[s_last]
            count_values = counts[s_pos[s_last]]
            prev = self.registry.counts[count_idx]
            delta = count_values - prev
            ev_bins = _events(
                flush, cals, s_idx, counts[s_pos], ts[s_pos], prev, s_last
            )
            if self.cluster:
                # the previous count is the database's (another node may have written
                # it): the state writer makes the events from these
                flush.paths = _paths(cals, s_idx, counts[s_pos], ts[s_pos], s_last)
            moved = delta != 0  # a first count (prev UNKNOWN) is a change too
            if len(ev_bins):
                # a count that went and came back within the flush moved too: its
                # events may receive an order
                evented = np.zeros(len(cals), dtype=np.bool_)
                evented[ev_bins] = True
                moved |= evented[count_idx]
            write[count_idx[moved]] = True
            counted_rows = np.flatnonzero(write[count_idx])
            if len(counted_rows):
                flush.counts = [
                    (cals[i].bin_id, c, f)
                    for i, c, f in zip(
                        count_idx[counted_rows].tolist(),
                        count_values[counted_rows].tolist(),
                        conf[s_pos[s_last[counted_rows]]].tolist(),
                        strict=True,
                    )
                ]
            # Only a count that moved can change a decision: a re-sent unchanged reading costs
            # no rule evaluation (a position moved by receiving is decided by the state writer).
            # A bin edited by hand (reorder point, supplier, pause) reaches ingest with the
            # next registry reload: each low bin is decided once more per reload.
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

        res = Computed(
            snap,
            count_idx,
            count_values,
            seen_idx,
            seen_ts,
            seen_grams,
            write[seen_idx],
            _EMPTY,
            None,
        )
        if due:
            res.written = np.ones(len(seen_idx), dtype=np.bool_)
        rows = seen_idx if due else seen_idx[res.written]
        if len(rows):
            row_grams = seen_grams if due else seen_grams[res.written]
            flush.seen = [
                (cals[i].bin_id, g, t)
                for i, g, t in zip(
                    rows.tolist(),
                    row_grams.tolist(),
                    (seen_ts if due else seen_ts[res.written]).tolist(),
                    strict=True,
                )
            ]
            self._tare_flips(flush, cals, rows, row_grams)
        if due:
            in_flush = np.zeros(len(cals), dtype=np.bool_)
            in_flush[seen_idx] = True
            self._add_dirty(flush, res, in_flush)
        return self._history(res, order, idx, ts, grams, counts, stable, late), res

    def _tare_flips(
        self,
        flush: Flush,
        cals: list[BinCalibration],
        rows: npt.NDArray[np.int64],
        grams: npt.NDArray[np.float64],
    ) -> None:
        """Bins whose written weight went below their tare or came back (their scale
        fault starts or ends while their count stays): ``flush.tare_changed``."""
        floor = self._tare_floor[rows]
        below = grams < floor
        # NaN (nothing written yet) is not below
        flip = below != (self._grams[rows] < floor)
        if flip.any():
            flush.tare_changed = [
                (cals[i].bin_id, g, b)
                for i, g, b in zip(
                    rows[flip].tolist(),
                    grams[flip].tolist(),
                    below[flip].tolist(),
                    strict=True,
                )
            ]

    def _add_dirty(
        self, flush: Flush, res: Computed, in_flush: npt.NDArray[np.bool_]
    ) -> None:
        """Rows for the bins whose newest reading time is unwritten (not in this flush)."""
        dirty = np.flatnonzero((self._dirty_ts > 0) & ~in_flush)
        res.dirty_written = dirty
        res.seen_write_at = time.monotonic()
        if len(dirty):
            cals = res.snap.cals
            flush.seen = flush.seen + [
                (cals[i].bin_id, g, t)
                for i, g, t in zip(
                    dirty.tolist(),
                    self._grams[dirty].tolist(),
                    self._dirty_ts[dirty].tolist(),
                    strict=True,
                )
            ]

    def _history(
        self,
        res: Computed,
        order: npt.NDArray[np.int64],
        idx: npt.NDArray[np.int64],
        ts: npt.NDArray[np.int64],
        grams: npt.NDArray[np.float64],
        counts: npt.NDArray[np.int64],
        stable: npt.NDArray[np.bool_],
        late: npt.NDArray[np.bool_] | None,
    ) -> Frame | None:
        """The history points (see the module docstring).  A reading the scale did not
        call stable (a load still moving) would chart a level that never was."""
        pos = order[stable[order]]  # stable readings by (bin, time)
        if not len(pos):
            return None
        b, g, t = idx[pos], grams[pos], ts[pos]
        first = np.empty(len(b), dtype=np.bool_)
        first[0] = True
        first[1:] = b[1:] != b[:-1]
        prev = np.empty(len(g), dtype=np.float64)
        prev[1:] = g[:-1]
        prev[first] = self._hist_grams[b[first]]
        keep = g != prev  # NaN (nothing known) never equals
        if self.cluster:
            keep[:] = True
        keep[first] |= t[first] - self._hist_ms[b[first]] >= HISTORY_KEEPALIVE_S * 1000
        if late is not None:
            keep |= late[b]
        newest = _ends(b)
        res.hist_idx, res.hist_grams = b[newest], g[newest]
        if not keep.any():
            return None
        pos, b, t = pos[keep], b[keep], t[keep]
        newest = _ends(b)
        res.point_idx, res.point_ts = b[newest], t[newest]
        tags = res.snap.tags
        return Frame(
            MEASUREMENT,
            [tags[i] for i in b.tolist()],
            ("grams", "count"),
            [grams[pos].tolist(), counts[pos].tolist()],
            t.tolist(),
        )

    def durable(self, res: Computed) -> None:
        """The flush is durable: counts and reading times into the registry, the bins it
        wrote are clean, the others it saw dirty (called under the registry lock)."""
        snap = res.snap
        self.registry.set_counts(snap, res.count_idx, res.count_values)
        self.registry.set_seen(snap, res.seen_idx, res.seen_ts)
        if self._snap is not snap:
            return  # reloaded meanwhile: _follow carried over what was known before
        if res.seen_write_at is not None:
            self._seen_written = res.seen_write_at
        self._hist_grams[res.hist_idx] = res.hist_grams
        self._hist_ms[res.point_idx] = np.maximum(
            self._hist_ms[res.point_idx], res.point_ts
        )
        dw = res.dirty_written
        self._written_ms[dw] = np.maximum(self._written_ms[dw], self._dirty_ts[dw])
        self._dirty_ts[dw] = 0
        w = res.written
        self._grams[res.seen_idx[w]] = res.seen_grams[w]
        self._written_ms[res.seen_idx[w]] = np.maximum(
            self._written_ms[res.seen_idx[w]], res.seen_ts[w]
        )
        self._dirty_ts[res.seen_idx[w]] = 0
        unwritten = res.seen_idx[~w]
        self._dirty_ts[unwritten] = np.maximum(
            self._dirty_ts[unwritten], res.seen_ts[~w]
        )

    def _mark_rechecked(self, snap: Snapshot, idx: npt.NDArray[np.int64]) -> None:
        """These low bins were decided under this snapshot (called once the flush is durable)."""
        if self._recheck_snap is snap:
            self._rechecked[idx] = True
