"""The Sparkplug B bridge: gateway messages in, ordinary jit/v1 readings and statuses out.

One worker thread takes what the bridge's own MQTT connection delivers
(``spBv1.0/{group}/...`` of the configured groups), decodes each payload with
pysparkplug, follows the edge nodes (:class:`~.nodes.NodeTable`) and turns mapped
metrics into jit/v1 readings batches and BIRTH/DEATH into agent statuses.  Those
are handed to the server's one ingest path (``Ingest.replay``: applied like any
agent's batch, without jit/v1's per-agent seq, which Sparkplug replaces with its
own), so levels, events, history, reorders, alerts and the dashboard are the
edge agents' code, not a second writer.

Sparkplug devices publish at QoS 0 and recover lost messages by rebirth, not by
redelivery: a message is acknowledged once handed on.  A seq gap, data before
any BIRTH or an alias no BIRTH announced asks the edge node for a rebirth
(``NCMD`` ``Node Control/Rebirth`` = true), at most once per node per
``rebirth_interval_s``; the BIRTHs then carry every current value.  So does
(re)connecting, and a mapping added or changed: levels are known without waiting for
the next change.  Agents fed by a live edge node are reported online every
``heartbeat_s`` (a gateway reporting by exception may be silent for hours; its
MQTT session and will are its sign of life).

Bad input (a topic with odd parts, a payload that is not Sparkplug protobuf,
NaN, a string where a number belongs, ...) is counted in
``jitstock_rejected_batches_total`` / ``jitstock_rejected_items_total`` under the
labels of :data:`~.topics.REJECT_REASONS`, logged at most once a minute per
kind, and never stops the next message.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pysparkplug as spb
from prometheus_client import Counter

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.session import SessionFactory
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import Incoming, MqttConnection
from jitstock.server.registry import BinRegistry
from jitstock.server.sparkplug import mappings
from jitstock.server.sparkplug.decode import decode_birth, decode_data
from jitstock.server.sparkplug.feed import Feed, Submit
from jitstock.server.sparkplug.nodes import NodeKey, NodeTable, bd_seq_of
from jitstock.server.sparkplug.rejects import Rejects
from jitstock.server.sparkplug.topics import (
    SparkplugTopic,
    TopicRefused,
    ncmd_topic,
    parse_topic,
)

log = logging.getLogger(__name__)

# Mappings changed by another server process are picked up this often.
MAPPINGS_REFRESH_S = 10.0
# Rebirth requests the rate limit held back are looked for this often.
DUE_CHECK_S = 0.5
REBIRTH_METRIC = "Node Control/Rebirth"
_B = TypeVar("_B", spb.NBirth, spb.DBirth)


@dataclass(slots=True, frozen=True)
class NodeView:
    """One mapped edge node as the API shows it."""

    group_id: str
    edge_node: str
    # None: no BIRTH or DEATH seen since the server started
    online: bool | None
    # seq and aliases trusted (else data waits for the rebirth requested)
    in_step: bool
    devices_online: list[str]
    devices_offline: list[str]


class SparkplugBridge:
    """Follows Sparkplug edge nodes and feeds their mapped metrics to ingest."""

    def __init__(
        self,
        *,
        connection: MqttConnection,
        groups: tuple[str, ...],
        registry: BinRegistry,
        metrics: Metrics,
        session_factory: SessionFactory,
        submit: Submit,
        clock: Clock = REAL_CLOCK,
        rebirth_interval_s: float = 10.0,
        heartbeat_s: float = 30.0,
    ) -> None:
        self.connection = connection
        self.groups = groups
        self.registry = registry
        self.metrics = metrics
        self.session_factory = session_factory
        self.clock = clock
        self.rebirth_interval_s = rebirth_interval_s
        self.heartbeat_s = heartbeat_s
        self.nodes = NodeTable()
        self.table = mappings.EMPTY
        self.rejects = Rejects(metrics)
        self.feed = Feed(registry, self.nodes, submit, clock, self.rejects)
        self.rebirths = Counter(
            "jitstock_sparkplug_rebirth_requests",
            "Rebirth requests (NCMD Node Control/Rebirth) sent to Sparkplug edge nodes",
            registry=metrics.registry,
        )
        self.messages = Counter(
            "jitstock_sparkplug_messages",
            "Sparkplug B messages followed, by type",
            ["kind"],
            registry=metrics.registry,
        )
        self._stop = threading.Event()
        # held by the worker while it changes the node table, by status() while it reads
        self._lock = threading.Lock()
        self._reload = threading.Event()
        self._thread: threading.Thread | None = None
        # the worker's schedule (monotonic) and the connection epoch it last saw
        self._epoch = 0
        self._next_beat = time.monotonic() + heartbeat_s
        self._next_reload = time.monotonic() + MAPPINGS_REFRESH_S
        self._next_due = 0.0

    # -- life cycle --

    def start(self) -> None:
        """Load the mappings, connect, and start the worker."""
        self.table = mappings.load(self.session_factory)
        self.connection.start()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-sparkplug", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker and disconnect."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.connection.stop()

    def mappings_changed(self) -> None:
        """The API changed the mappings: the worker reloads them before its next message."""
        self._reload.set()

    def _run(self) -> None:
        inbox = self.connection.inbox
        while not self._stop.is_set():
            try:
                item: Incoming | None = inbox.get(timeout=0.2)
            except queue.Empty:
                item = None
            with self._lock:
                self._step(item)
            if item is not None:
                self.connection.ack(item)

    def _step(self, item: Incoming | None) -> None:
        """One message (if any) and whatever periodic work is due; never raises."""
        try:
            now = time.monotonic()
            if self._reload.is_set() or now >= self._next_reload:
                self._reload.clear()
                self._next_reload = now + MAPPINGS_REFRESH_S
                self._set_table(mappings.load(self.session_factory))
            if self.connection.epoch != self._epoch:
                self._epoch = self.connection.epoch
                self._reconnected()
            if item is not None:
                self.handle(item.topic, item.payload)
            if now >= self._next_due:
                self._next_due = now + DUE_CHECK_S
                for key in self.nodes.rebirths_due(now, self.rebirth_interval_s):
                    self._request_rebirth(key)
            if now >= self._next_beat:
                self._next_beat = now + self.heartbeat_s
                self.feed.heartbeat(self.table)
        except Exception:
            # never stop following: the next message may well be fine
            log.exception("Sparkplug bridge: handling a message failed")

    def status(self) -> list[NodeView]:
        """What the bridge knows of each mapped edge node, for the API."""
        with self._lock:
            views = []
            for key in sorted(self.table.nodes):
                state = self.nodes.nodes.get(key)
                views.append(
                    NodeView(
                        key[0],
                        key[1],
                        None
                        if state is None or not (state.born or state.dead)
                        else state.born,
                        state is not None and state.synced,
                        sorted(state.devices) if state is not None else [],
                        sorted(state.dead_devices) if state is not None else [],
                    )
                )
            return views

    def _set_table(self, table: mappings.MappingTable) -> None:
        """New mappings; a node mapped for the first time, or with a metric newly mapped
        or sent to another bin, unit or factor, is asked for its current values: a gateway
        reporting by exception may not send that metric again for hours."""
        old = self.table
        new = set(table.nodes - old.nodes)
        for metric, target in table.by_metric.items():
            if old.by_metric.get(metric) != target:
                new.add((metric[0], metric[1]))
        self.table = table
        for key in sorted(new):
            self._request_rebirth(key)

    def _reconnected(self) -> None:
        """Anything may have happened while we were away: ask every mapped node to rebirth."""
        self.nodes.lost_track()
        for key in sorted(self.table.nodes):
            self._request_rebirth(key)

    # -- one message (public: tests drive it without MQTT) --

    def handle(self, topic: str, payload: bytes) -> None:
        """Follow one Sparkplug message; rejects are counted and logged, never raised."""
        try:
            t = parse_topic(topic)
        except TopicRefused as exc:
            self.rejects.batch(topic[:100], "sparkplug_bad_topic", str(exc))
            return
        if t is None:
            return
        if t.node_key not in self.table.nodes:
            # another plant system's gateway on the shared broker: not ours to follow
            self.rejects.batch(
                t.describe(),
                "sparkplug_unmapped_node",
                f"edge node {t.group}/{t.edge_node} has no mapping",
                level=logging.INFO,
            )
            return
        if len(payload) > protocol.MAX_PAYLOAD_BYTES:
            self.rejects.batch(
                t.describe(),
                "sparkplug_oversized",
                f"{t.kind} payload of {len(payload)} bytes, limit {protocol.MAX_PAYLOAD_BYTES}",
            )
            return
        handler = {
            "NBIRTH": self._nbirth,
            "NDEATH": self._ndeath,
            "DBIRTH": self._dbirth,
            "DDEATH": self._ddeath,
            "NDATA": self._data,
            "DDATA": self._data,
        }[t.kind]
        if handler(t, payload):
            self.messages.labels(t.kind).inc()

    def _nbirth(self, t: SparkplugTopic, payload: bytes) -> bool:
        decoded = self._decode_birth(t, spb.NBirth, payload, self._seq_in_range)
        if decoded is None:
            return False
        birth, values = decoded
        self.nodes.nbirth(t.node_key, birth)
        self.feed.readings(t, values, birth.timestamp, self.table, data=False)
        self.feed.statuses(t.node_key, self.table)
        return True

    def _ndeath(self, t: SparkplugTopic, payload: bytes) -> bool:
        try:
            death = spb.NDeath.decode(payload)
        except Exception as exc:
            self._malformed(t, exc)
            return False
        if not self.nodes.ndeath(t.node_key, bd_seq_of((death.bd_seq_metric,))):
            self.rejects.batch(
                t.describe(),
                "sparkplug_stale_death",
                f"NDEATH of {t.describe()} ends an older session than its current NBIRTH; ignored",
            )
            return False
        self.feed.statuses(t.node_key, self.table)
        return True

    def _dbirth(self, t: SparkplugTopic, payload: bytes) -> bool:
        decoded = self._decode_birth(t, spb.DBirth, payload, self._in_step)
        if decoded is None:
            return False
        birth, values = decoded
        self.nodes.dbirth(t.node_key, t.device, birth)
        self.feed.readings(t, values, birth.timestamp, self.table, data=False)
        self.feed.statuses(t.node_key, self.table)
        return True

    def _ddeath(self, t: SparkplugTopic, payload: bytes) -> bool:
        death = self._decode_ddeath(t, payload)
        if death is None or not self._in_step(t, death.seq):
            return False
        self.nodes.ddeath(t.node_key, t.device)
        self.feed.statuses(t.node_key, self.table)
        return True

    def _data(self, t: SparkplugTopic, payload: bytes) -> bool:
        state = self.nodes.node(t.node_key)
        birth: spb.NBirth | spb.DBirth | None = (
            state.devices.get(t.device) if t.device else state.birth
        )
        cls = spb.DData if t.device else spb.NData
        if not state.synced or birth is None:
            if _not_protobuf(cls, payload):
                # garbage on a node's topic is not the node's: counted, no rebirth asked
                self.rejects.batch(
                    t.describe(),
                    "sparkplug_malformed",
                    f"{t.kind} payload is not Sparkplug B protobuf",
                )
                return False
            what = "device" if t.device else "edge node"
            self._out_of_step(
                t,
                "sparkplug_no_birth",
                f"{t.kind} from {what} {t.describe()} "
                + (_OUT_OF_STEP if state.born else "before its BIRTH"),
            )
            return False
        try:
            data, undecodable = decode_data(cls, payload, birth)
        except KeyError as exc:
            # an alias (or a name without a datatype) the BIRTH did not announce
            self._out_of_step(
                t,
                "sparkplug_unknown_alias",
                f"{t.kind} of {t.describe()} names metric {exc} not in its BIRTH",
            )
            return False
        except Exception as exc:
            self._malformed(t, exc)
            return False
        if not self._in_step(t, data.seq):
            return False
        # one bad value is that metric's problem: the rest of the message applies
        self._bad_values(t, undecodable, "its BIRTH declared")
        metrics = data.metrics
        dups = state.dup_aliases.get(t.device)
        if dups:
            metrics = tuple(x for x in metrics if x.alias not in dups)
            for x in data.metrics:
                if x.alias in dups:
                    self.rejects.item(
                        t.describe(),
                        "sparkplug_duplicate_alias",
                        f"{t.kind} sends alias {x.alias}, which the BIRTH gave to more "
                        "than one metric: which one is meant cannot be known (fix the "
                        "gateway's aliases)",
                    )
        self.feed.readings(t, metrics, data.timestamp, self.table, data=True)
        return True

    def _decode_birth(
        self,
        t: SparkplugTopic,
        cls: type[_B],
        payload: bytes,
        seq_ok: Callable[[SparkplugTopic, int], bool],
    ) -> tuple[_B, tuple[spb.Metric, ...]] | None:
        """The BIRTH and the metrics whose values feed bins (None: malformed or its seq
        refused by ``seq_ok``, counted).

        A metric whose value does not fit its declared datatype is refused alone (its
        declaration kept for later DATA); the rest of the BIRTH applies."""
        try:
            birth, undecodable = decode_birth(cls, payload)
        except Exception as exc:
            self._malformed(t, exc)
            return None
        if not seq_ok(t, birth.seq):
            return None
        self._bad_values(t, undecodable, "it declares")
        bad = {name for name, _ in undecodable}
        return birth, tuple(x for x in birth.metrics if x.name not in bad)

    def _bad_values(
        self, t: SparkplugTopic, undecodable: list[tuple[str, str]], declared: str
    ) -> None:
        for name, why in undecodable:
            self.rejects.item(
                t.describe(),
                "sparkplug_bad_value",
                f"{t.kind} metric {name!r}: its value cannot be decoded as the "
                f"datatype {declared} ({why})",
            )

    def _decode_ddeath(self, t: SparkplugTopic, payload: bytes) -> spb.DDeath | None:
        try:
            return spb.DDeath.decode(payload)
        except Exception as exc:
            # protobuf's DecodeError, pysparkplug's ValueError (no timestamp), ...
            self._malformed(t, exc)
            return None

    def _malformed(self, t: SparkplugTopic, exc: Exception) -> None:
        self.rejects.batch(
            t.describe(),
            "sparkplug_malformed",
            f"{t.kind} payload is not Sparkplug B: {type(exc).__name__}: {str(exc)[:200]}",
        )

    def _seq_in_range(self, t: SparkplugTopic, seq: int) -> bool:
        if 0 <= seq < 256:
            return True
        self.rejects.batch(
            t.describe(), "sparkplug_bad_seq", f"{t.kind} seq {seq} outside 0..255"
        )
        return False

    def _in_step(self, t: SparkplugTopic, seq: int) -> bool:
        """The message's seq is the next of its edge node (else counted, rebirth asked)."""
        if not self._seq_in_range(t, seq):
            return False
        expected = self.nodes.node(t.node_key).next_seq
        reason = self.nodes.check_seq(t.node_key, seq)
        if reason is None:
            return True
        self._out_of_step(
            t,
            reason,
            f"{t.kind} of {t.describe()}: seq {seq}, expected {expected}"
            if reason == "sparkplug_seq_gap"
            else f"{t.kind} from {t.describe()} "
            + (
                _OUT_OF_STEP
                if self.nodes.node(t.node_key).born
                else "before its NBIRTH"
            ),
        )
        return False

    def _out_of_step(self, t: SparkplugTopic, reason: str, message: str) -> None:
        self.rejects.batch(t.describe(), reason, message + "; rebirth requested")
        self.nodes.node(t.node_key).synced = False
        self._request_rebirth(t.node_key)

    def _request_rebirth(self, key: NodeKey) -> None:
        if not self.nodes.may_request_rebirth(
            key, time.monotonic(), self.rebirth_interval_s
        ):
            return
        now = self.clock.time_ms()
        command = spb.NCmd(
            timestamp=now,
            metrics=(
                spb.Metric(
                    timestamp=now,
                    name=REBIRTH_METRIC,
                    datatype=spb.DataType.BOOLEAN,
                    value=True,
                ),
            ),
        )
        self.connection.publish(
            ncmd_topic(*key), command.encode(include_dtypes=True), qos=0
        )
        self.rebirths.inc()
        log.info("Sparkplug: rebirth requested from edge node %s/%s", *key)


# Data of a node born but out of step (a seq gap, or the server's connection came back):
# its BIRTH was seen, so "before its BIRTH" would send the reader looking for the wrong
# cause.
_OUT_OF_STEP = (
    "while its edge node is out of step (a message was lost), until its rebirth"
)


def _not_protobuf(cls: type[spb.NData] | type[spb.DData], payload: bytes) -> bool:
    """Whether the payload does not even parse as protobuf (judged without its BIRTH).

    Without the BIRTH an alias-only metric cannot be decoded, so only protobuf's own
    DecodeError counts; it is recognised by name because protobuf ships no type stubs.
    """
    try:
        cls.decode(payload)
    except Exception as exc:
        kind = type(exc)
        return kind.__name__ == "DecodeError" and kind.__module__.startswith(
            "google.protobuf"
        )
    return False
