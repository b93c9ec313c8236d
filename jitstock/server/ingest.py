"""Ingest: MQTT batches to durable levels, history points and reorder decisions.

A flush is made durable in two steps — history points to the time series store
(which spools when InfluxDB is away), then cursors, levels, events and orders in one
state transaction; the worker (:mod:`jitstock.server.ingest_worker`) acknowledges its
MQTT messages only then.  A flush of re-sent unchanged readings changes nothing but
cursors: it may leave them to the next commit (see ``HOLD_S`` there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.ratelog import RateLimitedLog, clip, message_kind
from jitstock.server.deadletters import DeadLetterInfo
from jitstock.server.flush import (
    CursorUpdate,
    DeadLetterSink,
    Flush,
    RetryFlush,
    StateWriter,
    merge_cursors,
)
from jitstock.server.ingest_levels import FlushLevels
from jitstock.server.ingest_seq import MAX_SEQ_JUMP, SeqRules
from jitstock.server.ingest_worker import (
    INGEST_STALL_S,
    RETRY_FLUSH_S,
    IngestWorker,
)
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming, MqttConnection
from jitstock.server.registry import BinRegistry, Snapshot
from jitstock.server.tsdb import Frame, Point, TimeSeriesStore

log = logging.getLogger(__name__)

# Bad input is logged at most once per minute per source, reason and kind of problem (the
# message with its values blanked): a flood does not flood, a second problem still shows.
BAD_INPUT_LOG_INTERVAL_S = 60.0
# The log source of a message whose topic is not an agent topic (no agent to name).
BAD_TOPIC_SOURCE = "topic"
# Bin lists whose positions are remembered (per registry snapshot; an agent re-sends the
# same list every tick, so this holds a fleet of thousands of agents).
POSITIONS_CACHED = 10_000
SCAN_MEASUREMENT = "scan"
SUBSCRIPTIONS = [
    protocol.subscription("readings"),
    protocol.subscription("scans"),
    protocol.subscription("status"),
]


__all__ = ["MAX_SEQ_JUMP", "SUBSCRIPTIONS", "Ingest"]


class Ingest(SeqRules, IngestWorker):
    """Ingest: decode, validate, deduplicate, make durable (the worker acknowledges)."""

    # True where the state writer may refuse a flush whose batches were applied before
    # (cluster mode): then history is written only after the state committed, so a
    # refused batch's points never reach it.
    history_after_state = False

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
        dead_letters: DeadLetterSink | None = None,
        on_dead_letter: Sequence[Callable[[DeadLetterInfo], None]] = (),
        stall_s: float = INGEST_STALL_S,
    ) -> None:
        super().__init__(
            metrics,
            connection,
            flush_max_msgs,
            flush_max_ms,
            dead_letters,
            on_dead_letter,
            stall_s,
        )
        self.tsdb = tsdb
        self.state = state
        self.registry = registry
        self.clock = clock
        self.on_flush = list(on_flush)
        # counts and log lines of the flush in progress, emitted when it is durable
        self._deferred: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._cursors = state.load_cursors()
        self._levels = FlushLevels(registry, self._later)
        # cursor updates of held flushes (see ingest_worker.HOLD_S)
        self._held_cursors: dict[str, CursorUpdate] = {}
        self._bad = RateLimitedLog(log, interval_s=BAD_INPUT_LOG_INTERVAL_S)
        # snapshot positions of batches' bin lists that were all this agent's usable bins
        self._pos_snap: Snapshot | None = None
        self._pos_cache: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        # _urgent: per usable bin, the grams at or below which its count is at its reorder
        # point (for the registry snapshot _low_snap), and the bins last seen there
        self._low_snap: Snapshot | None = None
        self._low_g: dict[str, float] = {}
        self._below: set[str] = set()
        # payloads _urgent parsed for the next flush (keyed by id, the item kept with
        # its document so the id cannot be reused), handed to the decoder: one parse
        self._docs: dict[int, tuple[Incoming, dict[str, Any]]] = {}
        # one writer thread: history writes stay in flush order
        self._history = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jitstock-history"
        )

    def _urgent(self, item: Incoming) -> bool:
        """Whether a message may fire a reorder, so its flush should not wait out the
        window: a reading that takes a bin's count to or below its reorder point when the
        bin was above it (as far as this thread last saw), anything but a readings batch,
        an admin's replay, and a payload that does not parse (decoding is left to the
        flush).  Other readings — re-sends, picks above the reorder point, bins sitting
        below it with their order on the way — share flushes up to the window.  Only a
        guess to end the window early: the flush decides what changed and what to order.
        Costs a dict look-up per reading; the parsed payload goes on to the flush."""
        if item.replay or not item.topic.endswith("/readings"):
            return True
        snap = self.registry.snapshot
        if self._low_snap is not snap:
            # the grams at which each usable bin's count rounds to its reorder point
            self._low_g = {
                c.bin_id: c.tare_g + (float(c.reorder_point) + 0.5) * c.unit_weight_g
                for c in snap.cals
                if c.bin_id not in snap.unusable
            }
            self._low_snap = snap
            self._below &= self._low_g.keys()
        low_g, below = self._low_g, self._below
        urgent = False
        try:
            doc = protocol.load_payload(item.payload)
            self._docs[id(item)] = (item, doc)
            for r in doc["readings"]:
                bin_id = r["bin"]
                at = low_g.get(bin_id)
                if at is None:
                    continue  # unknown or unusable: the flush rejects it
                if r["grams"] < at:
                    if bin_id not in below:
                        below.add(bin_id)
                        urgent = True
                elif bin_id in below:
                    below.discard(bin_id)
        except Exception:
            return True
        return urgent

    def _waiting(self, *, due_only: bool) -> bool:
        return self._levels.seen_pending(due_only=due_only)

    def _stopped(self) -> None:
        self._history.shutdown(wait=True)

    # -- one flush (public: tests and the benchmark drive it without MQTT) --

    def process(
        self, items: Sequence[Incoming], *, hold: bool = False
    ) -> tuple[Flush, list[str]]:
        """Make a group of messages durable; returns the flush and the orders it created.

        ``hold``: a flush that changes nothing but cursors may leave them to the next
        commit (``flush.held``; the worker keeps its messages unacknowledged till then).
        """
        started = time.perf_counter()
        docs, self._docs = self._docs, {}
        self._deferred = []
        now_ms = self.clock.time_ms()
        flush = Flush(now_ms)
        cursors = dict(self._cursors)
        idx: list[int] = []
        ts: list[int] = []
        grams: list[float] = []
        stable: list[bool] = []
        newest_ts: list[int] = []
        registry = self.registry
        snap = registry.snapshot

        for item in items:
            if protocol.is_orders_topic(item.topic):
                continue  # our own orders to a supplier whose id is a kind (MQTT 3.1.1 has no no-local)
            try:
                addr = protocol.parse_topic(item.topic)
            except protocol.ProtocolError as exc:
                # one source and kind for every bad topic: 200 garbage topics are one line
                self._reject(BAD_TOPIC_SOURCE, exc.reason, exc.message, kind="")
                continue
            site = snap.agent_sites.get(addr.agent)
            if site is not None and site != addr.site:
                self._reject(
                    addr.agent,
                    "wrong_site",
                    f"topic site {addr.site!r} is not agent {addr.agent!r}'s site {site!r}",
                )
                continue
            if addr.kind == "status":
                self._status(flush, addr, item.payload, now_ms)
                continue
            if addr.kind not in ("readings", "scans"):
                continue
            if not item.payload:
                # counted like any payload that is no batch, and said plainly: an empty
                # message is also what clearing a retained one sends to subscribers
                self._reject(
                    addr.agent,
                    "malformed_json",
                    "empty payload: not a batch (clearing a retained message with "
                    "mosquitto_pub -r -n sends one; then nothing else is wrong)",
                )
                continue
            if item.retain and not item.replay:
                # an old batch the broker replays at every (re)subscribe: applying it would
                # restart the agent's sequence at each server restart
                self._reject(
                    addr.agent,
                    "retained",
                    f"a retained {addr.kind} message (readings and scans must not be "
                    "retained; the broker replays it at every subscribe): not applied; "
                    f"clear it with mosquitto_pub -r -n -t '{clip(item.topic)}'",
                    kind=addr.kind,
                )
                continue
            if addr.agent not in snap.agents:
                # every agent record is known (a dock scanner station has no bins)
                self._reject(
                    addr.agent,
                    "unknown_agent",
                    f"agent {addr.agent!r} is not configured (POST /api/v1/agents)",
                )
                continue
            try:
                if addr.kind == "readings":
                    parsed = docs.get(id(item))
                    batch, rejects = protocol.decode_readings_columns(
                        item.payload,
                        expected_agent=addr.agent,
                        now_ms=now_ms,
                        known_bins=snap.index,
                        doc=parsed[1]
                        if parsed is not None and parsed[0] is item
                        else None,
                    )
                    seq = batch.seq
                else:
                    scans, rejects = protocol.decode_scans(
                        item.payload, expected_agent=addr.agent, now_ms=now_ms
                    )
                    seq = scans.seq
            except protocol.ProtocolError as exc:
                self._reject(addr.agent, exc.reason, exc.message)
                continue
            last = cursors.get(addr.agent, 0)
            if not item.replay and not self._advance(
                cursors, flush, addr.agent, seq, dup=item.dup
            ):
                if addr.kind == "readings" and seq <= last and not item.dup:
                    self._repeat(snap, addr.agent, seq, last, batch)
                continue
            for r in rejects:
                self._reject_item(addr.agent, r.reason, r.message)
            self._later(self.metrics.batches.labels(addr.kind).inc)
            if addr.kind == "scans":
                flush.scans.extend((addr.site, addr.agent, s) for s in scans.scans)
                continue
            if not batch.bins:
                continue
            if self._pos_snap is not snap or len(self._pos_cache) > POSITIONS_CACHED:
                self._pos_snap, self._pos_cache = snap, {}
            key = (addr.agent, tuple(batch.bins))
            known = self._pos_cache.get(key)
            if known is not None:
                # the same bins as an earlier batch of this agent (an agent re-sends all its
                # bins every tick): checked then
                idx.extend(known)
                ts.extend(batch.ts_ms)
                grams.extend(batch.grams)
                stable.extend(batch.stable)
                newest_ts.append(max(batch.ts_ms))
                continue
            index = snap.index
            cals = snap.cals
            positions = [index.get(b, -1) for b in batch.bins]
            clean = True
            if snap.unusable:
                unusable = snap.unusable
                for k, b in enumerate(batch.bins):
                    if b in unusable and positions[k] >= 0:
                        # no count can come of its calibration (unit weight 5e-324, say)
                        self._reject_item(
                            addr.agent,
                            "bad_calibration",
                            f"bin {b!r}: {unusable[b]}",
                        )
                        positions[k] = -2
                        clean = False
            if min(positions) < 0 or any(
                cals[i].agent_id != addr.agent for i in positions
            ):
                # unknown bins, or bins of another agent: devices are confined to their own bins
                keep = [
                    k
                    for k, i in enumerate(positions)
                    if i >= 0 and cals[i].agent_id == addr.agent
                ]
                for k in set(range(len(positions))) - set(keep):
                    if positions[k] == -2:
                        continue  # rejected above
                    if positions[k] == -1:
                        self._reject_item(
                            addr.agent,
                            "unknown_bin",
                            f"bin {batch.bins[k]!r} is not configured",
                        )
                    else:
                        self._reject_item(
                            addr.agent,
                            "bin_of_other_agent",
                            f"bin {batch.bins[k]!r} is fed by agent "
                            f"{cals[positions[k]].agent_id!r}",
                        )
                positions = [positions[k] for k in keep]
                batch.ts_ms = [batch.ts_ms[k] for k in keep]
                batch.grams = [batch.grams[k] for k in keep]
                batch.stable = [batch.stable[k] for k in keep]
                if not positions:
                    continue
            elif clean:
                self._pos_cache[key] = positions
            idx.extend(positions)
            ts.extend(batch.ts_ms)
            grams.extend(batch.grams)
            stable.extend(batch.stable)
            newest_ts.append(max(batch.ts_ms))

        with registry.lock:
            if snap is not registry.snapshot:
                # bins were reloaded while we decoded: indexes would point into the wrong arrays
                raise RetryFlush("bin registry changed during the flush")
            frame, computed = self._levels.compute(flush, snap, idx, ts, grams, stable)
            scan_points = [
                Point(
                    SCAN_MEASUREMENT,
                    (("agent", agent), ("scanner", s.scanner), ("site", site)),
                    (("code", s.code),),
                    s.ts_ms,
                )
                for site, agent, s in flush.scans
            ]
            # History and state are written at the same time (InfluxDB answers over HTTP
            # while the state transaction commits); the flush is durable when both are.
            writes = frame is not None or bool(scan_points)
            history = (
                self._history.submit(self._write_history, frame, scan_points)
                if writes and not self.history_after_state
                else None
            )
            flush.held = hold and not writes and _only_cursors(flush)
            if flush.held:
                self._held_cursors = merge_cursors(self._held_cursors, flush.cursors)
                orders = []
            else:
                flush.cursors = merge_cursors(self._held_cursors, flush.cursors)
                try:
                    orders = self.state.apply(flush)
                except BaseException:
                    if history is not None:
                        history.result()  # never leave a write running behind a retried flush
                    raise
                self._held_cursors = {}
                if writes and self.history_after_state:
                    history = self._history.submit(
                        self._write_history, frame, scan_points
                    )
                if history is not None:
                    self._await_history(history, frame, scan_points)
            self._levels.durable(computed)
        # only now is the flush durable: advance the in-memory cursors
        self._cursors = {
            **self._cursors,
            **{a: c.last_seq for a, c in flush.cursors.items()},
        }

        deferred, self._deferred = self._deferred, []
        for fn, args in deferred:
            fn(*args)
        self.metrics.readings.inc(flush.readings)
        if flush.below_tare:
            self.metrics.below_tare.inc(flush.below_tare)
        for bin_id, weight, below in flush.tare_changed:
            if below:
                self._bad.log(
                    logging.WARNING,
                    f"{bin_id}:below_tare",
                    "bin %s reads %g g, below its tare: level held at its last count "
                    "until the scale weighs again (scale_fault)",
                    bin_id,
                    weight,
                )
        self.metrics.scans.inc(len(flush.scans))
        for outcome in flush.scan_outcomes:
            self.metrics.dock_scans.labels(outcome).inc()
        for agent in flush.unknown_status_agents:  # the state DB's verdict, durable now
            self._count_reject(
                agent,
                "unknown_agent",
                f"status of agent {agent!r}, which is not configured "
                "(POST /api/v1/agents): not stored",
                kind="status",
            )
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

    def _write_history(self, frame: Frame | None, scans: list[Point]) -> None:
        if frame is not None:
            self.tsdb.write_frame(frame)
        if scans:
            self.tsdb.write(scans)

    def _await_history(
        self, history: Future[None], frame: Frame | None, scans: list[Point]
    ) -> None:
        """Wait for the flush's history write; the state is committed, so it must not be lost.

        The store only raises when it can neither write nor spool (a local disk
        failure).  Redelivery cannot help any more (the cursor has moved), so the
        write is retried from memory until it succeeds.
        """
        try:
            history.result()
            return
        except Exception:
            log.exception("history write failed after the state commit; retrying")
        while True:
            self._stop.wait(RETRY_FLUSH_S)
            try:
                self._write_history(frame, scans)
                return
            except Exception:
                log.exception(
                    "history write still failing; retrying in %.1fs", RETRY_FLUSH_S
                )

    def _status(
        self, flush: Flush, addr: protocol.TopicAddress, payload: bytes, now_ms: int
    ) -> None:
        if not payload:
            return  # a cleared retained message
        try:
            status = protocol.decode_status(payload, now_ms=now_ms)
        except protocol.ProtocolError as exc:
            self._reject(addr.agent, exc.reason, exc.message)
            return
        flush.statuses.append((addr.site, addr.agent, status))

    def _later(self, fn: Callable[..., object], *args: object) -> None:
        """Count or log once the flush is durable: a failed flush is redone (or bisected),
        and its rejections must be counted once, by the attempt that succeeds."""
        self._deferred.append((fn, args))

    def _reject_item(self, agent: str, reason: str, message: str) -> None:
        self._later(self.metrics.rejected_items.labels(reason).inc)
        self._later(
            self._bad.log,
            logging.WARNING,
            f"{agent}:{reason}:{message_kind(message)}",
            "%s: %s",
            agent,
            clip(message),
        )

    def _reject(
        self, source: str, reason: str, message: str, *, kind: str | None = None
    ) -> None:
        """Count a rejected message and log it rate-limited per source, reason and kind
        (``kind``: instead of the message with its values blanked), once the flush is
        durable."""
        self._later(self._count_reject, source, reason, message, kind)

    def _count_reject(
        self, source: str, reason: str, message: str, kind: str | None = None
    ) -> None:
        """:meth:`_reject` now (the caller knows its flush is durable)."""
        self.metrics.rejected_batches.labels(reason).inc()
        self._bad.log(
            logging.WARNING,
            f"{source}:{reason}:{message_kind(message) if kind is None else kind}",
            "%s: %s: %s",
            source,
            reason,
            clip(message),
        )


def _only_cursors(flush: Flush) -> bool:
    """Nothing in the flush but cursor updates: no row, event, decision, scan or status."""
    return not (
        flush.seen
        or flush.counts
        or flush.events
        or flush.decide
        or flush.scans
        or flush.statuses
    )
