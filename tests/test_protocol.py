"""The wire contract: round trips and rejections with reasons."""

import math
import re

import orjson
import pytest

from jitstock import protocol as p


def test_readings_round_trip() -> None:
    batch = p.ReadingsBatch(
        "agent-1",
        7,
        1_700_000_000_000,
        (p.Reading("B1", 1_700_000_000_000, 1234.5, True),),
    )
    decoded, rejects = p.decode_readings(
        p.encode_readings(batch), expected_agent="agent-1"
    )
    assert decoded == batch
    assert rejects == []


def test_bad_readings_rejected_individually_good_ones_kept() -> None:
    now = 1_700_000_000_000
    doc = {
        "agent": "a1",
        "seq": 3,
        "sent_ms": now,
        "readings": [
            {"bin": "B1", "ts_ms": now, "grams": 10.0, "stable": True},
            {"bin": "B2", "ts_ms": now, "grams": -5.0, "stable": True},
            {"bin": "B3", "ts_ms": now, "grams": "heavy", "stable": True},
            {"bin": "B4", "ts_ms": now + 3_600_000, "grams": 1.0, "stable": True},
            {"bin": "B5", "ts_ms": now, "grams": 1e12, "stable": True},
        ],
    }
    batch, rejects = p.decode_readings(orjson.dumps(doc), now_ms=now)
    assert [r.bin for r in batch.readings] == ["B1"]
    assert [(r.index, r.reason) for r in rejects] == [
        (1, "bad_weight"),
        (2, "wrong_type"),
        (3, "bad_timestamp"),
        (4, "bad_weight"),
    ]


def test_nan_is_rejected() -> None:
    # orjson refuses NaN on output, so build the payload by hand as a sloppy device would
    payload = b'{"agent":"a","seq":1,"sent_ms":1,"readings":[{"bin":"B","ts_ms":1,"grams":NaN}]}'
    with pytest.raises(p.ProtocolError) as err:
        p.decode_readings(payload)
    assert err.value.reason == "malformed_json"
    assert math.isnan(float("nan"))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "malformed_json"),
        (b"[1,2]", "wrong_type"),
        (b'{"agent":"a","seq":"1","sent_ms":1,"readings":[]}', "wrong_type"),
        (b'{"agent":"a","seq":0,"sent_ms":1,"readings":[]}', "out_of_range"),
        (b'{"agent":"b","seq":1,"sent_ms":1,"readings":[]}', "agent_mismatch"),
        (b" " * (p.MAX_PAYLOAD_BYTES + 1), "oversized"),
    ],
)
def test_bad_envelopes(payload: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.decode_readings(payload, expected_agent="a")
    assert err.value.reason == reason


def test_topics() -> None:
    assert p.agent_topic("plant1", "pi-7", "readings") == "jit/v1/plant1/pi-7/readings"
    addr = p.parse_topic("jit/v1/plant1/pi-7/status")
    assert (addr.site, addr.agent, addr.kind) == ("plant1", "pi-7", "status")
    for bad in (
        "jit/v1/plant1/pi 7/status",
        "jit/v2/a/b/readings",
        "jit/v1/a/b/c/readings",
        "jit/v1/a/b/other",
    ):
        with pytest.raises(p.ProtocolError):
            p.parse_topic(bad)


def test_status_and_config_round_trip() -> None:
    status = p.Status("online", "0.1.0", 5, (p.SensorStatus("B1", False, "no_data"),))
    assert p.decode_status(p.encode_status(status)) == status
    config = p.AgentConfig(
        bins=(p.BinMapping("/dev/ttyUSB0", "B1", 0, 250.0),), step_g=5.0
    )
    assert p.decode_config(p.encode_config(config)) == config


# -- lenient where industrial devices need it (issue 13)


def test_a_plc_batch_with_integral_floats_0_1_flags_and_no_sent_ms_applies() -> None:
    payload = (
        b'{"agent":"plc-7","seq":5.0,"readings":['
        b'{"bin":"P-1","ts_ms":1767225600249.0,"grams":250,"stable":1},'
        b'{"bin":"P-2","ts_ms":1767225600250,"grams":12.5,"stable":0}]}'
    )
    for decode in (p.decode_readings, p.decode_readings_columns):
        batch, rejects = decode(payload, expected_agent="plc-7", now_ms=1767225600000)
        assert rejects == []
        assert (batch.seq, batch.sent_ms) == (5, None)
        assert type(batch.seq) is int
    batch, _ = p.decode_readings(payload)
    assert batch.readings == (
        p.Reading("P-1", 1767225600249, 250.0, True),
        p.Reading("P-2", 1767225600250, 12.5, False),
    )
    assert all(type(r.ts_ms) is int and type(r.stable) is bool for r in batch.readings)
    scans, rejects = p.decode_scans(
        b'{"agent":"plc-7","seq":6.0,"sent_ms":null,'
        b'"scans":[{"scanner":"gun-1","ts_ms":1767225600251.0,"code":"X1"}]}'
    )
    assert rejects == []
    assert scans.scans == (p.Scan("gun-1", 1767225600251, "X1"),)
    status = p.decode_status(
        b'{"state":"online","ts_ms":1767225600000.0,"sensors":[{"bin":"P-1","ok":0}]}'
    )
    assert status.sensors == (p.SensorStatus("P-1", False, None),)
    config = p.decode_config(
        b'{"bins":[{"port":"/dev/ttyS0","bin":"P-1","channel":0.0}]}'
    )
    assert config.bins[0].channel == 0


def test_sent_ms_left_out_round_trips_without_it() -> None:
    batch = p.ReadingsBatch("a", 1, None, (p.Reading("B1", 5, 1.0),))
    assert b"sent_ms" not in p.encode_readings(batch)
    assert p.decode_readings(p.encode_readings(batch))[0] == batch


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("seq", 5.5, "wrong_type"),
        (
            "seq",
            2.0**53 + 2,
            "wrong_type",
        ),  # a double beyond 2**53 may not be the device's
        ("seq", 1e19, "wrong_type"),
        ("seq", True, "wrong_type"),
        ("seq", 0.0, "out_of_range"),
        ("sent_ms", -1.0, "out_of_range"),
        ("sent_ms", "1", "wrong_type"),
    ],
)
def test_what_is_not_an_integer_stays_refused(
    field: str, value: object, reason: str
) -> None:
    doc = {"agent": "a", "seq": 1, "sent_ms": 1, "readings": [], field: value}
    with pytest.raises(p.ProtocolError) as err:
        p.decode_readings(orjson.dumps(doc))
    assert err.value.reason == reason


@pytest.mark.parametrize("stable", [2, -1, 0.5, "1", "true", None])
def test_a_flag_is_a_boolean_or_0_or_1_only(stable: object) -> None:
    doc = {
        "agent": "a",
        "seq": 1,
        "readings": [{"bin": "B1", "ts_ms": 1, "grams": 1.0, "stable": stable}],
    }
    _, rejects = p.decode_readings(orjson.dumps(doc))
    assert [(r.index, r.reason) for r in rejects] == [(0, "wrong_type")]


def test_a_negative_or_fractional_ts_is_a_bad_timestamp_or_wrong_type() -> None:
    doc = {
        "agent": "a",
        "seq": 1,
        "readings": [
            {"bin": "B1", "ts_ms": -5, "grams": 1.0},
            {"bin": "B1", "ts_ms": 5.5, "grams": 1.0},
            {"bin": "B1", "ts_ms": 5.0, "grams": 1.0},
        ],
    }
    batch, rejects = p.decode_readings(orjson.dumps(doc))
    assert [(r.index, r.reason) for r in rejects] == [
        (0, "bad_timestamp"),
        (1, "wrong_type"),
    ]
    assert [r.ts_ms for r in batch.readings] == [5]


# -- strict where it protects data


def test_names_are_matched_whole_a_trailing_newline_is_refused() -> None:
    doc = {
        "agent": "a",
        "seq": 1,
        "readings": [{"bin": "B1\n", "ts_ms": 1, "grams": 1}],
    }
    _, rejects = p.decode_readings(orjson.dumps(doc))
    assert [r.reason for r in rejects] == ["wrong_type"]
    with pytest.raises(p.ProtocolError):
        p.decode_readings(orjson.dumps({**doc, "agent": "a\n", "readings": []}))
    with pytest.raises(p.ProtocolError):
        p.parse_topic("jit/v1/plant1/pi-1\n/readings")


def test_more_than_2000_items_is_too_many_items_not_oversized() -> None:
    item = {"bin": "B1", "ts_ms": 1, "grams": 1.0}
    doc = {"agent": "a", "seq": 1, "readings": [item] * (p.MAX_ITEMS_PER_BATCH + 1)}
    payload = orjson.dumps(doc)
    assert len(payload) < p.MAX_PAYLOAD_BYTES
    with pytest.raises(p.ProtocolError) as err:
        p.decode_readings(payload)
    assert err.value.reason == "too_many_items"
    status = {
        "state": "online",
        "ts_ms": 1,
        "sensors": [{"bin": "B1", "ok": True}] * 2001,
    }
    with pytest.raises(p.ProtocolError) as err:
        p.decode_status(orjson.dumps(status))
    assert err.value.reason == "too_many_items"
    doc["readings"] = doc["readings"][:-1]
    assert (
        len(p.decode_readings(orjson.dumps(doc))[0].readings) == p.MAX_ITEMS_PER_BATCH
    )


def test_one_bin_id_pattern_for_the_wire_the_api_and_the_docs() -> None:
    from pathlib import Path

    from jitstock.server.api.schemas import BIN_ID_PATTERN

    assert BIN_ID_PATTERN == p.BIN_RE.pattern
    assert not p.BIN_RE.fullmatch("A/01")  # one URL path segment
    assert p.BIN_RE.fullmatch("rack-3.shelf:2_A")
    docs = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    documented = set(re.findall(r"`\[A-Za-z0-9_[^`]*\]\{1,64\}`", docs))
    assert documented == {"`[A-Za-z0-9_-]{1,64}`", "`[A-Za-z0-9_.:-]{1,64}`"}
    assert f"`{p.BIN_RE.pattern[1:-1]}`" in documented
    assert f"`{p.NAME_RE.pattern[1:-1]}`" in documented


def test_a_scan_code_may_hold_gs_and_is_counted_in_characters() -> None:
    """A GS1 label's FNC1 travels as GS (JSON \\u001d); the length is in characters."""
    good = [
        "]C10104006381333931\x1d10LOT42\x1d3012",
        "\x1d0104006381333931\x1d",
        "(01)04006381333931",
        "€" * p.MAX_CODE_LEN,
    ]
    bad = ["\x1d", "\x1d\x1d", "01\x1c02", "\x00", "€" * (p.MAX_CODE_LEN + 1)]
    scans = [
        {"scanner": "gun-1", "ts_ms": 1767225600400, "code": c} for c in good + bad
    ]
    payload = orjson.dumps({"agent": "pi-1", "seq": 1, "scans": scans})
    assert b"\\u001d" in payload  # JSON's escape, as mosquitto_pub would send it
    batch, rejects = p.decode_scans(payload)
    assert [s.code for s in batch.scans] == good
    assert [(r.index, r.reason) for r in rejects] == [
        (i, "bad_code") for i in range(len(good), len(good) + len(bad))
    ]
    assert all(p.valid_code(c) for c in good)
    assert not any(p.valid_code(c) for c in bad)


@pytest.mark.parametrize(
    "bad", ["x\n2026-12-01 01:40:00,000 WARNING forged", "a\x00b", "\x1b[31m"]
)
def test_a_status_with_a_control_character_in_version_or_fault_is_rejected(
    bad: str,
) -> None:
    good = {"state": "online", "version": "0.1.0", "ts_ms": 5, "sensors": []}
    sensor = {"bin": "B1", "ok": False, "fault": "no_data"}
    for doc in (
        {**good, "version": bad},
        {**good, "sensors": [{**sensor, "fault": bad}]},
    ):
        with pytest.raises(p.ProtocolError) as info:
            p.decode_status(orjson.dumps(doc))
        assert info.value.reason == "wrong_type"
        assert bad not in info.value.message
    # printable text, spaces and non-ASCII included, is still a version and a fault
    ok = p.decode_status(
        orjson.dumps(
            {
                **good,
                "version": "plc 1 ß",
                "sensors": [{**sensor, "fault": "Überlast 3"}],
            }
        )
    )
    assert (ok.version, ok.sensors[0].fault) == ("plc 1 ß", "Überlast 3")
