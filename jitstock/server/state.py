"""The state side of an ingest flush: cursors, levels, events, agent status and
reorder decisions, all in one transaction (so a decision and its order commit together)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.orm import Session

from jitstock.server import reorder_batch
from jitstock.server.db.models import Agent, AgentCursor, Bin, Sku
from jitstock.server.db.session import SessionFactory, is_postgresql, transaction
from jitstock.server.flush import Flush, StateWriter
from jitstock.server.levels import BinCalibration
from jitstock.server.registry import BinRegistry
from jitstock.server.supplier import dock_scans, putaway

log = logging.getLogger(__name__)

# An agent's last_seen_ms (its traffic) is written at most this often: a flush every few
# milliseconds need not write it every time; liveness is judged in seconds to minutes.
AGENT_SEEN_WRITE_MS = 1000


class OrderHandoff(Protocol):
    """Where new orders go straight from the deciding flush (jitstock.server.dispatch.Dispatcher)."""

    def claim_created(self, s: Session, order_ids: list[str]) -> Sequence[object]:
        """Claim the first attempt of these new orders in the flush's transaction."""
        ...

    def submit(self, jobs: Sequence[object]) -> None:
        """Send claimed attempts (called after the commit)."""
        ...


class SqlState(StateWriter):
    """Applies flushes to the SQLAlchemy state DB and keeps the registry's counts in step."""

    def __init__(self, session_factory: SessionFactory, registry: BinRegistry) -> None:
        self.session_factory = session_factory
        self._engine: Engine = session_factory.kw["bind"]
        self.registry = registry
        # The dispatcher (set by the app): claims the first attempt of the orders a flush
        # creates inside the flush's own transaction, and gets them right after its commit.
        self.handoff: OrderHandoff | None = None
        # now_ms each agent's last_seen_ms was last written (by this process)
        self._agent_seen: dict[str, int] = {}

    def load_cursors(self) -> dict[str, int]:
        """Last applied seq per agent."""
        with transaction(self.session_factory, readonly=True) as s:
            return {c.agent_id: c.last_seq for c in s.scalars(select(AgentCursor))}

    def load_registry(
        self,
    ) -> tuple[
        list[BinCalibration],
        dict[str, int | None],
        dict[str, str],
        dict[str, int | None],
    ]:
        """Calibrations, last counts and last reading times of every bin fed by an agent;
        every agent's site."""
        with transaction(self.session_factory, readonly=True) as s:
            agents: dict[str, str] = dict(
                s.execute(select(Agent.id, Agent.site_id)).all()
            )
            rows = s.execute(
                select(
                    Bin.id,
                    Bin.site_id,
                    Bin.agent_id,
                    Bin.tare_g,
                    Bin.unit_weight_g,
                    Sku.unit_weight_g,
                    Bin.on_hand,
                    Bin.reorder_point,
                    Bin.last_seen_ms,
                )
                .join(Sku, Bin.sku_id == Sku.id)
                .where(Bin.agent_id.is_not(None))
            ).all()
        cals = []
        on_hand: dict[str, int | None] = {}
        seen_ms: dict[str, int | None] = {}
        for bin_id, site, agent, tare, unit, sku_unit, count, rop, seen in rows:
            if agent is None:
                continue
            weight = unit if unit else sku_unit
            if not weight or weight <= 0:
                log.warning(
                    "bin %s has no usable unit weight; its readings are rejected",
                    bin_id,
                )
                continue
            cals.append(
                BinCalibration(
                    bin_id, site, agent, float(tare or 0.0), float(weight), int(rop)
                )
            )
            on_hand[bin_id] = count if seen is not None else None
            seen_ms[bin_id] = seen
        return cals, on_hand, agents, seen_ms

    def apply(self, flush: Flush) -> list[str]:
        """Apply a flush in one transaction; return ids of orders it created.

        The hot path is set-based (executemany UPDATE/INSERT by primary key):
        an ORM object per bin costs tens of microseconds, a row in an
        executemany about one.  The ORM is used only for the rare rows that
        need decisions: bins at or below their reorder point, confirmed
        deliveries and agent status.
        """
        created: list[str] = []
        now = flush.now_ms
        # traffic is a sign of life: online even without a status (a PLC), or after an
        # offline one (statuses of this flush are applied below, and win ties); written
        # at most every AGENT_SEEN_WRITE_MS per agent, and at once after a status
        alive = self._alive(flush.cursors, now)
        if not (flush.events or flush.scans or flush.decide or flush.statuses):
            # the common flush (re-sent readings, counts that moved above their reorder
            # point): rows only, no ORM session
            with self._engine.begin() as conn:
                self._rows(conn, flush, alive)
            self._seen_agents(flush, alive)
            return created
        with transaction(self.session_factory) as s:
            self._rows(s.connection(), flush, alive)
            created = self._events_and_decisions(s, flush, set())
        self._committed(flush, alive)
        return created

    def _alive(self, agents: Iterable[str], now: int) -> list[str]:
        """Of the agents with traffic in a flush, those whose last_seen_ms is due a write."""
        return [
            a
            for a in agents
            if now - self._agent_seen.get(a, -AGENT_SEEN_WRITE_MS)
            >= AGENT_SEEN_WRITE_MS
            or now < self._agent_seen.get(a, now)
        ]

    def _events_and_decisions(
        self, s: Session, flush: Flush, low: set[str]
    ) -> list[str]:
        """After the flush's rows, in its transaction: its events, the put-aways and receipts
        they settle, the reorder rule for the flush's bins (and ``low``), the claim of the
        orders it creates, and agent statuses.  Returns the ids of the orders created."""
        now = flush.now_ms
        conn = s.connection()
        # bins whose position moved without their count crossing the reorder point
        # (a receipt settled short, a put-away confirmed) are decided too
        moved: list[str] = []
        if flush.events:
            conn.exec_driver_sql(
                _Sql.for_dialect(conn.dialect.paramstyle).event, flush.events
            )
            refilled: dict[str, list[int]] = {}
            for b, _t, kind, delta, _after in sorted(flush.events, key=lambda e: e[1]):
                if kind == "refill":
                    refilled.setdefault(b, []).append(delta)
            if refilled:
                moved += putaway.confirm_refills(s, refilled, now)
        if flush.scans:
            outcomes: list[str] = []  # a retried transaction starts them afresh
            moved += dock_scans.apply_scans(s, flush.scans, now, outcomes)
            flush.scan_outcomes = outcomes
        created: list[str] = []
        decide = sorted(set(flush.decide) | low | set(moved))
        if decide:
            created = self._decide(s, flush, decide)
            if created and self.handoff is not None:
                flush.claimed = list(self.handoff.claim_created(s, created))
        if flush.statuses:
            self._statuses(s, flush)
        return created

    def _committed(self, flush: Flush, alive: list[str]) -> None:
        """The flush's transaction committed: note the agents' traffic written, and hand
        the claimed orders to the sender now, while ingest still waits for its history write."""
        self._seen_agents(flush, alive)
        if flush.claimed and self.handoff is not None:
            self.handoff.submit(flush.claimed)

    def _rows(self, conn: Connection, flush: Flush, alive: list[str]) -> None:
        """Cursors, agents' last traffic and bin rows (executemany, no ORM)."""
        sql = _Sql.for_dialect(conn.dialect.paramstyle)
        if flush.cursors:
            self._cursors(conn, sql, flush)
        if alive:
            conn.execute(
                update(Agent)
                .where(Agent.id.in_(alive))
                .values(last_seen_ms=flush.now_ms, online=True)
            )
        # one UPDATE per bin: the count (if a stable reading came) and the last reading;
        # a late reading (replayed from an outbox) must not move "last seen" backwards
        counted = {b: (c, f) for b, c, f in flush.counts}
        seen_only = [(g, t, b, t) for b, g, t in flush.seen if b not in counted]
        with_count = [
            (g, t, *counted[b], b, t) for b, g, t in flush.seen if b in counted
        ]
        if seen_only:
            conn.exec_driver_sql(sql.seen, seen_only)
        if with_count:
            conn.exec_driver_sql(sql.seen_count, with_count)

    def _seen_agents(self, flush: Flush, alive: list[str]) -> None:
        """The flush committed: when each agent's traffic was written (a status: at once next time)."""
        for a in alive:
            self._agent_seen[a] = flush.now_ms
        for _site, a, _status in flush.statuses:
            self._agent_seen.pop(a, None)

    def _cursors(self, conn: Connection, sql: _Sql, flush: Flush) -> None:
        """Advance the (agent, seq) cursors: one upsert per agent, no ORM (every flush)."""
        rows = [
            (
                c.agent_id,
                c.last_seq,
                min(c.gaps, _MAX_COUNTER),
                min(c.duplicates, _MAX_COUNTER),
                flush.now_ms,
            )
            for c in flush.cursors.values()
        ]
        if any(c.reset for c in flush.cursors.values()):
            resets = {c.agent_id for c in flush.cursors.values() if c.reset}
            conn.exec_driver_sql(sql.cursor_reset, [r for r in rows if r[0] in resets])
            rows = [r for r in rows if r[0] not in resets]
        if rows:
            conn.exec_driver_sql(sql.cursor, rows)

    def _decide(self, s: Session, flush: Flush, bin_ids: list[str]) -> list[str]:
        """The reorder rule for every bin of the flush at once (a few statements for all;
        PostgreSQL: the bins row-locked, serialising decisions across server processes)."""
        made = reorder_batch.decide(s, bin_ids, flush.now_ms, lock=is_postgresql(s))
        return [o.id for o in made]

    def _statuses(self, s: Session, flush: Flush) -> None:
        unknown = []
        for _site, agent_id, status in flush.statuses:
            agent = s.get(Agent, agent_id)
            if agent is None:
                # an agent nobody configured: not stored; ingest counts it once durable
                # (the state DB decides, not the registry: an agent created since its
                # last reload is stored)
                unknown.append(agent_id)
                continue
            # Server time, not the payload's: a last will carries the time it was set.
            agent.reported_state = status.state
            agent.status_ms = flush.now_ms
            agent.online = status.state == "online"
            if status.state == "online":
                agent.last_seen_ms = max(agent.last_seen_ms or 0, flush.now_ms)
            agent.version = status.version or agent.version
            agent.sensors = [
                {"bin": x.bin, "ok": x.ok, "fault": x.fault} for x in status.sensors
            ]
            health = {x.bin: x for x in status.sensors}
            for b in s.scalars(select(Bin).where(Bin.agent_id == agent_id)):
                sensor = health.get(b.id)
                b.sensor_ok = sensor.ok if sensor is not None else True
                b.sensor_fault = sensor.fault if sensor is not None else None
        flush.unknown_status_agents = unknown


class _Sql:
    """The hot-path statements in the driver's own parameter style (executemany, no ORM)."""

    def __init__(self, mark: str, greatest: str, least: str) -> None:
        # counters saturate at the BIGINT maximum (a counter must never fail the flush):
        # the sum is computed so that it cannot overflow on the way
        upsert = (
            f"INSERT INTO agent_cursors (agent_id, last_seq, gaps, duplicates, updated_ms) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
            f"ON CONFLICT (agent_id) DO UPDATE SET "
            f"gaps = agent_cursors.gaps + {least}(excluded.gaps, {_MAX_COUNTER} - agent_cursors.gaps), "
            f"duplicates = agent_cursors.duplicates + "
            f"{least}(excluded.duplicates, {_MAX_COUNTER} - agent_cursors.duplicates), "
            f"updated_ms = excluded.updated_ms, "
        )
        self.cursor = (
            upsert + f"last_seq = {greatest}(agent_cursors.last_seq, excluded.last_seq)"
        )
        # the agent started a new sequence: its last seq may go down
        self.cursor_reset = upsert + "last_seq = excluded.last_seq"
        self.seen = (
            f"UPDATE bins SET last_grams = {mark}, last_seen_ms = {mark} "
            f"WHERE id = {mark} AND (last_seen_ms IS NULL OR last_seen_ms <= {mark})"
        )
        self.seen_count = (
            f"UPDATE bins SET last_grams = {mark}, last_seen_ms = {mark}, on_hand = {mark}, on_hand_confidence = {mark} "
            f"WHERE id = {mark} AND (last_seen_ms IS NULL OR last_seen_ms <= {mark})"
        )
        self.event = (
            f"INSERT INTO bin_events (bin_id, ts_ms, kind, delta, on_hand_after) "
            f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
        )

    @staticmethod
    def for_dialect(paramstyle: str | None) -> _Sql:
        """Statements for 'qmark' (sqlite3) or 'format'/'pyformat' (psycopg)."""
        return _QMARK if paramstyle == "qmark" else _FORMAT


_MAX_COUNTER = 2**63 - 1
_QMARK = _Sql("?", "MAX", "MIN")  # SQLite's scalar max/min
_FORMAT = _Sql("%s", "GREATEST", "LEAST")
