"""Sparkplug metric mappings: stored in the state DB, looked up in memory per message.

The bridge looks a metric up for every value it receives, so it keeps the whole
table as a dict, reloaded after every API change and periodically (a change made
through another server process).  The API reads and writes the table directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.db.sparkplug_models import SparkplugMapping

# (group, edge node, device or '', metric name)
MetricKey = tuple[str, str, str, str]


@dataclass(slots=True, frozen=True)
class Target:
    """Where one metric's values go."""

    bin_id: str
    unit: str  # 'grams' | 'count'
    factor: float


@dataclass(slots=True, frozen=True)
class MappingTable:
    """One generation of the mappings, by metric and by edge node."""

    by_metric: dict[MetricKey, Target]
    # edge nodes some mapping names: only their messages are followed
    nodes: frozenset[tuple[str, str]]
    # bins fed per (group, edge node), with the device ('' for the node) of each mapping
    node_bins: dict[tuple[str, str], tuple[tuple[str, str], ...]]

    @staticmethod
    def build(rows: list[SparkplugMapping]) -> MappingTable:
        """Index rows of the sparkplug_mappings table."""
        by_metric: dict[MetricKey, Target] = {}
        node_bins: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for r in rows:
            by_metric[(r.group_id, r.edge_node, r.device, r.metric)] = Target(
                r.bin_id, r.unit, r.factor
            )
            node_bins.setdefault((r.group_id, r.edge_node), []).append(
                (r.device, r.bin_id)
            )
        return MappingTable(
            by_metric,
            frozenset(node_bins),
            {k: tuple(v) for k, v in node_bins.items()},
        )


EMPTY = MappingTable({}, frozenset(), {})


def load(session_factory: SessionFactory) -> MappingTable:
    """The whole table, indexed."""
    with transaction(session_factory, readonly=True) as s:
        return MappingTable.build(list(s.scalars(select(SparkplugMapping))))


def find(
    session: Session, group: str, edge_node: str, device: str, metric: str
) -> SparkplugMapping | None:
    """The mapping of one metric, if there is one."""
    return session.scalar(
        select(SparkplugMapping).where(
            SparkplugMapping.group_id == group,
            SparkplugMapping.edge_node == edge_node,
            SparkplugMapping.device == device,
            SparkplugMapping.metric == metric,
        )
    )
