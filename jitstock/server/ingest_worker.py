"""The ingest worker: the thread that drains the MQTT inbox in flushes, acknowledges
what became durable, holds what need not commit yet, and isolates poison messages.

One worker thread drains what the MQTT connection queued, in flushes of up to
``flush_max_msgs`` messages or ``flush_max_ms`` of waiting; :meth:`process` (in
:mod:`jitstock.server.ingest`) makes a flush durable, and only then are its MQTT
messages acknowledged.  A crash at any point before the acknowledgement makes the
broker redeliver; the per-agent cursor makes the redelivery harmless.

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

from jitstock import protocol
from jitstock.server.deadletters import DeadLetterInfo, is_transient, reason_of
from jitstock.server.flush import DeadLetterSink, Flush, RetryFlush
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming, MqttConnection

log = logging.getLogger(__name__)

# After a failed flush (state DB unreachable), wait this long before trying the same messages again.
RETRY_FLUSH_S = 1.0
# Ingest holding messages this long without applying or dead-lettering any is "stalled"
# (/healthz degraded): a flush takes milliseconds, a transient retry a second.
INGEST_STALL_S = 30.0
# A flush the registry reload overtook is decoded again at once (a pause would stall
# ingest for RETRY_FLUSH_S every reload); only reloads this many times in a row pause.
REDO_FLUSH_AT_ONCE = 3
# A flush that changed nothing but cursors (agents re-sending unchanged readings) does
# not commit: its cursor updates wait in memory, its messages unacknowledged, for the
# next flush that commits, at most this long and for at most HOLD_MAX_MSGS messages
# (and half the broker's Receive Maximum).  A crash meanwhile makes the broker
# redeliver them, and they are applied again: nothing is acknowledged before durable.
HOLD_S = 1.0
HOLD_MAX_MSGS = 500


class IngestWorker:
    """Delivery: the worker thread, acknowledgements, held flushes, dead letters."""

    def __init__(
        self,
        metrics: Metrics,
        connection: MqttConnection | None,
        flush_max_msgs: int,
        flush_max_ms: float,
        dead_letters: DeadLetterSink | None,
        on_dead_letter: Sequence[Callable[[DeadLetterInfo], None]],
        stall_s: float,
    ) -> None:
        self.metrics = metrics
        self.connection = connection
        self.flush_max_msgs = flush_max_msgs
        self.flush_max_s = flush_max_ms / 1000.0
        self.dead_letters = dead_letters
        self.on_dead_letter = list(on_dead_letter)
        self.stall_s = stall_s
        # monotonic time since which ingest holds messages without having applied any
        self._stuck_since: float | None = None
        self._holding = 0
        # applied messages whose cursor updates wait for the next commit (see HOLD_S)
        self._held_msgs: list[Incoming] = []
        self._held_since: float | None = None
        self._commit_retry_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def process(
        self, items: Sequence[Incoming], *, hold: bool = False
    ) -> tuple[Flush, list[str]]:
        """Make a group of messages durable (see jitstock.server.ingest.Ingest)."""
        raise NotImplementedError

    def _waiting(self, *, due_only: bool) -> bool:
        """Whether more than held cursors waits to be committed (and is due)."""
        raise NotImplementedError

    def _stopped(self) -> None:
        """The worker thread has ended (release what the flushes used)."""

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
                self._commit_waiting(due_only=False)
        self._stopped()

    def _commit_waiting(self, *, due_only: bool) -> None:
        """Commit what waits in memory: held cursors (acknowledging their messages) and
        the reading times of unchanged bins (when their batch is due, or at a stop).
        An idle ingest does it at once; a failure leaves it for the next try."""
        if not self._held_msgs and not self._waiting(due_only=due_only):
            return
        if due_only and time.monotonic() < self._commit_retry_at:
            return  # the last try failed (logged): not again before RETRY_FLUSH_S
        self.apply_group([], hold=False)
        if self._held_msgs:
            self._commit_retry_at = time.monotonic() + RETRY_FLUSH_S

    def _may_hold(self, n: int) -> bool:
        """Whether a flush of n messages that changes nothing but cursors may wait."""
        if self.connection is None or self._stop.is_set():
            return False
        limit = min(HOLD_MAX_MSGS, self.connection.receive_maximum // 2)
        if len(self._held_msgs) + n > limit:
            return False
        since = self._held_since
        return since is None or time.monotonic() - since < HOLD_S

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
                    self._commit_waiting(due_only=True)
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

    def apply_group(
        self, items: Sequence[Incoming], *, hold: bool = True
    ) -> list[Incoming]:
        """Apply, acknowledge or dead-letter a group of messages; returns those to retry.

        ``hold=False``: commit even when nothing but cursors changed (and acknowledge
        the messages held so far).

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
                flush, _ = self.process(group, hold=hold and self._may_hold(len(group)))
                if flush.held:
                    self._held_msgs += group
                    if self._held_since is None:
                        self._held_since = time.monotonic()
                    continue
                # committed: the held messages' cursors with it
                group, self._held_msgs = self._held_msgs + group, []
                self._held_since = None
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
                        short_error(exc),
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
                            short_error(exc),
                        )
                    mid = len(group) // 2
                    work.extendleft([group[mid:], group[:mid]])
                    continue
                try:
                    self._dead_letter(group[0], exc)
                except Exception as store_exc:
                    log.warning(
                        "dead letter could not be stored (%s); retrying in %.1fs",
                        short_error(store_exc),
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
            short_error(exc),
            exc_info=exc,
        )
        info = DeadLetterInfo(dl_id, item.topic, agent, reason, short_error(exc))
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

    def _urgent(self, item: Incoming) -> bool:
        """Whether a message may change more than cursors, so that its flush commits
        anyway: the flush window stops waiting for more (see :meth:`_drain`)."""
        return True

    def _drain(self, inbox: queue.SimpleQueue[Incoming]) -> list[Incoming]:
        """The next flush's messages: what is queued, and what arrives within the flush
        window, up to ``flush_max_msgs``.  The window waits only while every message so
        far would change nothing but cursors (agents re-sending unchanged readings, whose
        flush is held anyway): a message that changes something (a count that crossed
        its reorder point, say) is applied without waiting for the window to close."""
        try:
            first = inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.flush_max_s
        waiting = not self._urgent(first)
        while len(items) < self.flush_max_msgs:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if not waiting or remaining <= 0:
                    break
                try:
                    item = inbox.get(timeout=remaining)
                except queue.Empty:
                    break
            items.append(item)
            if self._urgent(item):
                waiting = False
        return items


def short_error(exc: BaseException) -> str:
    """First line of an exception, bounded (SQL errors carry their statement and parameters).

    A SQLAlchemy error's own first line may be a note ("raised as a result of
    Query-invoked autoflush…"): the driver's error (``orig``) names the cause.
    """
    exc = getattr(exc, "orig", None) or exc
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
