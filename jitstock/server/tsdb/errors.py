"""Errors of the time series store.

::

    TsdbError                      anything the store raises
    ├── InvalidPoint (ValueError)  a point no backend can store (bad name, NaN, wrong type)
    ├── TsdbUnavailable            the backend cannot be reached for a query
    └── TsdbQueryError             the backend refused a query

``write`` never raises for bad points (they are counted as ``points_rejected`` and
logged, rate-limited) nor for an unreachable InfluxDB (the points are spooled).
"""

from __future__ import annotations


class TsdbError(Exception):
    """Base of every error the time series store raises."""


class InvalidPoint(TsdbError, ValueError):
    """A point that cannot be stored faithfully; ``str()`` says which part and why."""


class TsdbUnavailable(TsdbError):
    """The backend did not answer (connection refused, timeout, 5xx)."""


class TsdbQueryError(TsdbError):
    """The backend answered a query with an error."""
