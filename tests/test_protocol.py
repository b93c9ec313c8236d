"""The wire contract: round trips and rejections with reasons."""

import math

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
