"""Issue 10, MQTT over TLS: a real Mosquitto TLS listener with certificates made here
(a private CA and a server certificate for 127.0.0.1/localhost, plus an unrelated CA).

The server and the edge publisher connect with the right CA and a reading goes
through; with the wrong CA the server says why once while it keeps retrying, and
/healthz says it too; a plain/TLS mix-up is named; an unusable CA file refuses the
start with one line naming the file.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitstock import protocol as p
from jitstock.edge.broker_config import BrokerConfig
from jitstock.edge.outbox import Outbox
from jitstock.edge.publisher import Publisher as EdgePublisher
from jitstock.server.app import ServerApp
from jitstock.server.mqtt import MqttConnection
from jitstock.server.settings import ServerSettings, SettingRefused
from tests.server.mqtt_support import (
    SITE,
    TARE_G,
    UNIT_G,
    bin_seed,
    healthz,
    server,
    wait_count,
)
from tests.server.pki import Pki
from tests.server.server_support import running_app, seed, server_env, wait_until
from tests.services import Mosquitto, free_port

AGENT = "tls-pi"
LOGGER = "jitstock.server.mqtt"
# A refused start does no work: it must end long before this.
REFUSAL_TIMEOUT_S = 60.0


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    """Mosquitto whose only listener speaks TLS with the private CA's certificate."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    # the listener line comes first in the generated config: these apply to it
    broker = Mosquitto(
        workdir,
        extra_conf=(
            f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        ),
    )
    broker.start()
    yield broker
    broker.stop()


def tls_url(broker: Mosquitto) -> str:
    return f"mqtts://127.0.0.1:{broker.port}"


def mqtt_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def test_server_and_edge_publisher_talk_over_tls(
    tmp_path: Path, tls_broker: Mosquitto, pki: Pki
) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(db_url, [bin_seed("T1", AGENT)], [])
    outbox = Outbox(tmp_path / "outbox.db", agent=AGENT)
    edge = EdgePublisher(
        outbox,
        BrokerConfig.from_url(tls_url(tls_broker), ca_file=str(pki.ca)),
        site=SITE,
        agent=AGENT,
        reconnect_min_s=0.05,
        reconnect_max_s=0.5,
    )
    try:
        with server(tmp_path, db_url, tls_url(tls_broker), mqtt_tls_ca=pki.ca) as (
            app,
            base,
        ):
            assert healthz(base)["mqtt"] == {"connected": True}
            edge.start()
            grams = TARE_G + 7 * UNIT_G
            outbox.append(
                "readings",
                lambda seq: p.encode_readings(
                    p.ReadingsBatch(
                        AGENT,
                        seq,
                        p.now_ms(),
                        (p.Reading("T1", p.now_ms(), grams, True),),
                    )
                ),
            )
            # published by the edge over TLS, received by the server over TLS, applied
            wait_count(base, "T1", 7, "the reading sent over TLS applied")
            wait_until(lambda: outbox.depth == 0, what="the edge outbox drained")
            assert app.mqtt.problem is None
            assert app.mqtt.failed_attempts == 0
    finally:
        edge.stop()
        outbox.close()


def test_wrong_ca_is_logged_once_with_the_reason_and_shown_in_healthz(
    tmp_path: Path,
    tls_broker: Mosquitto,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with running_app(
            data_dir=tmp_path,
            db_url=f"sqlite:///{tmp_path / 'state.db'}",
            mqtt_url=tls_url(tls_broker),
            mqtt_tls_ca=pki.wrong_ca,
        ) as (app, base):
            # it keeps trying (1, 2, 4 s apart): three failures, still one log line
            wait_until(
                lambda: app.mqtt.failed_attempts >= 3,
                what="three failed TLS connection attempts",
            )
            r = httpx.get(f"{base}/healthz", timeout=10)
            body = r.json()
            assert (r.status_code, body["status"]) == (503, "unhealthy")
            assert body["mqtt"]["connected"] is False
            problem = body["mqtt"]["problem"]
            assert problem == app.mqtt.problem
            assert not app.mqtt.connected.is_set()
    errors = mqtt_errors(caplog)
    assert len(errors) == 1, errors
    assert "(TLS)" in errors[0]
    for text in (errors[0], problem):
        assert "certificate verify failed" in text, text
        # which CA file it checked against, so the operator knows what to fix
        assert f"JITSTOCK_MQTT_TLS_CA={pki.wrong_ca}" in text, text


def test_plain_mqtt_to_a_tls_port_is_logged_once_with_a_hint(
    tls_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    conn = MqttConnection(f"mqtt://127.0.0.1:{tls_broker.port}", "jitstock-plain", [])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        conn.start()
        try:
            wait_until(
                lambda: conn.failed_attempts >= 2,
                what="two failed plain connection attempts to the TLS port",
            )
        finally:
            conn.stop()
    errors = mqtt_errors(caplog)
    assert len(errors) == 1, errors
    assert "before answering CONNECT" in errors[0]
    assert "use mqtts://" in errors[0]
    assert not conn.connected.is_set()


def test_tls_to_a_plain_port_is_logged_once_with_a_hint(
    tmp_path: Path, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    plain = Mosquitto(tmp_path)
    plain.start()
    conn = MqttConnection(
        f"mqtts://127.0.0.1:{plain.port}", "jitstock-tls", [], tls_ca=pki.ca
    )
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            conn.start()
            try:
                wait_until(
                    lambda: conn.failed_attempts >= 2,
                    what="two failed TLS connection attempts to the plain port",
                )
            finally:
                conn.stop()
    finally:
        plain.stop()
    errors = mqtt_errors(caplog)
    assert len(errors) == 1, errors
    assert "use mqtt://" in errors[0]


def _unusable_ca(tmp_path: Path, kind: str) -> tuple[Path, str]:
    if kind == "missing":
        return tmp_path / "no-such-ca.crt", "does not exist"
    if kind == "directory":
        return tmp_path, "is a directory"
    junk = tmp_path / "not-a-cert.pem"
    junk.write_text("this is not a certificate\n")
    return junk, "no usable PEM certificate"


@pytest.mark.parametrize("kind", ["missing", "directory", "not-pem"])
def test_an_unusable_ca_file_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    ca, why = _unusable_ca(tmp_path, kind)
    settings = ServerSettings(
        data_dir=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'state.db'}",
        mqtt_url=f"mqtts://127.0.0.1:{free_port()}",
        mqtt_tls_ca=ca,
        http_port=free_port(),
    )
    with pytest.raises(SettingRefused) as refused:
        ServerApp(settings)
    message = str(refused.value)
    for part in ("JITSTOCK_MQTT_TLS_CA", str(ca), why):
        assert part in message, message


def test_jitstock_server_with_a_missing_ca_file_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "certs" / "plant-ca.crt"
    env = server_env(
        {
            "data_dir": tmp_path,
            "db_url": f"sqlite:///{tmp_path / 'state.db'}",
            "http_port": free_port(),
            "mqtt_url": f"mqtts://127.0.0.1:{free_port()}",
            "mqtt_tls_ca": ca,
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [
        line for line in done.stderr.splitlines() if "jitstock server: refused" in line
    ]
    assert len(lines) == 1, done.stderr
    for part in ("JITSTOCK_MQTT_TLS_CA", str(ca), "does not exist"):
        assert part in lines[0], lines[0]
