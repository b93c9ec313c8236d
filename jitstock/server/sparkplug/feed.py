"""What the bridge hands to ingest: mapped metrics as jit/v1 readings, node life as statuses.

Readings go one batch per agent (the bins' agents); a ``count`` becomes the gross
weight it stands for (tare + count x unit weight), so ingest counts it back exactly
and history charts it like a scale's reading.  A status covers every bin of the
agent that some mapping feeds: online while any of its edge nodes is, each bin's
sensor faulty while its node (NDEATH) or device (DDEATH) is dead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

import pysparkplug as spb

from jitstock import protocol
from jitstock.clock import Clock
from jitstock.server.levels import MAX_COUNT
from jitstock.server.registry import BinRegistry
from jitstock.server.sparkplug import mappings
from jitstock.server.sparkplug.nodes import NodeKey, NodeTable
from jitstock.server.sparkplug.rejects import Rejects
from jitstock.server.sparkplug.topics import SparkplugTopic

STATUS_VERSION = "sparkplug-b"
NUMERIC = frozenset(
    {
        spb.DataType.INT8,
        spb.DataType.INT16,
        spb.DataType.INT32,
        spb.DataType.INT64,
        spb.DataType.UINT8,
        spb.DataType.UINT16,
        spb.DataType.UINT32,
        spb.DataType.UINT64,
        spb.DataType.FLOAT,
        spb.DataType.DOUBLE,
    }
)
# Handed to ingest: (jit/v1 topic, payload)
Submit = Callable[[str, bytes], None]


class Feed:
    """Builds the jit/v1 messages ingest applies, from metrics and the node table."""

    def __init__(
        self,
        registry: BinRegistry,
        nodes: NodeTable,
        submit: Submit,
        clock: Clock,
        rejects: Rejects,
    ) -> None:
        self.registry = registry
        self.nodes = nodes
        self.submit = submit
        self.clock = clock
        self.rejects = rejects

    def readings(
        self,
        t: SparkplugTopic,
        metrics: Iterable[spb.Metric],
        payload_ts: int,
        table: mappings.MappingTable,
        *,
        data: bool,
    ) -> None:
        """Mapped metrics as readings of their bins' agents (one batch per agent)."""
        snap = self.registry.snapshot
        batches: dict[tuple[str, str], list[protocol.Reading]] = {}
        source = t.describe()
        for m in metrics:
            target = table.by_metric.get((t.group, t.edge_node, t.device, m.name or ""))
            if target is None:
                if data:  # a BIRTH lists every metric the gateway has: no news
                    self.rejects.item(
                        source,
                        "sparkplug_unmapped_metric",
                        f"metric {m.name!r} has no mapping",
                        level=logging.INFO,
                    )
                continue
            i = snap.index.get(target.bin_id)
            if i is None or target.bin_id in snap.unusable:
                self.rejects.item(
                    source,
                    "sparkplug_bin_unavailable",
                    f"metric {m.name!r} maps to bin {target.bin_id!r}, which has no "
                    "agent or no usable tare and unit weight",
                )
                continue
            cal = snap.cals[i]
            grams = self._grams(source, m, target, cal.tare_g, cal.unit_weight_g)
            if grams is None:
                continue
            ts = m.timestamp if m.timestamp is not None else payload_ts
            if not data and 0 <= ts < payload_ts:
                # A BIRTH states every value as current at the BIRTH; a metric's own
                # timestamp is when the tag last changed (Ignition), months ago for a
                # bin nobody touched: dated so, it was refused as too old, or taken as
                # a late replay that moves no count
                ts = payload_ts
            if not 0 <= ts <= protocol.MAX_INT64:
                self.rejects.item(
                    source,
                    "sparkplug_bad_timestamp",
                    f"metric {m.name!r} timestamp {ts} beyond a signed 64-bit integer",
                )
                continue
            site = snap.agent_sites.get(cal.agent_id, cal.site_id)
            batches.setdefault((site, cal.agent_id), []).append(
                protocol.Reading(target.bin_id, ts, grams, True)
            )
        sent_ms = self.clock.time_ms()
        for (site, agent), readings in batches.items():
            for k in range(0, len(readings), protocol.MAX_ITEMS_PER_BATCH):
                batch = protocol.ReadingsBatch(
                    agent,
                    1,  # not checked: Sparkplug's own seq was (Ingest.replay)
                    sent_ms,
                    tuple(readings[k : k + protocol.MAX_ITEMS_PER_BATCH]),
                )
                self.submit(
                    protocol.agent_topic(site, agent, "readings"),
                    protocol.encode_readings(batch),
                )

    def _grams(
        self,
        source: str,
        m: spb.Metric,
        target: mappings.Target,
        tare_g: float,
        unit_weight_g: float,
    ) -> float | None:
        """The gross grams a metric's value stands for (a count through the bin's calibration)."""
        if m.datatype not in NUMERIC:
            self.rejects.item(
                source,
                "sparkplug_wrong_datatype",
                f"metric {m.name!r} is {m.datatype.name}, not a number",
            )
            return None
        value = m.value
        if m.is_null or not isinstance(value, int | float) or isinstance(value, bool):
            self.rejects.item(
                source, "sparkplug_bad_value", f"metric {m.name!r} is null"
            )
            return None
        scaled = float(value) * target.factor
        if not math.isfinite(scaled):
            self.rejects.item(
                source,
                "sparkplug_bad_value",
                f"metric {m.name!r} value {value!r} is not a finite number",
            )
            return None
        if target.unit == "grams":
            return scaled  # ingest checks the range (bad_weight) like any reading
        if not 0 <= scaled <= MAX_COUNT:
            self.rejects.item(
                source,
                "sparkplug_bad_value",
                f"metric {m.name!r} count {value!r} outside 0..{MAX_COUNT}",
            )
            return None
        return tare_g + round(scaled) * unit_weight_g

    def statuses(self, key: NodeKey, table: mappings.MappingTable) -> None:
        """The status of every agent fed by this edge node, from all nodes feeding it."""
        snap = self.registry.snapshot
        agents = {
            snap.cals[snap.index[b]].agent_id
            for _, b in table.node_bins.get(key, ())
            if b in snap.index
        }
        self._send_statuses(agents, table)

    def heartbeat(self, table: mappings.MappingTable) -> None:
        """Agents fed by a live edge node are online, however long it stays silent."""
        snap = self.registry.snapshot
        agents = set()
        for key, feeds in table.node_bins.items():
            state = self.nodes.nodes.get(key)
            if state is None or not (state.born and state.synced):
                continue
            agents |= {
                snap.cals[snap.index[b]].agent_id for _, b in feeds if b in snap.index
            }
        self._send_statuses(agents, table)

    def _send_statuses(self, agents: set[str], table: mappings.MappingTable) -> None:
        if not agents:
            return
        snap = self.registry.snapshot
        # per agent: is any of its nodes alive / known, and each bin's fault (None: ok)
        alive: dict[str, bool] = {}
        faults: dict[str, dict[str, str | None]] = {}
        for key, feeds in table.node_bins.items():
            state = self.nodes.nodes.get(key)
            for device, bin_id in feeds:
                i = snap.index.get(bin_id)
                if i is None or snap.cals[i].agent_id not in agents:
                    continue
                agent = snap.cals[i].agent_id
                if state is not None and (state.born or state.dead):
                    alive[agent] = alive.get(agent, False) or state.born
                fault = self.nodes.sensor_fault(key, device)
                bins = faults.setdefault(agent, {})
                # a bin fed by several metrics is fine while any of them is
                bins[bin_id] = (
                    fault if bin_id not in bins or bins[bin_id] is not None else None
                )
        now = self.clock.time_ms()
        for agent in sorted(alive):
            cal = snap.cals[snap.index[next(iter(faults[agent]))]]
            site = snap.agent_sites.get(agent, cal.site_id)
            status = protocol.Status(
                "online" if alive[agent] else "offline",
                STATUS_VERSION,
                now,
                tuple(
                    protocol.SensorStatus(b, fault is None, fault)
                    for b, fault in sorted(faults[agent].items())
                ),
            )
            self.submit(
                protocol.agent_topic(site, agent, "status"),
                protocol.encode_status(status),
            )
