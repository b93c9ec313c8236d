"""What the API needs from the server process: the ctx passed to create_api."""

from __future__ import annotations

from typing import Protocol

from jitstock.clock import Clock
from jitstock.server.db.session import SessionFactory
from jitstock.server.metrics import Metrics
from jitstock.server.registry import BinRegistry
from jitstock.server.settings import ServerSettings
from jitstock.server.tsdb.model import TimeSeriesStore


class Waker(Protocol):
    """The order dispatcher, as far as the API is concerned."""

    def wake(self) -> None:
        """Look for due orders now instead of at the next poll."""
        ...


class ApiContext(Protocol):
    """The composition root's objects the API uses (ServerApp satisfies it).

    Read-only members, so any object whose attributes are subtypes (a real
    Dispatcher for Waker, a test clock for Clock) conforms.  If the object also
    has ``mqtt_connected() -> bool``, /healthz reports it.
    """

    @property
    def settings(self) -> ServerSettings:
        """Server configuration (auth, bootstrap key)."""
        ...

    @property
    def session_factory(self) -> SessionFactory:
        """Sessions on the state DB."""
        ...

    @property
    def tsdb(self) -> TimeSeriesStore:
        """History of bin levels."""
        ...

    @property
    def metrics(self) -> Metrics:
        """Prometheus registry and instruments."""
        ...

    @property
    def registry(self) -> BinRegistry:
        """Ingest's in-memory bins; reload() after bin changes."""
        ...

    @property
    def dispatcher(self) -> Waker:
        """Order sender; wake() after creating orders."""
        ...

    @property
    def clock(self) -> Clock:
        """Time source for every timestamp the API writes."""
        ...
