"""What the server knows of each Sparkplug edge node: alive or dead, its seq, its BIRTHs.

Sparkplug rules followed (Sparkplug B 3.0, host application side):

* ``seq`` runs 0..255 and wraps, one counter per edge node shared by the node's and
  its devices' messages; NBIRTH starts it again.  A message whose seq is not the one
  after the last means messages were lost: the node is out of step until its next
  NBIRTH, and a rebirth is requested.
* Data from a node (or device) whose BIRTH was not seen cannot be trusted (aliases
  and datatypes come from the BIRTH): rebirth requested too.
* NDEATH (usually the broker delivering the node's will) carries the ``bdSeq`` of the
  session it ends.  One *older* than the current NBIRTH's is a late will of a session
  already replaced and is ignored.  A newer one is accepted: some libraries
  (pysparkplug 0.6) send the next session's bdSeq in a clean NDEATH.

The table holds only nodes that some mapping names (bounded by the mappings, not by
what a broker full of other gateways publishes).  Not thread-safe: the bridge's one
worker thread owns it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pysparkplug as spb

SEQ_MODULO = 256
# Half the bdSeq ring: a bdSeq up to this far behind the birth's is an older session's.
BD_SEQ_BEHIND = SEQ_MODULO // 2
BD_SEQ_METRIC = "bdSeq"

NodeKey = tuple[str, str]  # (group, edge node)


@dataclass(slots=True)
class NodeState:
    """One edge node as its messages described it."""

    # alive: NBIRTH seen and no NDEATH since
    born: bool = False
    # NDEATH seen and no NBIRTH since (a node never heard of is neither born nor dead)
    dead: bool = False
    # in step: seq and aliases can be trusted (an NBIRTH, no gap since)
    synced: bool = False
    next_seq: int = 0
    bd_seq: int | None = None
    birth: spb.NBirth | None = None
    # devices alive (DBIRTH seen, no DDEATH since), with their BIRTH for aliases
    devices: dict[str, spb.DBirth] = field(default_factory=dict)
    # devices that said DDEATH: their bins' sensors are reported offline
    dead_devices: set[str] = field(default_factory=set)
    # monotonic time of the last rebirth request to this node
    last_rebirth: float | None = None
    # a request the rate limit held back: sent when the interval is over, unless a
    # BIRTH makes it moot (a quiet gateway must not stay out of step until it talks)
    rebirth_due: bool = False
    # aliases a BIRTH gave to two or more metrics, per device ('' for the node itself):
    # DATA by such an alias cannot say which metric it means
    dup_aliases: dict[str, frozenset[int]] = field(default_factory=dict)


def duplicate_aliases(metrics: Iterable[spb.Metric]) -> frozenset[int]:
    """Aliases given to more than one metric of a BIRTH (Sparkplug wants them unique)."""
    seen: set[int] = set()
    dups: set[int] = set()
    for m in metrics:
        if m.alias is not None:
            (dups if m.alias in seen else seen).add(m.alias)
    return frozenset(dups)


def bd_seq_of(metrics: Iterable[spb.Metric]) -> int | None:
    """The bdSeq metric's value, if the payload carries a usable one."""
    for m in metrics:
        if m.name == BD_SEQ_METRIC and isinstance(m.value, int):
            return m.value % SEQ_MODULO
    return None


class NodeTable:
    """Every mapped edge node's state, and the seq check."""

    def __init__(self) -> None:
        self.nodes: dict[NodeKey, NodeState] = {}

    def node(self, key: NodeKey) -> NodeState:
        """The node's state (created, unknown, on first mention)."""
        state = self.nodes.get(key)
        if state is None:
            state = self.nodes[key] = NodeState()
        return state

    def nbirth(self, key: NodeKey, birth: spb.NBirth) -> None:
        """The node is alive and in step again; its devices must announce themselves anew."""
        state = self.node(key)
        state.born = True
        state.dead = False
        state.synced = True
        state.rebirth_due = False
        state.next_seq = (birth.seq + 1) % SEQ_MODULO
        state.bd_seq = bd_seq_of(birth.metrics)
        state.birth = birth
        state.devices = {}
        state.dead_devices = set()
        state.dup_aliases = {"": duplicate_aliases(birth.metrics)}

    def check_seq(self, key: NodeKey, seq: int) -> str | None:
        """Advance the node's seq; the reason the message cannot be applied, or None."""
        state = self.node(key)
        if not state.synced:
            return "sparkplug_no_birth"
        if seq != state.next_seq:
            state.synced = False
            return "sparkplug_seq_gap"
        state.next_seq = (seq + 1) % SEQ_MODULO
        return None

    def ndeath(self, key: NodeKey, bd_seq: int | None) -> bool:
        """The node is dead; False if this NDEATH ends an older session (ignored)."""
        state = self.node(key)
        if state.bd_seq is not None and bd_seq is not None:
            behind = (state.bd_seq - bd_seq) % SEQ_MODULO
            if 0 < behind <= BD_SEQ_BEHIND:
                return False
        state.born = False
        state.dead = True
        state.synced = False
        state.birth = None
        state.devices = {}
        return True

    def dbirth(self, key: NodeKey, device: str, birth: spb.DBirth) -> None:
        """A device of the node is alive, with these aliases."""
        state = self.node(key)
        state.devices[device] = birth
        state.dead_devices.discard(device)
        state.dup_aliases[device] = duplicate_aliases(birth.metrics)

    def ddeath(self, key: NodeKey, device: str) -> None:
        """A device of the node is dead."""
        state = self.node(key)
        state.devices.pop(device, None)
        state.dead_devices.add(device)

    def lost_track(self) -> list[NodeKey]:
        """Our own connection dropped: no node is in step any more; the nodes to ask for a rebirth."""
        for state in self.nodes.values():
            state.synced = False
        return list(self.nodes)

    def may_request_rebirth(self, key: NodeKey, now: float, interval_s: float) -> bool:
        """Rate limit: at most one rebirth request per node per interval."""
        state = self.node(key)
        if state.last_rebirth is not None and now - state.last_rebirth < interval_s:
            state.rebirth_due = True
            return False
        state.last_rebirth = now
        state.rebirth_due = False
        return True

    def rebirths_due(self, now: float, interval_s: float) -> list[NodeKey]:
        """Nodes whose held-back rebirth request may go out now."""
        return [
            key
            for key, state in self.nodes.items()
            if state.rebirth_due
            and (state.last_rebirth is None or now - state.last_rebirth >= interval_s)
        ]

    def sensor_fault(self, key: NodeKey, device: str) -> str | None:
        """Why a bin fed by this node/device has no live sensor, or None (alive or not known)."""
        state = self.nodes.get(key)
        if state is None:
            return None
        where = "/".join(key)
        if state.dead:
            return f"Sparkplug edge node {where} is offline (NDEATH)"
        if device and device in state.dead_devices:
            return f"Sparkplug device {where}/{device} is offline (DDEATH)"
        return None
