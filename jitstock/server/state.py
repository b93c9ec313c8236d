"""The state side of an ingest flush: cursors, levels, events, agent status and
reorder decisions, all in one transaction (so a decision and its order commit together)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from jitstock.server import reorder
from jitstock.server.db.models import Agent, AgentCursor, Bin, BinEvent, Sku
from jitstock.server.db.session import SessionFactory, is_postgresql, transaction
from jitstock.server.ingest import Flush, StateWriter
from jitstock.server.levels import BinCalibration
from jitstock.server.registry import BinRegistry

log = logging.getLogger(__name__)


class SqlState(StateWriter):
    """Applies flushes to the SQLAlchemy state DB and keeps the registry's counts in step."""

    def __init__(self, session_factory: SessionFactory, registry: BinRegistry) -> None:
        self.session_factory = session_factory
        self.registry = registry

    def load_cursors(self) -> dict[str, int]:
        """Last applied seq per agent."""
        with transaction(self.session_factory, readonly=True) as s:
            return {c.agent_id: c.last_seq for c in s.scalars(select(AgentCursor))}

    def load_registry(self) -> tuple[list[BinCalibration], dict[str, int | None]]:
        """Calibrations and last counts of every bin fed by an agent."""
        with transaction(self.session_factory, readonly=True) as s:
            rows = s.execute(
                select(
                    Bin.id,
                    Bin.site_id,
                    Bin.agent_id,
                    Bin.tare_g,
                    Bin.unit_weight_g,
                    Sku.unit_weight_g,
                    Bin.on_hand,
                    Bin.last_seen_ms,
                )
                .join(Sku, Bin.sku_id == Sku.id)
                .where(Bin.agent_id.is_not(None))
            ).all()
        cals = []
        on_hand: dict[str, int | None] = {}
        for bin_id, site, agent, tare, unit, sku_unit, count, seen in rows:
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
                BinCalibration(bin_id, site, agent, float(tare or 0.0), float(weight))
            )
            on_hand[bin_id] = count if seen is not None else None
        return cals, on_hand

    def apply(self, flush: Flush) -> list[str]:
        """Apply a flush in one transaction; return ids of orders it created."""
        created: list[str] = []
        committed_counts: dict[str, int] = {}
        now = flush.now_ms
        with transaction(self.session_factory) as s:
            for c in flush.cursors.values():
                cursor = s.get(AgentCursor, c.agent_id)
                if cursor is None:
                    s.add(
                        AgentCursor(
                            agent_id=c.agent_id,
                            last_seq=c.last_seq,
                            gaps=c.gaps,
                            duplicates=c.duplicates,
                            updated_ms=now,
                        )
                    )
                else:
                    cursor.last_seq = max(cursor.last_seq, c.last_seq)
                    cursor.gaps += c.gaps
                    cursor.duplicates += c.duplicates
                    cursor.updated_ms = now
            if flush.cursors:
                for seen in s.scalars(
                    select(Agent).where(Agent.id.in_(list(flush.cursors)))
                ):
                    seen.last_seen_ms = now

            if flush.bins:
                query = select(Bin).where(Bin.id.in_(list(flush.bins))).order_by(Bin.id)
                if is_postgresql(s):
                    query = (
                        query.with_for_update()
                    )  # serialise per bin across server processes
                for row in s.scalars(query):
                    update = flush.bins[row.id]
                    if (
                        row.last_seen_ms is None
                        or update.last_seen_ms >= row.last_seen_ms
                    ):
                        row.last_grams = update.last_grams
                        row.last_seen_ms = update.last_seen_ms
                    if update.on_hand is None:
                        continue
                    row.on_hand = update.on_hand
                    row.on_hand_confidence = update.confidence or 0.0
                    committed_counts[row.id] = update.on_hand
                    for e in update.events:
                        s.add(
                            BinEvent(
                                bin_id=row.id,
                                ts_ms=e.ts_ms,
                                kind=e.kind,
                                delta=e.delta,
                                on_hand_after=e.on_hand_after,
                            )
                        )
                        if e.kind == "refill" and row.pending_delivery_qty > 0:
                            # the scale now confirms (part of) a delivery announced through the API
                            row.pending_delivery_qty = max(
                                0, row.pending_delivery_qty - e.delta
                            )
                    # position = on hand + pending + on order >= on hand: above the reorder point nothing can fire
                    if row.on_hand <= row.reorder_point:
                        trigger = {
                            "reading_ts_ms": update.last_seen_ms,
                            "grams": update.last_grams,
                            "on_hand": update.on_hand,
                        }
                        order = reorder.maybe_reorder(s, row, now, trigger)
                        if order is not None:
                            created.append(order.id)

            for _site, agent_id, status in flush.statuses:
                agent = s.get(Agent, agent_id)
                if agent is None:
                    continue  # status of an agent nobody configured: counted by ingest, not stored
                agent.online = status.state == "online"
                agent.version = status.version or agent.version
                agent.last_seen_ms = max(agent.last_seen_ms or 0, status.ts_ms)
                agent.sensors = [
                    {"bin": x.bin, "ok": x.ok, "fault": x.fault} for x in status.sensors
                ]
                health = {x.bin: x for x in status.sensors}
                for b in s.scalars(select(Bin).where(Bin.agent_id == agent_id)):
                    sensor = health.get(b.id)
                    b.sensor_ok = sensor.ok if sensor is not None else True
                    b.sensor_fault = sensor.fault if sensor is not None else None
        self.registry.set_on_hand(committed_counts)
        return created
