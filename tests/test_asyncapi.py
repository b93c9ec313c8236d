"""docs/asyncapi.yaml is a valid AsyncAPI 3.0 document whose payload schemas are the
protocol's: bounds pinned to jitstock/protocol/, payloads generated within the
protocol's bounds valid by the schemas, what the protocol refuses refused by the schemas
too, and every message a real edge agent on simulated scales and a scanner publishes
through Mosquitto valid."""

from __future__ import annotations

import copy
import re
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from jitstock import protocol as p
from jitstock.edge.agent import Agent
from jitstock.edge.settings import EdgeSettings, ScaleSettings, ScannerSettings
from jitstock.edge.stability import SignalSettings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.firmware_sim.scanner import SimulatedScanner
from tests.edge.mqtt_support import Collector, publish_retained
from tests.services import Mosquitto
from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[1]
ASYNCAPI = ROOT / "docs" / "asyncapi.yaml"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
DOC_URI = "urn:jitstock:asyncapi"
# Payload schema of each agent topic kind (and of the orders topic).
SCHEMA_OF_KIND = {
    "readings": "ReadingsBatch",
    "scans": "ScansBatch",
    "status": "Status",
    "config": "AgentConfig",
    "orders": "Order",
}
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "ReadingsBatch": p.decode_readings,
    "ScansBatch": p.decode_scans,
    "Status": p.decode_status,
    "AgentConfig": p.decode_config,
}


@cache
def document() -> dict[str, Any]:
    """docs/asyncapi.yaml, parsed."""
    return yaml.safe_load(ASYNCAPI.read_text())


def fresh_document() -> dict[str, Any]:
    """A copy to mutate."""
    return copy.deepcopy(document())


@cache
def validator(name: str) -> jsonschema.Draft7Validator:
    """A JSON Schema validator for components.schemas[name] (AsyncAPI Schema is Draft 7)."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource(contents=document(), specification=DRAFT7)
    )
    return jsonschema.Draft7Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry
    )


def schema_errors(name: str, doc: Any) -> list[str]:
    """What is wrong with `doc` by the schema `name` (empty: valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(name).iter_errors(doc)
    ]


def asyncapi3_model() -> Any:
    """The AsyncAPI 3 model class of the asyncapi3 package (its import warns about
    pydantic field names, which is theirs, not ours)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from asyncapi3.models.asyncapi import AsyncAPI3

    return AsyncAPI3


# ------------------------------------------------------------------ the document itself


def test_the_document_is_a_valid_asyncapi_3_document() -> None:
    model = asyncapi3_model()
    parsed = model.model_validate(document())
    assert parsed.asyncapi == "3.0.0"
    # the validator does validate: a broken copy is refused
    for break_it in (
        lambda d: d["operations"]["receiveReadings"].__setitem__("action", "publish"),
        lambda d: d["info"].pop("title"),
        lambda d: d["channels"]["readings"].__setitem__("topic", "x"),
        lambda d: d["operations"]["sendConfig"]["bindings"]["mqtt"].__setitem__(
            "qos", 3
        ),
    ):
        broken = fresh_document()
        break_it(broken)
        with pytest.raises(ValueError, match="validation error"):
            model.model_validate(broken)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node: Any = document()
    for part in pointer[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{pointer} does not resolve"
        assert part in node, f"{pointer} does not resolve"
        node = node[part]
    return node


def test_every_reference_resolves_and_every_channel_has_an_operation() -> None:
    doc = document()
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        _resolve(ref)
    used = {op["channel"]["$ref"] for op in doc["operations"].values()}
    assert used == {f"#/channels/{c}" for c in doc["channels"]}
    for op in doc["operations"].values():
        channel = op["channel"]["$ref"]
        for m in op["messages"]:
            assert m["$ref"].startswith(f"{channel}/messages/"), (channel, m)


def test_every_payload_schema_is_a_valid_draft_7_schema() -> None:
    schemas = document()["components"]["schemas"]
    for name, schema in schemas.items():
        jsonschema.Draft7Validator.check_schema(schema)
        assert name
    for message in document()["components"]["messages"].values():
        assert set(message["payload"]) == {"$ref"}


def test_channels_are_the_protocols_topics_with_their_qos_and_retain() -> None:
    doc = document()
    channels = doc["channels"]
    for kind in p.AGENT_KINDS:
        address = channels[kind]["address"]
        assert address.format(site="plant1", agent="pi-7") == p.agent_topic(
            "plant1", "pi-7", kind
        )
        assert p.subscription(kind) == address.format(site="+", agent="+")
    assert channels["orders"]["address"].format(
        site="plant1", supplier="acme"
    ) == p.orders_topic("plant1", "acme")
    retained = {"receiveStatus", "sendConfig"}
    for name, op in doc["operations"].items():
        mqtt = op["bindings"]["mqtt"]
        assert mqtt["qos"] == 1, name
        assert mqtt["retain"] is (name in retained), name
    # the payload schema of each channel is the one this test file checks
    for kind, schema in SCHEMA_OF_KIND.items():
        if kind == "orders":  # beside the order, its lifecycle events (tested below)
            message = channels[kind]["messages"]["order"]
        else:
            (message,) = channels[kind]["messages"].values()
        assert _resolve(message["$ref"])["payload"]["$ref"].endswith(f"/{schema}")
    names = doc["components"]["parameters"]
    for param in ("site", "agent", "supplier"):
        assert p.NAME_RE.pattern in names[param]["description"]


# a status version or sensor fault: no C0/C1 control character (p.valid_label also refuses
# other non-printable Unicode, which a JSON Schema pattern cannot name)
LABEL_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"


def test_every_bound_is_the_protocols_constant() -> None:
    s = document()["components"]["schemas"]
    pins: list[tuple[Any, Any]] = [
        (s["AgentId"]["pattern"], p.NAME_RE.pattern),
        (s["BinId"]["pattern"], p.BIN_RE.pattern),
        (s["EpochMs"]["minimum"], 0),
        (s["EpochMs"]["maximum"], p.MAX_INT64),
        (s["Seq"]["minimum"], 1),
        (s["Seq"]["maximum"], p.MAX_SEQ),
        (
            s["ReadingsBatch"]["properties"]["readings"]["maxItems"],
            p.MAX_ITEMS_PER_BATCH,
        ),
        (s["ScansBatch"]["properties"]["scans"]["maxItems"], p.MAX_ITEMS_PER_BATCH),
        (s["Status"]["properties"]["sensors"]["maxItems"], p.MAX_ITEMS_PER_BATCH),
        (s["Reading"]["properties"]["grams"]["minimum"], 0),
        (s["Reading"]["properties"]["grams"]["maximum"], p.MAX_GRAMS),
        (s["Scan"]["properties"]["code"]["maxLength"], p.MAX_CODE_LEN),
        (s["Status"]["properties"]["version"]["maxLength"], p.MAX_LABEL_LEN),
        (s["SensorStatus"]["properties"]["fault"]["maxLength"], p.MAX_FAULT_LEN),
        (s["Status"]["properties"]["version"]["pattern"], LABEL_PATTERN),
        (s["SensorStatus"]["properties"]["fault"]["pattern"], LABEL_PATTERN),
        (s["Status"]["properties"]["state"]["enum"], ["online", "offline"]),
    ]
    for got, want in pins:
        assert got == want
    for server in document()["servers"].values():
        assert server["x-max-payload-bytes"] == p.MAX_PAYLOAD_BYTES
        assert server["x-maximum-packet-size"] == p.MAX_PACKET_BYTES
    described = document()["info"]["description"]
    assert f"{p.MAX_PAYLOAD_BYTES:,}" in described


def test_the_order_schema_is_the_order_created_envelope() -> None:
    from jitstock.server.webhooks import ORDER_CREATED, WEBHOOK_VERSION, envelope

    order = envelope(ORDER_CREATED, "ord_1", 1767225600000, {"order": {"id": "ord_1"}})
    assert schema_errors("Order", order) == []
    schema = document()["components"]["schemas"]["Order"]["properties"]
    assert schema["version"]["const"] == WEBHOOK_VERSION
    assert schema["type"]["const"] == ORDER_CREATED
    # the order without its envelope (before issue 13) is not an order message
    assert schema_errors("Order", {"id": "ord_1", "qty": 5})


def test_the_orders_topic_carries_every_lifecycle_event_the_webhooks_carry() -> None:
    """An mqtt_orders supplier gets every delivery type of the OpenAPI webhooks on its
    order topic (found from the outside: it got order.created and no order.cancelled);
    each event's schema names its type and requires the fields its webhook data has."""
    from jitstock.server.api.webhook_schemas import _camel, _data_model
    from jitstock.server.supplier.lifecycle import EVENT_TYPES
    from jitstock.server.webhooks import envelope

    doc = document()
    messages = doc["channels"]["orders"]["messages"]
    payloads = {
        _resolve(m["$ref"])["name"]: _resolve(m["$ref"])["payload"]["$ref"]
        for name, m in messages.items()
        if name != "order"
    }
    lifecycle = [t for t in EVENT_TYPES if t != "order.created"]
    assert sorted(payloads) == sorted(lifecycle)
    sent = {
        m["$ref"].rsplit("/", 1)[1]
        for m in doc["operations"]["sendOrderEvent"]["messages"]
    }
    assert sent == set(messages) - {"order"}
    schemas = doc["components"]["schemas"]
    for event_type in lifecycle:
        name = _camel(event_type)
        assert payloads[event_type].endswith(f"/{name}")
        own = schemas[name]["allOf"][1]["properties"]
        assert own["type"]["const"] == event_type
        fields = set(_data_model(event_type).model_fields)
        required = set(own.get("data", {}).get("required", [])) | {"order", "note"}
        assert required == fields, event_type
        data = dict.fromkeys(fields, 1) | {
            "order": {"id": "ord_1", "state": "cancelled"},
            "note": None,
        }
        event = envelope(event_type, "evt_1", 1767225600000, data)
        assert schema_errors(name, event) == [], event_type
        assert schema_errors(name, {**event, "type": "order.other"}), event_type
        assert schema_errors(name, {**event, "id": "ord_1"}), event_type
        if len(fields) > 2:
            thin = {**event, "data": {"order": data["order"], "note": None}}
            assert schema_errors(name, thin), event_type


# ------------------------------------------------------------------ examples


def _examples() -> Iterator[tuple[str, str, Any]]:
    for mname, message in document()["components"]["messages"].items():
        schema = message["payload"]["$ref"].rsplit("/", 1)[1]
        for example in message.get("examples", []):
            yield f"{mname}/{example['name']}", schema, example["payload"]


def _protocol_md_examples() -> Iterator[tuple[str, str, Any]]:
    """The ```json blocks of docs/protocol.md, each with the schema its keys name."""
    blocks = re.findall(r"```json\n(.*?)```", PROTOCOL_MD.read_text(), re.S)
    assert len(blocks) >= 4
    for i, block in enumerate(blocks):
        doc = orjson.loads(block)
        if "readings" in doc:
            yield f"protocol.md#{i}", "ReadingsBatch", doc
        elif "scans" in doc:
            yield f"protocol.md#{i}", "ScansBatch", doc
        elif "state" in doc:
            yield f"protocol.md#{i}", "Status", doc
        elif "bins" in doc:
            yield f"protocol.md#{i}", "AgentConfig", doc
        else:
            yield f"protocol.md#{i}", "", doc


@pytest.mark.parametrize(
    ("where", "schema", "payload"),
    [*_examples(), *_protocol_md_examples()],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_documented_examples_are_valid_and_the_protocol_applies_them(
    where: str, schema: str, payload: Any
) -> None:
    if not schema:
        pytest.fail(f"{where}: a JSON example of no known payload")
    assert schema_errors(schema, payload) == [], where
    decode = DECODERS.get(schema)
    if decode is not None:
        _assert_applied_whole(schema, payload)


def _assert_applied_whole(schema: str, doc: Any) -> None:
    """The protocol decodes `doc` (without a clock) and drops nothing of it."""
    raw = orjson.dumps(doc)
    decoded = DECODERS[schema](raw)
    if isinstance(decoded, tuple):
        batch, rejects = decoded
        assert rejects == []
        items = batch.readings if schema == "ReadingsBatch" else batch.scans
        assert len(items) == len(doc[schema.removesuffix("Batch").lower()])


# ------------------------------------------------------------------ payloads from the protocol's bounds

MS = st.integers(0, p.MAX_INT64) | st.integers(0, p.MAX_EXACT_FLOAT_INT).map(float)
SEQ = st.integers(1, p.MAX_SEQ) | st.integers(1, p.MAX_EXACT_FLOAT_INT).map(float)
NAME = st.from_regex(p.NAME_RE, fullmatch=True)
BIN = st.from_regex(p.BIN_RE, fullmatch=True)
GRAMS = st.floats(0, p.MAX_GRAMS) | st.integers(0, int(p.MAX_GRAMS))
FLAG = st.sampled_from([True, False, 0, 1, 0.0, 1.0])
PRINTABLE = st.text(
    st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"]),
    min_size=1,
    max_size=p.MAX_CODE_LEN,
).filter(str.isprintable)
SENT_MS = {"sent_ms": MS | st.none()}


def LABEL(max_size: int) -> st.SearchStrategy[str]:
    """A status version or sensor fault: printable text, possibly empty."""
    return st.text(max_size=max_size).filter(str.isprintable)


READING = st.fixed_dictionaries(
    {"bin": BIN, "ts_ms": MS, "grams": GRAMS}, optional={"stable": FLAG}
)
# a GS1 label's code: printable characters with GS (FNC1) between, before or after them
GS1_CODE = (
    st.lists(st.sampled_from([p.GS, ""]) | PRINTABLE.map(lambda t: t[:60]), min_size=1)
    .map("".join)
    .filter(lambda c: c.strip(p.GS) != "" and len(c) <= p.MAX_CODE_LEN)
)
SCAN = st.fixed_dictionaries(
    {"scanner": BIN, "ts_ms": MS, "code": PRINTABLE | GS1_CODE}
)
READINGS = st.fixed_dictionaries(
    {"agent": NAME, "seq": SEQ, "readings": st.lists(READING, max_size=8)},
    optional=SENT_MS,
)
SCANS = st.fixed_dictionaries(
    {"agent": NAME, "seq": SEQ, "scans": st.lists(SCAN, max_size=8)}, optional=SENT_MS
)
SENSOR = st.fixed_dictionaries(
    {"bin": BIN, "ok": FLAG},
    optional={"fault": st.none() | LABEL(p.MAX_FAULT_LEN)},
)
STATUS = st.fixed_dictionaries(
    {"state": st.sampled_from(["online", "offline"]), "ts_ms": MS},
    optional={
        "version": LABEL(p.MAX_LABEL_LEN),
        "sensors": st.lists(SENSOR, max_size=8),
    },
)
POSITIVE = st.floats(min_value=0, exclude_min=True, allow_infinity=False) | st.integers(
    1, 10**6
)
MAPPING = st.fixed_dictionaries(
    {"port": st.text(max_size=40), "bin": BIN},
    optional={
        "channel": st.integers(0, 64) | st.integers(0, 64).map(float),
        "tare_hint_g": st.none() | GRAMS,
    },
)
CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "bins": st.lists(MAPPING, max_size=4),
        "step_g": POSITIVE | st.none(),
        "keepalive_s": POSITIVE | st.none(),
        "stability_window_s": POSITIVE,
        "stability_spread_g": POSITIVE,
        "x_site_note": st.text(max_size=20),
    },
)
VALID = {
    "ReadingsBatch": READINGS,
    "ScansBatch": SCANS,
    "Status": STATUS,
    "AgentConfig": CONFIG,
}


@pytest.mark.parametrize("schema", sorted(VALID))
def test_payloads_within_the_protocols_bounds_are_valid_by_the_schema(
    schema: str,
) -> None:
    @settings(max_examples=150, deadline=None)
    @given(doc=VALID[schema])
    def check(doc: dict[str, Any]) -> None:
        _assert_applied_whole(schema, doc)
        assert schema_errors(schema, orjson.loads(orjson.dumps(doc))) == []

    check()


# ------------------------------------------------------------------ what both refuse


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def apply(doc: dict[str, Any]) -> Any:
        doc[key] = value
        return doc

    return apply


def _drop(key: str) -> Callable[[dict[str, Any]], Any]:
    def apply(doc: dict[str, Any]) -> Any:
        doc.pop(key, None)
        return doc

    return apply


# Not "pi-1\n": Python's re (in the jsonschema package) lets '$' match before a final
# newline where JSON Schema's ECMA-262 patterns do not; tests/test_protocol.py checks the
# protocol refuses it.
BAD_NAMES = ["", "a/b", "x" * 65, "pi 1", "A-01 ", 7, None, True]
BAD_INTEGERS = [-1, p.MAX_INT64 + 1, "5", True, 1.5, None, [1]]
ENVELOPE_BREAKS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("agent missing", _drop("agent")),
    *[(f"agent {v!r}", _set("agent", v)) for v in BAD_NAMES],
    ("seq missing", _drop("seq")),
    *[(f"seq {v!r}", _set("seq", v)) for v in [0, *BAD_INTEGERS]],
    *[(f"sent_ms {v!r}", _set("sent_ms", v)) for v in BAD_INTEGERS if v is not None],
    ("not an object", lambda d: [d]),
]


def _list_breaks(key: str, item: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (f"{key} missing", _drop(key)),
        (f"{key} not a list", _set(key, {"0": item})),
        (f"{key} null", _set(key, None)),
        (
            f"{key} {p.MAX_ITEMS_PER_BATCH + 1} items",
            _set(key, [item] * (p.MAX_ITEMS_PER_BATCH + 1)),
        ),
    ]


GOOD_READING = {"bin": "A-01", "ts_ms": 1767225600050, "grams": 1734.6}
GOOD_SCAN = {"scanner": "gun-1", "ts_ms": 1767225600400, "code": "4006381333931"}


@pytest.mark.parametrize(
    ("schema", "name", "break_it"),
    [
        (schema, name, fn)
        for schema, key, item in (
            ("ReadingsBatch", "readings", GOOD_READING),
            ("ScansBatch", "scans", GOOD_SCAN),
        )
        for name, fn in [*ENVELOPE_BREAKS, *_list_breaks(key, item)]
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_batch_the_protocol_rejects_whole_the_schema_refuses(
    schema: str, name: str, break_it: Callable[[dict[str, Any]], Any]
) -> None:
    key = "readings" if schema == "ReadingsBatch" else "scans"
    item = GOOD_READING if key == "readings" else GOOD_SCAN
    doc = break_it({"agent": "pi-1", "seq": 3, "sent_ms": 1767225600456, key: [item]})
    with pytest.raises(p.ProtocolError):
        DECODERS[schema](orjson.dumps(doc))
    assert schema_errors(schema, doc), name


READING_BREAKS: list[tuple[str, Any]] = [
    ("not an object", "A-01"),
    ("bin missing", {k: v for k, v in GOOD_READING.items() if k != "bin"}),
    *[(f"bin {v!r}", {**GOOD_READING, "bin": v}) for v in BAD_NAMES],
    ("ts_ms missing", {k: v for k, v in GOOD_READING.items() if k != "ts_ms"}),
    *[(f"ts_ms {v!r}", {**GOOD_READING, "ts_ms": v}) for v in BAD_INTEGERS],
    *[
        (f"grams {v!r}", {**GOOD_READING, "grams": v})
        for v in [-0.5, p.MAX_GRAMS + 1, "5", True, None]
    ],
    *[(f"stable {v!r}", {**GOOD_READING, "stable": v}) for v in [2, 0.5, "yes", None]],
]
SCAN_BREAKS: list[tuple[str, Any]] = [
    ("not an object", 5),
    *[(f"scanner {v!r}", {**GOOD_SCAN, "scanner": v}) for v in BAD_NAMES],
    *[(f"ts_ms {v!r}", {**GOOD_SCAN, "ts_ms": v}) for v in BAD_INTEGERS],
    *[
        (f"code {v!r}", {**GOOD_SCAN, "code": v})
        for v in [
            "",
            "x" * (p.MAX_CODE_LEN + 1),
            "ß" * (p.MAX_CODE_LEN + 1),
            "a\x00b",
            "a\tb",
            "\x85",
            "\x1d",  # GS alone, or nothing but GS: no code
            "\x1d\x1d",
            "01\x1c02",  # FS: not the GS1 separator
            "\x1d01\x1e",
            5,
            None,
        ]
    ],
]


@pytest.mark.parametrize(
    ("schema", "name", "bad"),
    [("ReadingsBatch", n, b) for n, b in READING_BREAKS]
    + [("ScansBatch", n, b) for n, b in SCAN_BREAKS],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_item_the_protocol_drops_the_schema_refuses(
    schema: str, name: str, bad: Any
) -> None:
    key = "readings" if schema == "ReadingsBatch" else "scans"
    good = GOOD_READING if key == "readings" else GOOD_SCAN
    doc = {"agent": "pi-1", "seq": 3, key: [good, bad, good]}
    _, rejects = DECODERS[schema](orjson.dumps(doc))
    assert [r.index for r in rejects] == [1], name
    assert schema_errors(schema, doc), name


GOOD_SENSOR = {"bin": "A-01", "ok": True, "fault": None}
GOOD_STATUS = {"state": "online", "version": "0.1.0", "ts_ms": 5, "sensors": []}
STATUS_BREAKS: list[tuple[str, Any]] = [
    ("state missing", {k: v for k, v in GOOD_STATUS.items() if k != "state"}),
    *[(f"state {v!r}", {**GOOD_STATUS, "state": v}) for v in ["busy", 1, None]],
    *[
        (f"version {v!r}", {**GOOD_STATUS, "version": v})
        for v in [5, None, "x" * (p.MAX_LABEL_LEN + 1), "1.0\n2", "a\x00b", "\x1b[0m"]
    ],
    ("ts_ms missing", {k: v for k, v in GOOD_STATUS.items() if k != "ts_ms"}),
    *[(f"ts_ms {v!r}", {**GOOD_STATUS, "ts_ms": v}) for v in BAD_INTEGERS],
    *[(f"sensors {v!r}", {**GOOD_STATUS, "sensors": v}) for v in [None, {}, "x"]],
    (
        "too many sensors",
        {**GOOD_STATUS, "sensors": [GOOD_SENSOR] * (p.MAX_ITEMS_PER_BATCH + 1)},
    ),
    *[
        (f"sensor {v!r}", {**GOOD_STATUS, "sensors": [v]})
        for v in [
            "A-01",
            {"ok": True},
            {"bin": "a/b", "ok": True},
            {"bin": "A-01"},
            {"bin": "A-01", "ok": 2},
            {"bin": "A-01", "ok": "yes"},
            {"bin": "A-01", "ok": True, "fault": 5},
            {"bin": "A-01", "ok": True, "fault": "x" * (p.MAX_FAULT_LEN + 1)},
            {"bin": "A-01", "ok": True, "fault": "x\nWARNING forged"},
            {"bin": "A-01", "ok": True, "fault": "a\x00b"},
            {"bin": "A-01", "ok": True, "fault": "\x1b[2J"},
            {"bin": "A-01", "ok": True, "fault": "\x85"},
        ]
    ],
    ("not an object", [GOOD_STATUS]),
]
GOOD_MAPPING = {"port": "/dev/ttyUSB0", "bin": "A-01"}
CONFIG_BREAKS: list[tuple[str, Any]] = [
    *[(f"bins {v!r}", {"bins": v}) for v in [None, {}, "x", 5]],
    *[
        (f"mapping {v!r}", {"bins": [v]})
        for v in [
            "A-01",
            {"bin": "A-01"},
            {"port": 5, "bin": "A-01"},
            {"port": "/dev/ttyUSB0"},
            {"port": "/dev/ttyUSB0", "bin": 5},
            *[{**GOOD_MAPPING, "channel": c} for c in [-1, 1.5, "0", True]],
            *[{**GOOD_MAPPING, "tare_hint_g": t} for t in ["480", True]],
        ]
    ],
    *[
        (f"{key} {v!r}", {key: v})
        for key in ("step_g", "keepalive_s", "stability_window_s", "stability_spread_g")
        for v in [0, -1.0, "2", True]
    ],
    ("not an object", [{"bins": []}]),
]


@pytest.mark.parametrize(
    ("schema", "name", "doc"),
    [("Status", n, d) for n, d in STATUS_BREAKS]
    + [("AgentConfig", n, d) for n, d in CONFIG_BREAKS],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_status_or_config_the_protocol_rejects_the_schema_refuses(
    schema: str, name: str, doc: Any
) -> None:
    with pytest.raises(p.ProtocolError):
        DECODERS[schema](orjson.dumps(doc))
    assert schema_errors(schema, doc), name


# ------------------------------------------------------------------ live traffic

SITE, AGENT = "plant1", "pi-contract"


@pytest.fixture
def floor(tmp_path: Path) -> Iterator[tuple[list[SimulatedScale], SimulatedScanner]]:
    """Two simulated scales (stream, SICS) and a barcode scanner on ptys."""
    ports = tmp_path / "ports"
    ports.mkdir()
    scales = [
        SimulatedScale("B1", "stream", unit_weight_g=12.5, workdir=ports, seed=1),
        SimulatedScale("B2", "sics", unit_weight_g=4.0, workdir=ports, seed=2),
    ]
    scanner = SimulatedScanner(workdir=ports, name="gun1")
    for s in scales:
        s.start()
    scanner.start()
    yield scales, scanner
    scanner.stop()
    for s in scales:
        s.stop()


def test_every_message_of_a_real_edge_agent_is_valid_by_the_asyncapi_schemas(
    tmp_path: Path,
    mosquitto: Mosquitto,
    floor: tuple[list[SimulatedScale], SimulatedScanner],
) -> None:
    scales, scanner = floor
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    settings_ = EdgeSettings(
        site=SITE,
        agent=AGENT,
        mqtt_url=mosquitto.url,
        mqtt_reconnect_max_s=1.0,
        outbox_path=tmp_path / "outbox.db",
        tick_s=0.1,
        scales=[
            ScaleSettings(port=s.port, bin=s.bin, protocol=s.protocol) for s in scales
        ],
        scanners=[ScannerSettings(port=scanner.port, id="gun1")],
        signal=SignalSettings(no_data_timeout_s=1.5, keepalive_s=60.0),
    )
    agent = Agent(settings_)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()

    def kinds() -> set[str]:
        return {m.topic.rsplit("/", 1)[1] for m in sub.snapshot()}

    def statuses() -> list[dict[str, Any]]:
        return [m.doc for m in sub.snapshot("/status") if m.payload]

    try:
        sub.wait_for(lambda: "readings" in kinds(), what="first readings")
        scales[0].pick(3)
        scales[1].refill(10)
        codes = (
            "4006381333931",
            "JSORD:ord_7f3a",
            "LOT 2026-11/ß",
            "]C10104006381333931\x1d10LOT42\x1d3012",  # GS1-128: FNC1 as GS
        )
        for code in codes:
            assert scanner.scan(code)
        sub.wait_for(
            lambda: sum(len(m.doc["scans"]) for m in sub.snapshot("/scans")) >= 4,
            what="four scans",
        )
        sent = [s["code"] for m in sub.snapshot("/scans") for s in m.doc["scans"]]
        assert sent == list(codes)
        # a fault shows on the status (a sensor with a fault label)
        for _ in range(5):
            scales[1].inject_garbage(64)
        sub.wait_for(
            lambda: any(
                s["fault"] for st_ in statuses() for s in st_.get("sensors", [])
            ),
            what="a sensor fault on the status",
        )
        # the server side of the config topic: a retained configuration the agent applies
        publish_retained(
            mosquitto.port,
            p.agent_topic(SITE, AGENT, "config"),
            p.encode_config(
                p.AgentConfig(
                    bins=(
                        p.BinMapping(scales[0].port, "B1:left", 0, 480.0),
                        p.BinMapping(scales[1].port, "B2"),
                    ),
                    step_g=3.0,
                    keepalive_s=30,
                )
            ),
        )
        sub.wait_for(
            lambda: any(
                s["bin"] == "B1:left" for st_ in statuses() for s in st_["sensors"]
            ),
            what="the configured bin name on the status",
        )
        scales[0].pick(5)
        sub.wait_for(
            lambda: any(
                r["bin"] == "B1:left"
                for m in sub.snapshot("/readings")
                for r in m.doc["readings"]
            ),
            what="a reading under the configured bin name",
        )
    finally:
        agent.stop()
        thread.join(20)
    sub.wait_for(
        lambda: statuses() and statuses()[-1]["state"] == "offline",
        what="the offline status of a clean stop",
    )
    sub.close()

    messages = sub.snapshot()
    assert kinds() == {"readings", "scans", "status", "config"}
    invalid = []
    for m in messages:
        kind = m.topic.rsplit("/", 1)[1]
        errors = schema_errors(SCHEMA_OF_KIND[kind], m.doc)
        if errors:
            invalid.append((m.topic, m.payload[:200], errors[:3]))
    assert invalid == [], invalid
    assert len(messages) >= 6


def test_the_last_will_of_a_killed_edge_agent_is_valid_by_the_schema(
    tmp_path: Path,
    mosquitto: Mosquitto,
    floor: tuple[list[SimulatedScale], SimulatedScanner],
) -> None:
    scales, scanner = floor
    config = tmp_path / "edge.toml"
    lines = [
        f'site = "{SITE}"',
        f'agent = "{AGENT}"',
        f'mqtt_url = "{mosquitto.url}"',
        f'outbox_path = "{tmp_path / "outbox.db"}"',
        "tick_s = 0.1",
    ]
    for s in scales:
        lines += ["[[scales]]", f'port = "{s.port}"', f'bin = "{s.bin}"']
        lines += [f'protocol = "{s.protocol}"']
    lines += ["[[scanners]]", f'port = "{scanner.port}"', 'id = "gun1"']
    config.write_text("\n".join(lines) + "\n")
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    log = tmp_path / "edge.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jitstock.edge.cli", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        sub.wait_for(
            lambda: any(m.doc["state"] == "online" for m in sub.snapshot()),
            what=f"online status; log: {log}",
        )
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(WAIT_S) == -signal.SIGKILL
        sub.wait_for(
            lambda: sub.snapshot()[-1].doc["state"] == "offline",
            what="the last will",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
    will = sub.snapshot()[-1]
    assert schema_errors("Status", will.doc) == [], will.payload
    assert all(schema_errors("Status", m.doc) == [] for m in sub.snapshot())
