"""Ingest: MQTT batches to durable levels, history points and reorder decisions.

One worker thread drains what the MQTT connection queued, in flushes of up to
``flush_max_msgs`` messages or ``flush_max_ms`` of waiting.  A flush is made
durable in two steps — history points to the time series store (which spools
when InfluxDB is away), then cursors, levels, events and orders in one state
transaction — and only then are its MQTT messages acknowledged.  A crash at any
point before the acknowledgement makes the broker redeliver; the per-agent
cursor makes the redelivery harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.ratelog import RateLimitedLog
from jitstock.server.levels import LevelEvent, counts_from_grams, events_for_bin
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming, MqttConnection
from jitstock.server.registry import BinRegistry
from jitstock.server.tsdb import Point, TimeSeriesStore

log = logging.getLogger(__name__)

# Bad input is logged at most once per source and reason per minute ("without flooding").
BAD_INPUT_LOG_INTERVAL_S = 60.0
# After a failed flush (state DB unreachable), wait this long before trying the same messages again.
RETRY_FLUSH_S = 1.0
MEASUREMENT = "bin_level"
SCAN_MEASUREMENT = "scan"
SUBSCRIPTIONS = [
    protocol.subscription("readings"),
    protocol.subscription("scans"),
    protocol.subscription("status"),
]


@dataclass(slots=True)
class BinUpdate:
    """What one flush learnt about one bin."""

    bin_id: str
    last_grams: float
    last_seen_ms: int
    on_hand: int | None = None  # only stable readings set a count
    confidence: float | None = None
    events: list[LevelEvent] = field(default_factory=list)


@dataclass(slots=True)
class CursorUpdate:
    agent_id: str
    last_seq: int
    gaps: int = 0
    duplicates: int = 0


@dataclass(slots=True)
class Flush:
    """Everything one flush must make durable in the state DB, in one transaction."""

    now_ms: int
    bins: dict[str, BinUpdate] = field(default_factory=dict)
    cursors: dict[str, CursorUpdate] = field(default_factory=dict)
    statuses: list[tuple[str, str, protocol.Status]] = field(
        default_factory=list
    )  # (site, agent, status)
    scans: list[tuple[str, str, protocol.Scan]] = field(
        default_factory=list
    )  # (site, agent, scan)
    readings: int = 0


class StateWriter:
    """The state side of a flush (implemented over SQLAlchemy in jitstock.server.state)."""

    def apply(self, flush: Flush) -> list[str]:
        """Apply a flush in one transaction; return ids of orders it created."""
        raise NotImplementedError

    def load_cursors(self) -> dict[str, int]:
        """Last applied seq per agent."""
        raise NotImplementedError


class Ingest:
    """The ingest worker: decode, validate, deduplicate, make durable, acknowledge."""

    def __init__(
        self,
        tsdb: TimeSeriesStore,
        state: StateWriter,
        registry: BinRegistry,
        metrics: Metrics,
        *,
        connection: MqttConnection | None = None,
        clock: Clock = REAL_CLOCK,
        flush_max_msgs: int = 2000,
        flush_max_ms: float = 20.0,
        on_flush: Sequence[Callable[[Flush, list[str]], None]] = (),
    ) -> None:
        self.tsdb = tsdb
        self.state = state
        self.registry = registry
        self.metrics = metrics
        self.connection = connection
        self.clock = clock
        self.flush_max_msgs = flush_max_msgs
        self.flush_max_s = flush_max_ms / 1000.0
        self.on_flush = list(on_flush)
        self._cursors = state.load_cursors()
        self._bad = RateLimitedLog(log, interval_s=BAD_INPUT_LOG_INTERVAL_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- worker --

    def start(self) -> None:
        """Start the worker thread (needs a connection)."""
        assert self.connection is not None, "start() needs an MQTT connection"
        self._thread = threading.Thread(
            target=self._run, name="jitstock-ingest", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current flush; unacknowledged messages stay with the broker."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        assert self.connection is not None
        inbox = self.connection.inbox
        pending: list[Incoming] = []
        while not self._stop.is_set():
            if not pending:
                pending = self._drain(inbox)
                if not pending:
                    continue
            try:
                self.process(pending)
            except Exception:
                log.exception(
                    "ingest flush of %d messages failed; retrying in %.1fs",
                    len(pending),
                    RETRY_FLUSH_S,
                )
                self._stop.wait(RETRY_FLUSH_S)
                continue
            for item in pending:
                self.connection.ack(item)
            pending = []

    def _drain(self, inbox: queue.Queue[Incoming]) -> list[Incoming]:
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.flush_max_s
        while len(items) < self.flush_max_msgs:
            try:
                items.append(inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return items

    # -- one flush (public: tests and the benchmark drive it without MQTT) --

    def process(self, items: Sequence[Incoming]) -> tuple[Flush, list[str]]:
        """Make a group of messages durable; returns the flush and the orders it created."""
        started = time.perf_counter()
        now_ms = self.clock.time_ms()
        flush = Flush(now_ms)
        cursors = dict(self._cursors)
        bins: list[str] = []
        ts: list[int] = []
        grams: list[float] = []
        stable: list[bool] = []
        newest_ts: list[int] = []
        registry = self.registry

        for item in items:
            try:
                addr = protocol.parse_topic(item.topic)
            except protocol.ProtocolError as exc:
                self._reject(item.topic, exc.reason, exc.message)
                continue
            if addr.kind == "status":
                self._status(flush, addr, item.payload)
                continue
            if addr.kind not in ("readings", "scans"):
                continue
            if not registry.agent_known(addr.agent):
                self._reject(
                    addr.agent,
                    "unknown_agent",
                    f"agent {addr.agent!r} has no bins configured",
                )
                continue
            try:
                if addr.kind == "readings":
                    batch, rejects = protocol.decode_readings(
                        item.payload, expected_agent=addr.agent, now_ms=now_ms
                    )
                else:
                    scans, rejects = protocol.decode_scans(
                        item.payload, expected_agent=addr.agent, now_ms=now_ms
                    )
            except protocol.ProtocolError as exc:
                self._reject(addr.agent, exc.reason, exc.message)
                continue
            seq = batch.seq if addr.kind == "readings" else scans.seq
            if not self._advance(cursors, flush, addr.agent, seq):
                continue
            for r in rejects:
                self.metrics.rejected_items.labels(r.reason).inc()
                self._bad.log(
                    logging.WARNING,
                    f"{addr.agent}:{r.reason}",
                    "%s: %s",
                    addr.agent,
                    r.message,
                )
            self.metrics.batches.labels(addr.kind).inc()
            if addr.kind == "scans":
                flush.scans.extend((addr.site, addr.agent, s) for s in scans.scans)
                continue
            newest = 0
            for reading in batch.readings:
                cal = registry.calibration(reading.bin)
                if cal is None or cal.agent_id != addr.agent:
                    self.metrics.rejected_items.labels("unknown_bin").inc()
                    self._bad.log(
                        logging.WARNING,
                        f"{addr.agent}:unknown_bin",
                        "%s: bin %r is not configured for this agent",
                        addr.agent,
                        reading.bin,
                    )
                    continue
                bins.append(reading.bin)
                ts.append(reading.ts_ms)
                grams.append(reading.grams)
                stable.append(reading.stable)
                newest = max(newest, reading.ts_ms)
            if newest:
                newest_ts.append(newest)

        points = self._levels(flush, bins, ts, grams, stable)
        points.extend(
            Point(
                SCAN_MEASUREMENT,
                (("agent", agent), ("scanner", s.scanner), ("site", site)),
                (("code", s.code),),
                s.ts_ms,
            )
            for site, agent, s in flush.scans
        )
        if points:
            self.tsdb.write(points)
        orders = self.state.apply(flush)
        # only now is the flush durable: advance the in-memory cursors
        self._cursors = {
            **self._cursors,
            **{a: c.last_seq for a, c in flush.cursors.items()},
        }

        self.metrics.readings.inc(flush.readings)
        self.metrics.scans.inc(len(flush.scans))
        if orders:
            self.metrics.orders_created.inc(len(orders))
        done_ms = self.clock.time_ms()
        for t in newest_ts:
            self.metrics.ingest_lag.observe(max(0.0, (done_ms - t) / 1000.0))
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        for callback in self.on_flush:
            try:
                callback(flush, orders)
            except Exception:
                log.exception("on_flush callback failed")
        return flush, orders

    def _advance(
        self, cursors: dict[str, int], flush: Flush, agent: str, seq: int
    ) -> bool:
        """Apply each (agent, seq) once: False for a batch already applied."""
        last = cursors.get(agent, 0)
        update = flush.cursors.get(agent)
        if seq <= last:
            self.metrics.duplicates.inc()
            if update is None:
                update = flush.cursors[agent] = CursorUpdate(agent, last)
            update.duplicates += 1
            return False
        gap = seq - last - 1 if last else 0
        if update is None:
            update = flush.cursors[agent] = CursorUpdate(agent, seq)
        update.last_seq = seq
        if gap > 0:
            update.gaps += gap
            self.metrics.seq_gaps.inc(gap)
        cursors[agent] = seq
        return True

    def _levels(
        self,
        flush: Flush,
        bins: list[str],
        ts: list[int],
        grams: list[float],
        stable: list[bool],
    ) -> list[Point]:
        """Counts for every reading of the flush at once (numpy), events per bin, history points."""
        n = len(bins)
        flush.readings = n
        if n == 0:
            return []
        registry = self.registry
        cals = [registry.calibration(b) for b in bins]
        tare = np.fromiter((c.tare_g for c in cals if c), dtype=np.float64, count=n)
        unit = np.fromiter(
            (c.unit_weight_g for c in cals if c), dtype=np.float64, count=n
        )
        g = np.asarray(grams, dtype=np.float64)
        st = np.asarray(stable, dtype=np.bool_)
        counts, conf = counts_from_grams(g, tare, unit, st)
        counts_l = counts.tolist()
        conf_l = conf.tolist()

        per_bin: dict[str, list[int]] = {}
        for i, b in enumerate(bins):
            per_bin.setdefault(b, []).append(i)
        for b, idx in per_bin.items():
            # readings of a bin may arrive out of order across batches; apply them in time order
            idx.sort(key=ts.__getitem__)
            last = idx[-1]
            update = BinUpdate(b, grams[last], ts[last])
            stable_idx = [i for i in idx if stable[i]]
            if stable_idx:
                events, on_hand = events_for_bin(
                    b,
                    registry.on_hand(b),
                    [ts[i] for i in stable_idx],
                    [counts_l[i] for i in stable_idx],
                )
                update.events = events
                update.on_hand = on_hand
                update.confidence = conf_l[stable_idx[-1]]
            flush.bins[b] = update

        points = []
        for i, b in enumerate(bins):
            cal = cals[i]
            assert cal is not None
            points.append(
                Point(
                    MEASUREMENT,
                    (("agent", cal.agent_id), ("bin", b), ("site", cal.site_id)),
                    (
                        ("grams", grams[i]),
                        ("count", counts_l[i]),
                        ("confidence", conf_l[i]),
                        ("stable", stable[i]),
                    ),
                    ts[i],
                )
            )
        return points

    def _status(
        self, flush: Flush, addr: protocol.TopicAddress, payload: bytes
    ) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            status = protocol.decode_status(payload)
        except protocol.ProtocolError as exc:
            self._reject(addr.agent, exc.reason, exc.message)
            return
        flush.statuses.append((addr.site, addr.agent, status))

    def _reject(self, source: str, reason: str, message: str) -> None:
        self.metrics.rejected_batches.labels(reason).inc()
        self._bad.log(
            logging.WARNING, f"{source}:{reason}", "%s: %s: %s", source, reason, message
        )
