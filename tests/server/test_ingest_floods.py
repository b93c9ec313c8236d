"""An outside tester's MQTT ingest findings, through a real Mosquitto to a real server.

- A batch of 2,000 unknown order labels from one dock scanner is one log line, not
  2,000; 200 garbage topics (one of 60,000 characters) are one short line.
- A batch dropped as a repeat (seq at or below the last applied) is logged, and a
  huge seq jump that is taken as a gap warns, naming both seqs and the fix.
- A readings or scans message the broker holds as retained is refused (``retained``)
  when it is replayed at a (re)subscribe: the cursor and the level stay.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from jitstock.server.app import ServerApp
from tests.server.mqtt_support import (
    TARE_G,
    UNIT_G,
    Publisher,
    bin_seed,
    metric,
    now_ms,
    publisher,
    readings_payload,
    server,
    topic,
    wait_count,
)
from tests.server.server_support import seed, wait_until

PLC = "plc-1"
DOCK = "dock-1"
INGEST_LOG = "jitstock.server.ingest"
SCANS_LOG = "jitstock.server.supplier.dock_scans"


def _plant(tmp_path: Path) -> str:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, [bin_seed("P1", PLC), bin_seed("D1", DOCK)], [])
    return db_url


def _lines(caplog: pytest.LogCaptureFixture, logger: str, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == logger and text in r.getMessage()
    ]


def _scans_payload(
    agent: str, seq: int, codes: list[str], scanners: list[str] | None = None
) -> bytes:
    t = now_ms()
    names = scanners or ["gun-1"] * len(codes)
    return orjson.dumps(
        {
            "agent": agent,
            "seq": seq,
            "sent_ms": t,
            "scans": [
                {"scanner": g, "ts_ms": t, "code": c}
                for g, c in zip(names, codes, strict=True)
            ],
        }
    )


def _grams(count: int) -> float:
    return TARE_G + count * UNIT_G


def _send_reading(pub: Publisher, seq: int, count: int) -> None:
    pub.send(topic(PLC, "readings"), readings_payload(PLC, seq, "P1", _grams(count)))


def _wait_metric(app: ServerApp, name: str, value: float, **labels: str) -> None:
    wait_until(
        lambda: metric(app, name, **labels) >= value,
        what=f"{name}{labels} at {value}",
    )


# ------------------------------------------------------------------ log floods


def test_a_batch_of_unknown_order_labels_is_one_log_line_per_agent(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = _plant(tmp_path)
    caplog.set_level(logging.INFO, logger=SCANS_LOG)
    codes = [f"]Q1JSORD:nope{i}" for i in range(2000)]
    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url) as (app, base),
    ):
        pub.send(topic(DOCK, "scans"), _scans_payload(DOCK, 1, codes))
        pub.send(topic(DOCK, "scans"), _scans_payload(DOCK, 2, codes[:10]))
        # a scanner's name is the payload's word: 2,000 names are still one agent
        guns = [f"gun{i}" for i in range(2000)]
        pub.send(topic(DOCK, "scans"), _scans_payload(DOCK, 3, codes, guns))
        _wait_metric(app, "jitstock_scans_total", 4010)
        # a flush after the flood's: the flood's scans have been applied and logged
        _send_reading(pub, 1, 5)
        wait_count(base, "P1", 5)
    ignored = _lines(caplog, SCANS_LOG, "ignored")
    assert len(ignored) == 1, ignored[:3]
    assert "gun-1" in ignored[0]


def test_garbage_topics_are_one_short_log_line(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = _plant(tmp_path)
    caplog.set_level(logging.WARNING, logger=INGEST_LOG)
    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url) as (app, _base),
    ):
        pub.send(f"jit/v1/plant1/{'x' * 60_000}/readings", b"{}")
        for i in range(200):
            pub.send(f"jit/v1/plant1/bad agent {i}/readings", b"{}", wait=False)
        pub.flush()
        _wait_metric(app, "jitstock_rejected_batches_total", 201, reason="bad_topic")
    lines = _lines(caplog, INGEST_LOG, "bad_topic")
    assert len(lines) == 1, lines[:3]
    assert len(lines[0]) < 400, len(lines[0])
    assert "(60051 characters)" in lines[0], lines[0]


# ------------------------------------------------------------------ seq: repeats and jumps


def test_a_repeat_is_logged_and_a_huge_gap_warns(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db_url = _plant(tmp_path)
    caplog.set_level(logging.INFO, logger=INGEST_LOG)
    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url) as (app, base),
    ):
        for seq in (1, 2, 3):
            _send_reading(pub, seq, seq)
        wait_count(base, "P1", 3)
        _send_reading(pub, 2, 7)  # out of order: dropped as a repeat
        _wait_metric(app, "jitstock_duplicate_batches_total", 1)
        repeats = wait_until(
            lambda: _lines(caplog, INGEST_LOG, "dropped as a repeat"),
            what="the repeat logged",
        )
        assert f"agent {PLC}" in repeats[0]
        assert "seq 2" in repeats[0]
        assert "last applied 3" in repeats[0]
        _send_reading(pub, 50_000_003, 4)  # a corrupt counter, within MAX_SEQ_JUMP
        wait_count(base, "P1", 4)
        jumps = wait_until(
            lambda: _lines(caplog, INGEST_LOG, "50000003"), what="the jump logged"
        )
    assert any(
        r.levelno == logging.WARNING and "50000003" in r.getMessage()
        for r in caplog.records
    )
    assert "after seq 3" in jumps[0], jumps
    assert "restart its seq at 1" in jumps[0], jumps


# ------------------------------------------------------------------ retained messages


@pytest.mark.parametrize("kind", ["readings", "scans"])
def test_a_retained_message_is_refused_at_every_restart(
    tmp_path: Path, mosquitto: Any, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    db_url = _plant(tmp_path)
    caplog.set_level(logging.WARNING, logger=INGEST_LOG)
    agent = PLC if kind == "readings" else DOCK

    def publish(pub: Publisher, seq: int, count: int, *, retain: bool) -> None:
        payload = (
            readings_payload(PLC, seq, "P1", _grams(count))
            if kind == "readings"
            else _scans_payload(DOCK, seq, ["4006381333931"])
        )
        info = pub.client.publish(topic(agent, kind), payload, qos=1, retain=retain)
        info.wait_for_publish(60)

    def cursor(app: ServerApp) -> int:
        return app.ingest._cursors.get(agent, 0)

    with publisher(mosquitto.url) as pub:
        publish(
            pub, 1, 2, retain=True
        )  # before the server subscribed: the broker keeps it
        with server(tmp_path, db_url, mosquitto.url) as (app, base):
            _wait_metric(app, "jitstock_rejected_batches_total", 1, reason="retained")
            assert cursor(app) == 0
            publish(pub, 5, 9, retain=False)  # the agent goes on: applied
            wait_until(lambda: cursor(app) == 5, what="seq 5 applied")
        with server(tmp_path, db_url, mosquitto.url) as (app, base):
            # the replay of seq 1 at the new subscribe: refused, not a new sequence
            _wait_metric(app, "jitstock_rejected_batches_total", 1, reason="retained")
            assert cursor(app) == 5
            # a message published with the retain flag while the server listens arrives
            # without it: applied (and the broker now keeps seq 6 instead)
            publish(pub, 6, 11, retain=True)
            wait_until(lambda: cursor(app) == 6, what="seq 6 applied")
            if kind == "readings":
                wait_count(base, "P1", 11)
            assert metric(app, "jitstock_seq_resets_total") == 0
            # the fix the log line gives: the broker forwards the empty message, which
            # is counted (an empty payload is no batch) and says why it may be harmless
            before = metric(
                app, "jitstock_rejected_batches_total", reason="malformed_json"
            )
            info = pub.client.publish(topic(agent, kind), b"", qos=1, retain=True)
            info.wait_for_publish(60)
            publish(pub, 7, 12, retain=False)
            wait_until(lambda: cursor(app) == 7, what="seq 7 applied")
            assert (
                metric(app, "jitstock_rejected_batches_total", reason="malformed_json")
                == before + 1
            )
    lines = _lines(caplog, INGEST_LOG, "retained")
    assert lines, "the refusal is logged"
    assert "mosquitto_pub -r -n -t" in lines[0], lines[0]
    assert not _lines(caplog, INGEST_LOG, "new sequence")
