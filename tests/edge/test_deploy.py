"""deploy/ and docs/ are real: the ACL confines agents, the documented payloads decode."""

from __future__ import annotations

import logging
import re
import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol as p
from jitstock.edge.broker_config import BrokerConfig
from jitstock.edge.outbox import Outbox
from jitstock.edge.publisher import Publisher
from tests.edge.mqtt_support import Collector
from tests.services import Mosquitto, deploy_acl_broker, find_binary
from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"jitstock-server": "server-pw", "pi-1": "pi-1-pw", "pi-2": "pi-2-pw"}


@pytest.fixture
def secured_broker(tmp_path: Path):
    broker = deploy_acl_broker(tmp_path, PASSWORDS)
    yield broker
    broker.stop()


def test_acl_lets_an_agent_write_only_under_its_own_id(
    secured_broker: Mosquitto, tmp_path: Path
) -> None:
    server = Collector(
        secured_broker.port,
        ["jit/v1/#"],
        username="jitstock-server",
        password=PASSWORDS["jitstock-server"],
    )
    box = Outbox(tmp_path / "o.db")
    pub = Publisher(
        box,
        BrokerConfig.from_url(
            secured_broker.url, username="pi-1", password=PASSWORDS["pi-1"]
        ),
        site="plant1",
        agent="pi-1",
    )
    # pi-1 trying to speak for pi-2
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    rogue.username_pw_set("pi-1", PASSWORDS["pi-1"])
    rogue.connect("127.0.0.1", secured_broker.port)
    rogue.loop_start()
    try:
        rogue.publish(
            "jit/v1/plant1/pi-2/readings", b'{"forged": true}', qos=1
        ).wait_for_publish(10)
        box.append(
            "readings",
            lambda seq: p.encode_readings(
                p.ReadingsBatch(
                    "pi-1", seq, p.now_ms(), (p.Reading("B1", p.now_ms(), 5.0),)
                )
            ),
        )
        # the status goes out once the sensors are known
        pub.set_sensors([p.SensorStatus("B1", True)])
        pub.start()
        server.wait_for(lambda: server.snapshot("/readings"), what="pi-1 readings")
        server.wait_for(lambda: server.snapshot("/status"), what="pi-1 status")
        time.sleep(0.5)
        topics = {m.topic for m in server.snapshot()}
        assert topics == {"jit/v1/plant1/pi-1/readings", "jit/v1/plant1/pi-1/status"}
    finally:
        pub.stop()
        box.close()
        rogue.disconnect()
        rogue.loop_stop()
        server.close()


def _wrong_password_publisher(box: Outbox, broker: Mosquitto) -> Publisher:
    """pi-1's publisher with a password the broker refuses, retrying fast."""
    return Publisher(
        box,
        BrokerConfig.from_url(broker.url, username="pi-1", password="wrong"),
        site="plant1",
        agent="pi-1",
        reconnect_min_s=0.05,
        reconnect_max_s=0.2,
    )


def test_wrong_password_is_refused_and_counted(
    secured_broker: Mosquitto, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "o.db")
    pub = _wrong_password_publisher(box, secured_broker)
    pub.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while pub.stats["connect_failures"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.stats["connect_failures"] >= 2
        assert not pub.connected
    finally:
        pub.stop()
        box.close()


def test_a_refused_login_is_logged_with_the_brokers_reason(
    secured_broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by an outside try: an agent whose password was wrong (or whose MQTT client
    was disabled, or given a new password, through the provisioning API) logged nothing
    at all, forever: paho's loop returned an error in the same call that handled the
    refusing CONNACK, and the publisher gave up before reading the reason."""
    box = Outbox(tmp_path / "o.db")
    pub = _wrong_password_publisher(box, secured_broker)
    caplog.set_level(logging.WARNING, logger="jitstock.edge.publisher")
    pub.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while pub.stats["connect_failures"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.stats["connect_failures"] >= 3
        refused = [
            r.getMessage()
            for r in caplog.records
            if "broker refused the connection" in r.getMessage()
        ]
        assert refused, [r.getMessage() for r in caplog.records]
        assert "not authorized" in refused[0].lower(), refused
        assert len(refused) == 1, refused  # rate-limited, not one line per retry
    finally:
        pub.stop()
        box.close()


def documented_payloads() -> dict[str, list[bytes]]:
    """The -m payloads of the mosquitto_pub examples in docs/protocol.md, per topic kind."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    found: dict[str, list[bytes]] = {}
    for kind, body in re.findall(
        r'-t jit/v1/plant1/line3-pi/(\w+) \\\n\s+-m "(.*)"', text
    ):
        # what the shell makes of a double-quoted word: \" \\ \$ lose their backslash
        body = re.sub(r'\\(["\\$])', r"\1", body).replace("$(now)", str(p.now_ms()))
        found.setdefault(kind, []).append(body.encode())
    return found


def test_documented_mosquitto_pub_payloads_obey_the_contract(
    mosquitto: Mosquitto,
) -> None:
    docs = documented_payloads()
    assert len(docs["readings"]) == 2
    assert len(docs["scans"]) == 2
    assert len(docs["status"]) == 2
    seqs = []
    for payload in docs["readings"]:
        batch, rejects = p.decode_readings(
            payload, expected_agent="line3-pi", now_ms=p.now_ms()
        )
        assert rejects == []
        seqs.append(batch.seq)
    for payload in docs["scans"]:
        scans, rejects = p.decode_scans(
            payload, expected_agent="line3-pi", now_ms=p.now_ms()
        )
        assert rejects == []
        seqs.append(scans.seq)
    assert seqs == [1, 2, 3, 4]
    # the GS1 carton label keeps its GS separators (FNC1) through JSON
    assert scans.scans[0].code == "]C10104006381333931\x1d10LOT42\x1d3012"
    assert [p.decode_status(s).state for s in docs["status"]] == ["online", "offline"]
    # and mosquitto_pub really delivers it as documented
    pub_bin = find_binary("mosquitto_pub", "/usr/bin/mosquitto_pub")
    sub = Collector(mosquitto.port, ["jit/v1/+/+/readings"])
    try:
        subprocess.run(
            [
                pub_bin,
                "-h",
                "127.0.0.1",
                "-p",
                str(mosquitto.port),
                "-q",
                "1",
                "-t",
                "jit/v1/plant1/line3-pi/readings",
                "-m",
                docs["readings"][0].decode(),
            ],
            check=True,
            timeout=20,
        )
        sub.wait_for(lambda: sub.snapshot(), what="mosquitto_pub message")
        batch, _ = p.decode_readings(
            sub.snapshot()[0].payload, expected_agent="line3-pi"
        )
        assert batch.readings[0].grams == 1734.6
    finally:
        sub.close()
