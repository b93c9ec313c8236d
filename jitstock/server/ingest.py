"""Ingest: MQTT batches to durable levels, history points and reorder decisions.

One worker thread drains what the MQTT connection queued, in flushes of up to
``flush_max_msgs`` messages or ``flush_max_ms`` of waiting.  A flush is made
durable in two steps — history points to the time series store (which spools
when InfluxDB is away), then cursors, levels, events and orders in one state
transaction — and only then are its MQTT messages acknowledged.  A crash at any
point before the acknowledgement makes the broker redeliver; the per-agent
cursor makes the redelivery harmless.

One message must never stop the others.  A flush that fails with an error that
would fail again is bisected until the message(s) that cannot be applied are
found; those become dead letters (:mod:`jitstock.server.deadletters`: stored,
acknowledged, counted, one alert) and everything else applies.  A transient
failure (the state DB away) retries the same messages without dead-lettering.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.ratelog import RateLimitedLog, message_kind
from jitstock.server.deadletters import DeadLetterInfo, is_transient, reason_of
from jitstock.server.flush import (
    CursorUpdate,
    DeadLetterSink,
    Flush,
    RetryFlush,
    StateWriter,
)
from jitstock.server.ingest_levels import FlushLevels
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming, MqttConnection
from jitstock.server.registry import BinRegistry
from jitstock.server.tsdb import Frame, Point, TimeSeriesStore

log = logging.getLogger(__name__)

# Bad input is logged at most once per minute per source, reason and kind of problem (the
# message with its values blanked): a flood does not flood, a second problem still shows.
BAD_INPUT_LOG_INTERVAL_S = 60.0
# After a failed flush (state DB unreachable), wait this long before trying the same messages again.
RETRY_FLUSH_S = 1.0
# Ingest holding messages this long without applying or dead-lettering any is "stalled"
# (/healthz degraded): a flush takes milliseconds, a transient retry a second.
INGEST_STALL_S = 30.0
# A seq this far beyond the agent's last one is not a gap but a broken device: an outbox
# holds 500,000 batches by default, so no real gap comes near it.  Such a batch is rejected
# (reason seq_jump) and the cursor stays; a seq this far *below* it is a new sequence.
MAX_SEQ_JUMP = 100_000_000
# A flush the registry reload overtook is decoded again at once (a pause would stall
# ingest for RETRY_FLUSH_S every reload); only reloads this many times in a row pause.
REDO_FLUSH_AT_ONCE = 3
SCAN_MEASUREMENT = "scan"
SUBSCRIPTIONS = [
    protocol.subscription("readings"),
    protocol.subscription("scans"),
    protocol.subscription("status"),
]


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
        dead_letters: DeadLetterSink | None = None,
        on_dead_letter: Sequence[Callable[[DeadLetterInfo], None]] = (),
        stall_s: float = INGEST_STALL_S,
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
        self.dead_letters = dead_letters
        self.on_dead_letter = list(on_dead_letter)
        self.stall_s = stall_s
        # monotonic time since which ingest holds messages without having applied any
        self._stuck_since: float | None = None
        self._holding = 0
        # counts and log lines of the flush in progress, emitted when it is durable
        self._deferred: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self._cursors = state.load_cursors()
        # low bins decided since the last registry reload (by snapshot position)
        self._levels = FlushLevels(registry, self._later)
        self._bad = RateLimitedLog(log, interval_s=BAD_INPUT_LOG_INTERVAL_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # one writer thread: history writes stay in flush order
        self._history = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="jitstock-history"
        )

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
            if not self._thread.is_alive():
                self._write_seen(due_only=False)
        self._history.shutdown(wait=True)

    def _write_seen(self, *, due_only: bool) -> None:
        """Write the reading times of unchanged bins that wait for their batch (an idle
        ingest, or a stop); a failure leaves them for the next try."""
        if not self._levels.seen_pending(due_only=due_only):
            return
        try:
            self.process([])
        except Exception as exc:
            log.warning("last-seen times not written yet (%s)", _short(exc))

    def _run(self) -> None:
        assert self.connection is not None
        inbox = self.connection.inbox
        pending: list[Incoming] = []
        while not self._stop.is_set():
            if not pending:
                self._holding = 0
                self._stuck_since = None
                pending = self._drain(inbox)
                if not pending:
                    self._write_seen(due_only=True)
                    continue
            if self._stuck_since is None:
                self._stuck_since = time.monotonic()
            self._holding = len(pending)
            before = len(pending)
            pending = self.apply_group(pending)
            if pending:
                if len(pending) < before:
                    self._stuck_since = time.monotonic()  # progress: part of it applied
                self._stop.wait(RETRY_FLUSH_S)

    def apply_group(self, items: Sequence[Incoming]) -> list[Incoming]:
        """Apply, acknowledge or dead-letter a group of messages; returns those to retry.

        The group is tried whole; a failure that would repeat splits it in halves
        (each tried in order, so seq order holds) down to single messages, which
        become dead letters.  A transient failure stops there: the messages not yet
        acknowledged are returned, to be tried again after a pause.
        """
        work: deque[list[Incoming]] = deque([list(items)])
        isolating = False
        redone = 0
        while work:
            group = work.popleft()
            try:
                self.process(group)
            except RetryFlush:
                work.appendleft(group)
                redone += 1
                if redone <= REDO_FLUSH_AT_ONCE:
                    continue  # the bins were reloaded: nothing failed, decode again now
                return [m for g in work for m in g]
            except Exception as exc:
                if is_transient(exc):
                    log.warning(
                        "ingest flush of %d messages failed (%s: %s); retrying in %.1fs",
                        len(group),
                        type(exc).__name__,
                        _short(exc),
                        RETRY_FLUSH_S,
                    )
                    work.appendleft(group)
                    return [m for g in work for m in g]
                if len(group) > 1:
                    if not isolating:
                        isolating = True
                        log.warning(
                            "ingest flush of %d messages failed (%s: %s); "
                            "isolating the messages at fault",
                            len(group),
                            type(exc).__name__,
                            _short(exc),
                        )
                    mid = len(group) // 2
                    work.extendleft([group[mid:], group[:mid]])
                    continue
                try:
                    self._dead_letter(group[0], exc)
                except Exception as store_exc:
                    log.warning(
                        "dead letter could not be stored (%s); retrying in %.1fs",
                        _short(store_exc),
                        RETRY_FLUSH_S,
                    )
                    work.appendleft(group)
                    return [m for g in work for m in g]
            self._ack(group)
        return []

    def _ack(self, items: Sequence[Incoming]) -> None:
        if self.connection is None:
            return
        for item in items:
            if not item.replay:
                self.connection.ack(item)

    def _dead_letter(self, item: Incoming, exc: BaseException) -> None:
        """Store a message that cannot be applied, count it, raise its alert (then it is acked)."""
        reason = reason_of(exc)
        error = f"{type(exc).__name__}: {exc}"
        try:
            agent: str | None = protocol.parse_topic(item.topic).agent
        except protocol.ProtocolError:
            agent = None
        dl_id = None
        if self.dead_letters is not None:
            dl_id = self.dead_letters.add(
                item.topic, item.payload, reason, error, agent
            )
        self.metrics.dead_letters.labels(reason).inc()
        log.error(
            "dead letter %s: message on %s (%d bytes) cannot be applied: %s",
            dl_id,
            item.topic,
            len(item.payload),
            _short(exc),
            exc_info=exc,
        )
        info = DeadLetterInfo(dl_id, item.topic, agent, reason, _short(exc))
        for callback in self.on_dead_letter:
            try:
                callback(info)
            except Exception:
                log.exception("on_dead_letter callback failed")

    def replay(self, topic: str, payload: bytes) -> None:
        """Queue a dead letter's message again (applied without the seq check)."""
        assert self.connection is not None, "replay() needs an MQTT connection"
        self.connection.inbox.put(
            Incoming(topic, payload, 0, 0, -1, time.monotonic(), replay=True)
        )

    def stalled(self) -> str | None:
        """Why ingest is not advancing while messages wait, or None (for /healthz)."""
        since = self._stuck_since
        if since is not None:
            held = time.monotonic() - since
            if held > self.stall_s:
                return (
                    f"ingest has not advanced for {held:.0f} s "
                    f"with {self._holding} messages waiting"
                )
        thread = self._thread
        if (
            thread is not None
            and not thread.is_alive()
            and not self._stop.is_set()
            and self.connection is not None
            and not self.connection.inbox.empty()
        ):
            return "ingest worker is not running while messages wait"
        return None

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
                self._reject(item.topic[:200], exc.reason, exc.message)
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
                    batch, rejects = protocol.decode_readings_columns(
                        item.payload,
                        expected_agent=addr.agent,
                        now_ms=now_ms,
                        known_bins=snap.index,
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
            if not item.replay and not self._advance(
                cursors, flush, addr.agent, seq, dup=item.dup
            ):
                continue
            for r in rejects:
                self._reject_item(addr.agent, r.reason, r.message)
            self._later(self.metrics.batches.labels(addr.kind).inc)
            if addr.kind == "scans":
                flush.scans.extend((addr.site, addr.agent, s) for s in scans.scans)
                continue
            if not batch.bins:
                continue
            index = snap.index
            cals = snap.cals
            positions = [index.get(b, -1) for b in batch.bins]
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
            history = (
                self._history.submit(self._write_history, frame, scan_points)
                if frame is not None or scan_points
                else None
            )
            try:
                orders = self.state.apply(flush)
            except BaseException:
                if history is not None:
                    history.result()  # never leave a write running behind a retried flush
                raise
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

    def _advance(
        self,
        cursors: dict[str, int],
        flush: Flush,
        agent: str,
        seq: int,
        *,
        dup: bool = False,
    ) -> bool:
        """Apply each (agent, seq) once: False for a batch already applied.

        ``dup``: the broker redelivers a message it sent us before (after a crash
        between our commit and our acknowledgement): a seq 1 then is a repeat, never
        the start of a new outbox.
        """
        last = cursors.get(agent, 0)
        update = flush.cursors.get(agent)
        if last and seq - last > MAX_SEQ_JUMP:
            # A broken counter, not lost batches: counting it as a gap would add up to 9e18,
            # and moving the cursor there would drop every later normal batch as a repeat.
            self._reject(
                agent,
                "seq_jump",
                f"seq {seq} is more than {MAX_SEQ_JUMP} beyond the last applied {last}",
            )
            return False
        if not dup and ((seq == 1 and last > 1) or last - seq > MAX_SEQ_JUMP):
            # An agent only starts again at 1 when its outbox is new (a rebuilt Pi, a lost
            # SD card): a fresh stream, not a re-send — anything older was acknowledged.
            self._later(
                self._bad.log,
                logging.WARNING,
                f"{agent}:seq_reset",
                "agent %s started a new sequence at %d (was %d): new outbox",
                agent,
                seq,
                last,
            )
            self._later(self.metrics.seq_resets.inc)
            update = flush.cursors[agent] = CursorUpdate(agent, seq, reset=True)
            cursors[agent] = seq
            return True
        if seq <= last:
            self._later(self.metrics.duplicates.inc)
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
            self._later(self.metrics.seq_gaps.inc, gap)
        cursors[agent] = seq
        return True

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
            message,
        )

    def _reject(self, source: str, reason: str, message: str) -> None:
        self._later(self.metrics.rejected_batches.labels(reason).inc)
        self._later(
            self._bad.log,
            logging.WARNING,
            f"{source}:{reason}:{message_kind(message)}",
            "%s: %s: %s",
            source,
            reason,
            message,
        )


def _short(exc: BaseException) -> str:
    """First line of an exception, bounded (SQL errors carry their statement and parameters)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
