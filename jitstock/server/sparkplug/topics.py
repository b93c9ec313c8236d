"""Sparkplug B topics and the reason labels a rejected Sparkplug message is counted under.

A topic is ``spBv1.0/{group}/{type}/{edge_node}`` for the edge node's own messages
and ``spBv1.0/{group}/{type}/{edge_node}/{device}`` for its devices'.  Anything else
on the namespace (odd part counts, empty or over-long ids, a type that does not
match the part count) is refused here, before any payload is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

NAMESPACE = "spBv1.0"
# Sparkplug ids are MQTT topic levels; 64 characters is more than any gateway uses
# (the same bound as the sparkplug_mappings columns).
MAX_ID_LEN = 64
MessageKind = Literal["NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDEATH", "DDATA"]
NODE_KINDS: tuple[MessageKind, ...] = ("NBIRTH", "NDEATH", "NDATA")
DEVICE_KINDS: tuple[MessageKind, ...] = ("DBIRTH", "DDEATH", "DDATA")
# Commands (ours included: MQTT 3.1.1 has no no-local) and host STATE are not ingest's.
IGNORED_KINDS = frozenset({"NCMD", "DCMD", "STATE"})

# Every label a rejected Sparkplug message (jitstock_rejected_batches_total) or metric
# (jitstock_rejected_items_total) is counted under; docs/sparkplug.md has the same table.
REJECT_REASONS: Mapping[str, str] = {
    "sparkplug_bad_topic": "not spBv1.0/{group}/{type}/{edge_node}[/{device}] with ids of 1-64 characters",
    "sparkplug_unmapped_node": "an edge node of a followed group that no mapping names (ignored)",
    "sparkplug_oversized": "the payload is over the server's payload limit",
    "sparkplug_malformed": "the payload is not a Sparkplug B protobuf payload (or lacks its timestamp)",
    "sparkplug_bad_seq": "seq missing or outside 0..255",
    "sparkplug_no_birth": "data from an edge node or device whose BIRTH was not seen, or from a node out of step after a lost message (rebirth requested)",
    "sparkplug_seq_gap": "seq is not the one after the last (messages lost: rebirth requested)",
    "sparkplug_duplicate_alias": "a metric in NDATA/DDATA sent by an alias its BIRTH gave to more than one metric (ignored)",
    "sparkplug_unknown_alias": "a metric alias or name the BIRTH did not announce (rebirth requested)",
    "sparkplug_stale_death": "an NDEATH whose bdSeq is older than the edge node's current BIRTH",
    "sparkplug_unmapped_metric": "a metric in NDATA/DDATA that no mapping names (PUT /api/v1/sparkplug/mappings)",
    "sparkplug_wrong_datatype": "a mapped metric that is not a number (boolean, string, array, ...)",
    "sparkplug_bad_value": "a mapped metric that is null, NaN, infinite, negative or too "
    "large, or any metric in NDATA/DDATA whose value cannot be decoded as its datatype",
    "sparkplug_bad_timestamp": "a metric timestamp beyond a signed 64-bit integer",
    "sparkplug_bin_unavailable": "the mapped bin has no agent or no usable calibration",
}


@dataclass(slots=True, frozen=True)
class SparkplugTopic:
    """Where a Sparkplug message came from; ``device`` is '' for the edge node itself."""

    group: str
    kind: MessageKind
    edge_node: str
    device: str = ""

    @property
    def node_key(self) -> tuple[str, str]:
        """The edge node: seq and BIRTH/DEATH are tracked per (group, edge node)."""
        return (self.group, self.edge_node)

    def describe(self) -> str:
        """group/edge_node[/device], for logs and sensor faults."""
        tail = f"/{self.device}" if self.device else ""
        return f"{self.group}/{self.edge_node}{tail}"


class TopicRefused(ValueError):
    """A topic on the Sparkplug namespace that is not one ingest accepts."""


def subscriptions(groups: tuple[str, ...]) -> list[str]:
    """MQTT filters for the edge nodes' and devices' messages of these groups."""
    return [f"{NAMESPACE}/{g}/+/+" for g in groups] + [
        f"{NAMESPACE}/{g}/+/+/+" for g in groups
    ]


def ncmd_topic(group: str, edge_node: str) -> str:
    """Where an edge node listens for commands (the rebirth request)."""
    return f"{NAMESPACE}/{group}/NCMD/{edge_node}"


def parse_topic(topic: str) -> SparkplugTopic | None:
    """The topic's parts; None for a command or STATE (not ingest's); TopicRefused if odd."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != NAMESPACE:
        raise TopicRefused(f"not a {NAMESPACE} topic: {topic[:200]!r}")
    kind = parts[2] if len(parts) >= 4 else parts[1]
    if kind in IGNORED_KINDS or parts[1] == "STATE":
        return None
    if len(parts) == 4 and kind in NODE_KINDS:
        group, _, node = parts[1:]
        device = ""
    elif len(parts) == 5 and kind in DEVICE_KINDS:
        group, _, node, device = parts[1:]
    else:
        raise TopicRefused(
            f"{topic[:200]!r} is not spBv1.0/{{group}}/N*/{{edge_node}} or "
            "spBv1.0/{group}/D*/{edge_node}/{device}"
        )
    for name, value in (("group", group), ("edge node", node), ("device", device)):
        if (value or name != "device") and not 0 < len(value) <= MAX_ID_LEN:
            raise TopicRefused(
                f"{topic[:200]!r}: {name} id must be 1-{MAX_ID_LEN} characters"
            )
    if kind in DEVICE_KINDS and not device:
        raise TopicRefused(
            f"{topic[:200]!r}: device id must be 1-{MAX_ID_LEN} characters"
        )
    return SparkplugTopic(group, kind, node, device)
