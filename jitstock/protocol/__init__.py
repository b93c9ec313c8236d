"""MQTT wire contract v1, shared by edge, server and firmware_sim.

Topics (``{site}`` and ``{agent}`` match ``[A-Za-z0-9_-]+``)::

    jit/v1/{site}/{agent}/readings   edge -> server  QoS 1            ReadingsBatch
    jit/v1/{site}/{agent}/scans      edge -> server  QoS 1            ScansBatch
    jit/v1/{site}/{agent}/status     edge -> server  QoS 1, retained  Status (last will: offline)
    jit/v1/{site}/{agent}/config     server -> edge  QoS 1, retained  AgentConfig
    jit/v1/{site}/orders/{supplier}  server -> supplier QoS 1         order JSON

docs/protocol.md documents the same contract for third-party devices.

docs/asyncapi.yaml holds the same contract as AsyncAPI 3.0 with a JSON Schema per
payload; tests/test_asyncapi.py keeps the two in agreement.

Decoding never raises anything but :class:`ProtocolError`.  A batch whose
envelope is bad is rejected whole; inside a good envelope each reading is
validated on its own, so one bad reading does not cost the good ones
(:func:`decode_readings` returns the rejects with their reasons).  Every reason
label is in :data:`REJECT_REASONS`.

Lenient where industrial devices need it: an integral float stands for an
integer (``1767225600249.0``), ``0``/``1`` for a boolean, ``sent_ms`` may be
left out.  Strict where it protects data: names, ranges, the agent of the topic.
"""

from __future__ import annotations

from jitstock.protocol.contract import (
    AGENT_KINDS,
    BIN_RE,
    GS,
    MAX_CODE_LEN,
    MAX_EXACT_FLOAT_INT,
    MAX_FAULT_LEN,
    MAX_FUTURE_MS,
    MAX_GRAMS,
    MAX_INT64,
    MAX_ITEMS_PER_BATCH,
    MAX_LABEL_LEN,
    MAX_PACKET_BYTES,
    MAX_PAST_MS,
    MAX_PAYLOAD_BYTES,
    MAX_SEQ,
    NAME_RE,
    PROTOCOL_VERSION,
    REJECT_REASONS,
    RESERVED_AGENT_IDS,
    TOPIC_ROOT,
    AgentConfig,
    BinMapping,
    Kind,
    ProtocolError,
    Reading,
    ReadingsBatch,
    Reject,
    Scan,
    ScansBatch,
    SensorStatus,
    Status,
    TopicAddress,
    agent_topic,
    encode_config,
    encode_readings,
    encode_scans,
    encode_status,
    is_orders_topic,
    now_ms,
    orders_topic,
    parse_topic,
    publish_packet_bytes,
    subscription,
    valid_code,
    valid_label,
)
from jitstock.protocol.decode import (
    ReadingColumns,
    decode_config,
    decode_readings,
    decode_readings_columns,
    decode_scans,
    decode_status,
    load_payload,
)

__all__ = [
    "AGENT_KINDS",
    "AgentConfig",
    "BIN_RE",
    "BinMapping",
    "GS",
    "Kind",
    "MAX_CODE_LEN",
    "MAX_EXACT_FLOAT_INT",
    "MAX_FAULT_LEN",
    "MAX_FUTURE_MS",
    "MAX_GRAMS",
    "MAX_INT64",
    "MAX_ITEMS_PER_BATCH",
    "MAX_LABEL_LEN",
    "MAX_PACKET_BYTES",
    "MAX_PAST_MS",
    "MAX_PAYLOAD_BYTES",
    "MAX_SEQ",
    "NAME_RE",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "REJECT_REASONS",
    "RESERVED_AGENT_IDS",
    "Reading",
    "ReadingColumns",
    "ReadingsBatch",
    "Reject",
    "Scan",
    "ScansBatch",
    "SensorStatus",
    "Status",
    "TOPIC_ROOT",
    "TopicAddress",
    "agent_topic",
    "decode_config",
    "decode_readings",
    "decode_readings_columns",
    "decode_scans",
    "decode_status",
    "load_payload",
    "encode_config",
    "encode_readings",
    "encode_scans",
    "encode_status",
    "is_orders_topic",
    "now_ms",
    "orders_topic",
    "parse_topic",
    "publish_packet_bytes",
    "subscription",
    "valid_code",
    "valid_label",
]
