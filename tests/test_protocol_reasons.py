"""Rejection reason labels: every label the protocol module and ingest can produce is in
protocol.REJECT_REASONS and in the table of docs/protocol.md, each documented example
is counted under its label by a real ingest, and the bad-input log keeps a second
problem visible behind a first."""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import update

from jitstock import protocol as p
from jitstock.ratelog import RateLimitedLog, message_kind
from jitstock.server.db.models import Bin
from jitstock.server.db.session import transaction
from jitstock.server.mqtt import Incoming
from tests.factories import NOW_MS, Plant

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    *sorted((ROOT / "jitstock" / "protocol").glob("*.py")),
    ROOT / "jitstock" / "server" / "ingest.py",
    ROOT / "jitstock" / "server" / "ingest_seq.py",
]
PROTOCOL_MD = ROOT / "docs" / "protocol.md"
# Where the reason label is among the arguments of each call that produces one.
REASON_ARG = {"ProtocolError": 0, "Reject": 1, "_reject": 1, "_reject_item": 1}


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    return (
        f.id
        if isinstance(f, ast.Name)
        else f.attr
        if isinstance(f, ast.Attribute)
        else None
    )


def _labels_of(expr: ast.expr, function: ast.AST | None) -> set[str] | None:
    """String constants `expr` can be; None when it passes a label on (`exc.reason`)."""
    if isinstance(expr, ast.Attribute) and expr.attr == "reason":
        return (
            None  # a label produced elsewhere (a ProtocolError or Reject), found there
        )
    if isinstance(expr, ast.Name) and function is not None:
        labels: set[str] = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == expr.id for t in node.targets
            ):
                labels |= _labels_of(node.value, None) or set()
        assert labels, f"cannot tell the labels of {expr.id!r}"
        return labels
    consts = {
        n.value
        for n in ast.walk(expr)
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    assert consts, f"cannot tell the label of {ast.unparse(expr)!r}: use a literal"
    return consts


def produced_labels() -> set[str]:
    """Every reason label jitstock.protocol and ingest.py can produce, read from their source."""
    found: set[str] = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text())
        functions = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for function in functions:
            for node in ast.walk(function):
                if not isinstance(node, ast.Call) or _call_name(node) not in REASON_ARG:
                    continue
                if _call_name(node) in (
                    "_reject",
                    "_reject_item",
                ) and function.name in (
                    "_reject",
                    "_reject_item",
                ):
                    continue
                position = REASON_ARG[_call_name(node)]  # type: ignore[index]
                expr = next(
                    (k.value for k in node.keywords if k.arg == "reason"),
                    node.args[position] if len(node.args) > position else None,
                )
                assert expr is not None, ast.unparse(node)
                found |= _labels_of(expr, function) or set()
    return found


def documented_rows() -> dict[str, str]:
    """The rejection-reasons table of docs/protocol.md: label -> example cell."""
    text = PROTOCOL_MD.read_text()
    section = text.split("## Rejection reasons", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+)` \| [^|]+ \| (.+) \|$", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} documented twice"
            rows[m.group(1)] = m.group(2)
    return rows


def test_every_label_the_code_produces_is_catalogued_and_documented() -> None:
    produced = produced_labels()
    assert {
        "oversized",
        "wrong_site",
        "bin_of_other_agent",
        "too_many_items",
    } <= produced
    assert produced == set(p.REJECT_REASONS)
    assert set(documented_rows()) == set(p.REJECT_REASONS)


# ------------------------------------------------------------------ examples through ingest


def _payloads(cell: str) -> Iterator[tuple[str | None, bytes]]:
    """(topic or None, payload) of an example cell: `jit/...` spans name the topic."""
    topic = None
    for span in re.findall(r"`([^`]+)`", cell):
        if span.startswith("jit/"):
            topic = span
            continue
        yield topic, span.replace("NOW", str(NOW_MS)).encode()


def _kind_of(payload: bytes) -> p.Kind:
    for kind in ("readings", "scans"):
        if f'"{kind}"'.encode() in payload:
            return kind
    return "status" if b'"state"' in payload else "readings"


def _example_messages(label: str, cell: str) -> list[Incoming]:
    """The messages of a documented example (the two that cannot be written out are built)."""
    topic = p.agent_topic("plant1", "pi-1", "readings")
    reading = {"bin": "B1", "ts_ms": NOW_MS, "grams": 1200.0}
    if label == "oversized":
        assert "262,145 bytes" in cell
        return [Incoming(topic, b" " * (p.MAX_PAYLOAD_BYTES + 1), 1, 1, 0, 0.0)]
    if label == "too_many_items":
        assert "2,001 readings" in cell
        doc = {"agent": "pi-1", "seq": 1, "readings": [reading] * 2001}
        return [Incoming(topic, orjson.dumps(doc), 1, 1, 0, 0.0)]
    if label == "bad_calibration":
        doc = {"agent": "pi-1", "seq": 1, "readings": [{**reading, "bin": "B2"}]}
        return [Incoming(topic, orjson.dumps(doc), 1, 1, 0, 0.0)]
    if label == "retained":
        assert "mosquitto_pub -r" in cell
        doc = {"agent": "pi-1", "seq": 1, "readings": [reading]}
        return [Incoming(topic, orjson.dumps(doc), 1, 1, 0, 0.0, retain=True)]
    out = []
    for i, (given, payload) in enumerate(_payloads(cell), start=1):
        where = given or p.agent_topic("plant1", "pi-1", _kind_of(payload))
        out.append(Incoming(where, payload, i, 1, 0, 0.0))
    assert out, f"{label}: no example"
    return out


def _rejected(plant: Plant, label: str) -> float:
    return plant.metric("jitstock_rejected_batches_total", reason=label) + plant.metric(
        "jitstock_rejected_items_total", reason=label
    )


@pytest.mark.parametrize("label", sorted(p.REJECT_REASONS))
def test_each_documented_example_is_counted_under_its_label(
    tmp_path: Path, label: str
) -> None:
    cell = documented_rows()[label]
    messages = _example_messages(label, cell)
    if label == "reserved_topic":
        # the server skips its own order topics; parse_topic is where the label comes from
        with pytest.raises(p.ProtocolError) as err:
            p.parse_topic(messages[0].topic)
        assert err.value.reason == label
        return
    plant = Plant(tmp_path)
    try:
        if label == "bad_calibration":
            with transaction(plant.session_factory) as s:
                s.execute(update(Bin).where(Bin.id == "B2").values(tare_g=3_000_000.0))
            plant.registry.reload()
        for m in messages:
            plant.ingest.process([m])
        assert _rejected(plant, label) == 1, label
        others = {
            r: _rejected(plant, r)
            for r in p.REJECT_REASONS
            if r != label and _rejected(plant, r)
        }
        assert others == {}, f"{label}'s example also counted as {others}"
    finally:
        plant.close()


# ------------------------------------------------------------------ logging


def test_message_kind_blanks_values_only() -> None:
    assert message_kind("readings[3].grams 1e12 outside 0..2e+06") == message_kind(
        "readings[0].grams -5.0 outside 0..2e+06"
    )
    assert message_kind("bin 'B7' is not configured") == "bin # is not configured"
    assert message_kind("readings[1].stable must be a boolean or 0/1") != message_kind(
        "readings[1].grams must be a number"
    )


def test_a_second_problem_under_the_same_label_is_logged_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plant = Plant(tmp_path)
    topic = p.agent_topic("plant1", "pi-1", "readings")
    good = {"bin": "B1", "ts_ms": NOW_MS, "grams": 1200.0}
    try:
        with caplog.at_level(logging.WARNING, logger="jitstock.server.ingest"):
            for seq, bad in enumerate(
                [
                    {**good, "stable": "yes"},  # wrong_type: a flag
                    {**good, "stable": "no"},  # the same kind again: suppressed
                    {**good, "grams": "heavy"},  # wrong_type too, another kind: logged
                ],
                start=1,
            ):
                doc = {"agent": "pi-1", "seq": seq, "readings": [bad]}
                plant.ingest.process(
                    [Incoming(topic, orjson.dumps(doc), seq, 1, 0, 0.0)]
                )
        lines = [r.getMessage() for r in caplog.records]
        assert plant.metric("jitstock_rejected_items_total", reason="wrong_type") == 3
        assert sum("stable must be" in line for line in lines) == 1, lines
        assert sum("grams must be a number" in line for line in lines) == 1, lines
    finally:
        plant.close()


def test_the_log_keeps_its_keys_bounded(caplog: pytest.LogCaptureFixture) -> None:
    import jitstock.ratelog as ratelog

    rl = RateLimitedLog(logging.getLogger("test.ratelog"), interval_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="test.ratelog"):
        for i in range(ratelog.MAX_KEYS + 50):
            rl.log(logging.WARNING, f"source-{i}", "bad %d", i)
    # the first MAX_KEYS sources each got a line; the flood beyond shares one key
    assert len(caplog.records) == ratelog.MAX_KEYS + 1
    assert len(rl._last) == ratelog.MAX_KEYS + 1
