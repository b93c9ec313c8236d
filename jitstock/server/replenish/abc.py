"""ABC (Pareto) classes by consumption value, and the service-level target of each class.

Ranked by value (units used × unit cost) over a rolling window: the items
making up the first ``a_share`` of the total are A, up to ``b_share`` B, the
rest C.  The item that crosses a boundary belongs to the class it starts in
(its value began before the boundary).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# The classic 80/15/5 split.
DEFAULT_A_SHARE = 0.80
DEFAULT_B_SHARE = 0.95
DEFAULT_SERVICE_LEVELS = {"A": 0.99, "B": 0.97, "C": 0.95}


def abc_classes(
    values: npt.ArrayLike,
    a_share: float = DEFAULT_A_SHARE,
    b_share: float = DEFAULT_B_SHARE,
) -> npt.NDArray[np.str_]:
    """'A'/'B'/'C' per item by its share of the total consumption value."""
    v = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    out = np.full(v.shape, "C", dtype="<U1")
    total = v.sum()
    if total <= 0:
        return out
    # stable sort: ties keep input order, so the split is deterministic
    order = np.argsort(-v, kind="stable")
    before = (np.cumsum(v[order]) - v[order]) / total
    ranked = np.where(before < a_share, "A", np.where(before < b_share, "B", "C"))
    ranked = np.where(v[order] > 0, ranked, "C")
    out[order] = ranked
    return out


def service_levels(
    classes: npt.ArrayLike, targets: dict[str, float] | None = None
) -> npt.NDArray[np.float64]:
    """The target service level of each item's class."""
    t = targets or DEFAULT_SERVICE_LEVELS
    c = np.asarray(classes)
    return np.asarray(
        [t.get(str(k), t["C"]) for k in c.ravel()], dtype=np.float64
    ).reshape(c.shape)
