"""Demand per bin from consumption events: daily/per-shift series and Syntetos–Boylan classes.

Classes by average inter-demand interval (ADI) and squared coefficient of
variation of the non-zero demand sizes (CV²), cut-offs 1.32 and 0.49
(Syntetos, Boylan & Croston 2005).  A value exactly at a cut-off counts as the
"harder" side (intermittent / erratic), as in the original paper's ``>=``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.models import BinEvent

FloatArray = npt.NDArray[np.float64]

DAY_MS = 86_400_000
# A plant's usual three 8-hour shifts.
SHIFT_MS = 8 * 3_600_000
ADI_CUTOFF = 1.32
CV2_CUTOFF = 0.49
DEMAND_CLASSES = ("smooth", "erratic", "intermittent", "lumpy")
# Integer codes of DEMAND_CLASSES, for vectorised use.
SMOOTH, ERRATIC, INTERMITTENT, LUMPY = range(4)


@dataclass(slots=True, frozen=True)
class Classification:
    """A series' Syntetos–Boylan class and the two numbers behind it."""

    label: str
    adi: float
    cv2: float


def bucket(
    ts_ms: npt.NDArray[np.int64],
    qty: FloatArray,
    start_ms: int,
    end_ms: int,
    period_ms: int = DAY_MS,
) -> FloatArray:
    """Sum ``qty`` into periods of ``period_ms`` from ``start_ms`` (events outside are dropped)."""
    n = max(0, -(-(end_ms - start_ms) // period_ms))
    keep = (ts_ms >= start_ms) & (ts_ms < end_ms)
    idx = (ts_ms[keep] - start_ms) // period_ms
    return np.bincount(idx, weights=qty[keep], minlength=n).astype(np.float64)[:n]


def load_consumption(
    session: Session, bin_id: str, since_ms: int, until_ms: int
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Times and units of a bin's consumption events in [since, until)."""
    rows = session.execute(
        select(BinEvent.ts_ms, BinEvent.delta).where(
            BinEvent.bin_id == bin_id,
            BinEvent.kind == "consumption",
            BinEvent.ts_ms >= since_ms,
            BinEvent.ts_ms < until_ms,
        )
    ).all()
    ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    # consumption events carry negative deltas; demand is the units taken
    qty = np.fromiter((-r[1] for r in rows), dtype=np.float64, count=len(rows))
    return ts, np.maximum(qty, 0.0)


def adi_cv2(series: FloatArray) -> tuple[FloatArray, FloatArray]:
    """ADI and CV² per row of a (n, T) array (a 1-D series is one row).

    ADI = periods / periods with demand (inf without demand); CV² of the
    non-zero sizes (0 with fewer than two demands).
    """
    y = np.atleast_2d(np.asarray(series, dtype=np.float64))
    nz = y > 0
    k = nz.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        adi = np.where(k > 0, y.shape[1] / k, np.inf)
        total = np.where(nz, y, 0.0).sum(axis=1)
        mean = np.where(k > 0, total / k, 0.0)
        sq = np.where(nz, (y - mean[:, None]) ** 2, 0.0).sum(axis=1)
        var = np.where(k > 1, sq / np.maximum(k - 1, 1), 0.0)
        cv2 = np.where(mean > 0, var / mean**2, 0.0)
    return adi, cv2


def classify_codes(series: FloatArray) -> npt.NDArray[np.int64]:
    """Class code (SMOOTH…LUMPY) per row of a (n, T) array."""
    adi, cv2 = adi_cv2(series)
    return ((adi >= ADI_CUTOFF).astype(np.int64) * 2) + (cv2 >= CV2_CUTOFF).astype(
        np.int64
    )


def classify(series: FloatArray) -> Classification:
    """The Syntetos–Boylan class of one demand series."""
    adi, cv2 = adi_cv2(series)
    code = int(classify_codes(series)[0])
    return Classification(DEMAND_CLASSES[code], float(adi[0]), float(cv2[0]))


def undershoot(sizes: FloatArray) -> FloatArray:
    """Expected undershoot below the reorder point per row: E[X²] / (2·E[X]).

    X is the size of one demand transaction (a pick live, a day's demand in a
    daily review).  A continuous-review trigger fires only after the pick
    that crosses the reorder point, on average this far below it; big lumpy
    picks make it large, so the reorder point adds it (renewal theory, e.g.
    Silver, Pyke & Thomas, ch. 7).  Zeros are no transaction and are ignored.
    """
    x = np.atleast_2d(np.asarray(sizes, dtype=np.float64))
    nz = x > 0
    s1 = np.where(nz, x, 0.0).sum(axis=1)
    s2 = np.where(nz, x * x, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s1 > 0, s2 / (2 * s1), 0.0)


# A part unused for this long (and DORMANT_ADI_MULTIPLE of its usual gaps) starts to fade:
# a month without a pick is unusual even for a part used weekly.
DORMANT_MIN_DAYS = 28.0
# ... and four of its average gaps: a part used on 1 day in ADI goes that long unused by
# chance with probability ≈ e⁻⁴ ≈ 2 %.
DORMANT_ADI_MULTIPLE = 4.0


def dormancy_fade(series: FloatArray) -> FloatArray:
    """Share of the reorder point a part keeps per row: 1 while used, falling to 0 when dormant.

    Idle days = days since the last demand.  Up to the grace period
    max(DORMANT_MIN_DAYS, DORMANT_ADI_MULTIPLE·ADI) the part keeps its full
    reorder point; over one more grace period it fades linearly to 0 (an
    obsolete part's safety stock and trigger go to zero instead of restocking
    a part nobody uses).  A window without any demand counts as idle all along.
    """
    y = np.atleast_2d(np.asarray(series, dtype=np.float64))
    t_len = y.shape[1]
    nz = y > 0
    any_nz = nz.any(axis=1)
    last = t_len - 1 - np.argmax(nz[:, ::-1], axis=1)
    idle = np.where(any_nz, t_len - 1 - last, t_len).astype(np.float64)
    adi, _ = adi_cv2(y)
    grace = np.maximum(
        DORMANT_MIN_DAYS, DORMANT_ADI_MULTIPLE * np.where(any_nz, adi, 0.0)
    )
    return np.asarray(np.clip(2.0 - idle / grace, 0.0, 1.0), dtype=np.float64)
