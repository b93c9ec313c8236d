"""On time: one definition for the KPI page, the supplier scorecard and the lead-time estimate.

A delivery is on time when it is recorded no later than its due time (the
supplier's promise, else the quoted lead time) plus a tolerance::

    tolerance = min(ON_TIME_TOLERANCE_MS, ON_TIME_TOLERANCE_FRACTION × lead time)

The arrival jitstock records is when the bin's scale (or the dock scan)
confirms the goods, which trails the truck by the put-away; without a
tolerance a supplier that arrives exactly at its promise scores 0 %.  The cap
keeps a short lead time (an express order, the demo's seconds) from being
judged with minutes of slack it never had.
"""

from __future__ import annotations

# Put-away and the scale's settling between a truck at the dock and the receipt on record.
ON_TIME_TOLERANCE_MS = 5 * 60_000
# ... but never more than a tenth of the lead time the promise gave.
ON_TIME_TOLERANCE_FRACTION = 0.1


def tolerance_ms(due_ms: int, start_ms: int | None = None) -> int:
    """Slack allowed after ``due_ms`` for an order placed (sent) at ``start_ms``."""
    if start_ms is None or due_ms <= start_ms:
        return ON_TIME_TOLERANCE_MS if start_ms is None else 0
    return min(
        ON_TIME_TOLERANCE_MS, int(ON_TIME_TOLERANCE_FRACTION * (due_ms - start_ms))
    )


def is_on_time(arrived_ms: int, due_ms: int, start_ms: int | None = None) -> bool:
    """Whether goods recorded at ``arrived_ms`` met a due time of ``due_ms`` (order sent at ``start_ms``)."""
    return arrived_ms <= due_ms + tolerance_ms(due_ms, start_ms)
