"""Live push to dashboards: bins marked by ingest become tile updates on Server-Sent Events.

Ingest's on_flush only marks bin (and agent) ids — no work per reading.  The
hub's thread wakes on a mark, waits ``coalesce_s`` so a burst of flushes
becomes one push, builds the tiles of every marked bin with one query, and
hands the same encoded message to every subscriber's asyncio queue.  A
subscriber that falls behind gets a ``resync`` event instead (the page then
reloads the whole floor) rather than an unbounded queue.

Order state changes made through the API (acknowledged, shipped, delivered)
do not pass through ingest, so the hub also compares the open orders every
``order_poll_s`` while a page is connected, re-pushes the bins whose badge
changed and sends an ``orders`` event (the orders board, KPIs and bin page
reload on it).

A stream belongs to the API key that opened it: revoking that key (sign-out,
user disabled or deleted, password changed, key revoked) closes it at once
through :meth:`LiveHub.close_keys`, and the stream itself re-reads its key every
``key_check_s`` (a revocation by another server process) and ends when the key
expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server import floor
from jitstock.server.agents import AGENT_SILENT_S
from jitstock.server.db.models import OPEN_ORDER_STATES, Order
from jitstock.server.db.session import SessionFactory, transaction

log = logging.getLogger(__name__)

# Pushes are batched this long: well inside the 1 s a manager may wait, and a flood of
# flushes becomes one message per bin.
LIVE_COALESCE_S = 0.1
# Order changes made outside ingest (ack, ship, deliver) reach open pages within this:
# the orders board must show a state change within 1 s; the query reads open orders only.
ORDER_POLL_S = 0.5
# Messages a slow browser may have queued before it is told to resync.
SUBSCRIBER_QUEUE = 200
# An SSE comment this often keeps proxies and the browser from timing the stream out.
KEEPALIVE_S = 15.0
# An open stream re-reads its key this often (and sends a keep-alive comment then): a
# revocation the hub was not told about (another server process, a direct DB change)
# ends the stream within this.
KEY_CHECK_S = 5.0
CLOSE = "__close__"
RESYNC = "event: resync\ndata: {}\n\n"


def sse(event: str, data: Any) -> str:
    """One Server-Sent Events message."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass(eq=False)
class Subscriber:
    """One connected page: its event loop and queue of encoded messages."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[str] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    behind: bool = False
    key_id: int | None = None  # the API key the stream was opened with


class LiveHub:
    """Turns marks into coalesced tile pushes for every subscriber."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        clock: Clock = REAL_CLOCK,
        coalesce_s: float = LIVE_COALESCE_S,
        order_poll_s: float = ORDER_POLL_S,
        key_check_s: float = KEY_CHECK_S,
        agent_silent_s: float = AGENT_SILENT_S,
    ) -> None:
        self._factory = session_factory
        self._silent_ms = int(agent_silent_s * 1000)
        self._clock = clock
        self.coalesce_s = coalesce_s
        self.order_poll_s = order_poll_s
        self.key_check_s = key_check_s
        self._lock = threading.Lock()
        self._bins: set[str] = set()
        self._agents: set[str] = set()
        self._subs: set[Subscriber] = set()
        # open orders as last seen: id -> (bin, state, promised_ms)
        self._orders: dict[str, tuple[str, str, int | None]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushes = 0

    # -- producers (any thread) --

    def mark(self, bins: Sequence[str], agents: Sequence[str] = ()) -> None:
        """These bins (and every bin of these agents) changed: push their tiles soon."""
        if not bins and not agents:
            return
        with self._lock:
            self._bins.update(bins)
            self._agents.update(agents)
        self._wake.set()

    def publish(self, event: str, data: Any) -> None:
        """Push one event to every subscriber now."""
        self._broadcast(sse(event, data))

    # -- subscribers (event loop side) --

    def subscribe(self, key_id: int | None = None) -> Subscriber:
        """A new subscriber on the running event loop, opened with API key ``key_id``."""
        sub = Subscriber(asyncio.get_running_loop(), key_id=key_id)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber (its stream ended)."""
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many pages are connected."""
        return len(self._subs)

    def close_keys(self, key_ids: Sequence[int]) -> int:
        """End the streams opened with these (revoked) keys now; how many were open."""
        ids = set(key_ids)
        if not ids:
            return 0
        return self._broadcast(CLOSE, lambda sub: sub.key_id in ids)

    def _broadcast(
        self, message: str, which: Callable[[Subscriber], bool] | None = None
    ) -> int:
        with self._lock:
            subs = [s for s in self._subs if which is None or which(s)]
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(_offer, sub, message)
            except RuntimeError:
                self.unsubscribe(sub)  # its loop is closed
        return len(subs)

    # -- worker --

    def start(self) -> None:
        """Start the push thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-live", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop pushing and end every open stream (so the HTTP server can shut down)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._broadcast(CLOSE)

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.order_poll_s)
            if self._stop.is_set():
                return
            if self._wake.is_set():
                self._wake.clear()
                self._stop.wait(self.coalesce_s)  # let a burst of flushes gather
            try:
                # no page connected, no poll: the open orders as last seen stay as
                # they were, so the first poll after a page connects reports every
                # change made meanwhile (including one the page's own load missed)
                if self._subs and self._clock.monotonic() >= next_poll:
                    next_poll = self._clock.monotonic() + self.order_poll_s
                    self._poll_orders()
                self.flush()
            except Exception:
                log.exception("live push failed")

    def flush(self) -> int:
        """Build and push the tiles of everything marked; returns how many tiles went out."""
        with self._lock:
            bins, agents = self._bins, self._agents
            self._bins, self._agents = set(), set()
        if not bins and not agents or not self._subs:
            return 0
        with transaction(self._factory, readonly=True) as s:
            tiles = floor.tiles(
                s,
                bin_ids=bins,
                agent_ids=agents,
                now_ms=self._clock.time_ms(),
                silent_ms=self._silent_ms,
            )
        if tiles:
            self.pushes += 1
            self._broadcast(
                sse("tiles", {"now_ms": self._clock.time_ms(), "tiles": tiles})
            )
        return len(tiles)

    def _poll_orders(self) -> None:
        with transaction(self._factory, readonly=True) as s:
            rows = s.execute(
                select(Order.id, Order.bin_id, Order.state, Order.promised_ms).where(
                    Order.state.in_(OPEN_ORDER_STATES)
                )
            ).all()
        current = {oid: (b, state, promised) for oid, b, state, promised in rows}
        changed = [
            oid
            for oid in set(current) | set(self._orders)
            if current.get(oid) != self._orders.get(oid)
        ]
        bins = sorted({(current.get(o) or self._orders[o])[0] for o in changed})
        self._orders = current
        if changed:
            with self._lock:
                self._bins.update(bins)
            self._broadcast(
                sse(
                    "orders",
                    {"now_ms": self._clock.time_ms(), "orders": changed, "bins": bins},
                )
            )


def _offer(sub: Subscriber, message: str) -> None:
    """On the subscriber's loop: queue a message, or tell a lagging page to resync."""
    if message == CLOSE or message == RESYNC:
        _drain(sub)
        sub.queue.put_nowait(message)
        return
    try:
        sub.queue.put_nowait(message)
    except asyncio.QueueFull:
        # a page this far behind reloads the whole floor instead of replaying the backlog
        _drain(sub)
        sub.queue.put_nowait(RESYNC)


def _drain(sub: Subscriber) -> None:
    while not sub.queue.empty():
        sub.queue.get_nowait()
