"""`jitstock admin check`: one ok/FAIL line per part, exit 1 when any is red, against
real services that are up, down, silent or refusing the credentials."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from jitstock.cli import main
from tests.server.test_provisioning import ADMIN, SERVER_USER, DynsecBroker
from tests.services import InfluxDB, Mosquitto, find_binary, free_port

PARTS = ["configuration", "database", "broker", "history", "provisioning"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A clean JITSTOCK_* environment on an initialised SQLite database; set more per test."""
    for name in list(os.environ):
        if name.startswith("JITSTOCK_"):
            monkeypatch.delenv(name)
    values = {
        "JITSTOCK_DB_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "JITSTOCK_DATA_DIR": str(tmp_path),
        "JITSTOCK_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    assert main(["admin", "init"]) == 0
    return values


def check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **settings: str
) -> tuple[int, dict[str, str]]:
    """Exit status and {part: line} of `jitstock admin check`."""
    capsys.readouterr()
    for k, v in settings.items():
        monkeypatch.setenv(f"JITSTOCK_{k.upper()}", v)
    rc = main(["admin", "check"])
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert list(lines) == PARTS, out
    return rc, lines


def test_all_ok_against_real_services(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
) -> None:
    rc, lines = check(
        capsys, monkeypatch, mqtt_url=mosquitto.url, influx_url=influxdb.url
    )
    assert rc == 0, lines
    assert all(line.startswith("ok ") for line in lines.values())
    assert "1 admin key(s)" in lines["database"]
    assert "InfluxDB 1." in lines["history"]
    assert "off (no JITSTOCK_MQTT_DYNSEC_USER)" in lines["provisioning"]


def test_a_broker_that_is_down_is_red_and_the_others_still_checked(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, lines = check(capsys, monkeypatch)
    assert rc == 1
    assert lines["broker"].startswith("FAIL")
    assert "unreachable" in lines["broker"]
    assert lines["database"].startswith("ok")
    assert lines["history"].startswith("ok")  # the embedded store


def test_a_broker_that_never_answers_is_red(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as silent:  # accepts TCP, never sends a CONNACK
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        rc, lines = check(capsys, monkeypatch, mqtt_url=f"mqtt://127.0.0.1:{port}")
    assert rc == 1
    assert "no answer" in lines["broker"]


def test_wrong_broker_and_influx_credentials_are_red(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    passwd = find_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    pwfile = tmp_path / "passwd"
    subprocess.run(
        [passwd, "-c", "-b", str(pwfile), "jitstock-server", "right"], check=True
    )
    (tmp_path / "mq").mkdir()
    broker = Mosquitto(
        tmp_path / "mq", extra_conf=f"allow_anonymous false\npassword_file {pwfile}\n"
    )
    (tmp_path / "influx").mkdir()
    influx = InfluxDB(tmp_path / "influx", auth=True)
    broker.start()
    influx.start()
    try:
        common = {
            "mqtt_url": broker.url,
            "mqtt_user": "jitstock-server",
            "influx_url": influx.url,
            "influx_user": influx.admin_user,
        }
        rc, lines = check(
            capsys,
            monkeypatch,
            **common,
            mqtt_password="wrong",
            influx_password="wrong",
        )
        assert rc == 1
        assert "refused the connection" in lines["broker"]
        assert "refused the credentials" in lines["history"]
        rc, lines = check(
            capsys,
            monkeypatch,
            **common,
            mqtt_password="right",
            influx_password=influx.admin_password,
        )
        assert rc == 0, lines
        assert "as jitstock-server" in lines["broker"]
    finally:
        broker.stop()
        influx.stop()


def test_database_states_are_named(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rc, lines = check(capsys, monkeypatch, db_url=f"sqlite:///{tmp_path / 'new.db'}")
    assert rc == 1
    assert "run `jitstock admin init`" in lines["database"]
    rc, lines = check(
        capsys,
        monkeypatch,
        db_url=f"postgresql://nobody:secret-pw@127.0.0.1:{free_port()}/x",
    )
    assert rc == 1
    assert "unreachable" in lines["database"]
    assert "secret-pw" not in lines["database"]
    rc, lines = check(capsys, monkeypatch, db_url="mysql://x/y")
    assert (rc, lines["database"].startswith("FAIL")) == (1, True)


def test_bad_data_dir_influx_down_and_placeholder_secrets(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    rc, lines = check(
        capsys,
        monkeypatch,
        data_dir=str(tmp_path / "missing"),
        influx_url=f"http://u:secret-pw@127.0.0.1:{free_port()}",
        mqtt_url=f"mqtt://u:secret-pw@127.0.0.1:{free_port()}",
    )
    assert rc == 1
    assert "does not exist" in lines["configuration"]
    assert "unreachable" in lines["history"]
    assert "secret-pw" not in "".join(lines.values())
    monkeypatch.setenv("JITSTOCK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JITSTOCK_ENVIRONMENT", "production")
    monkeypatch.setenv("JITSTOCK_MQTT_PASSWORD", "CHANGEME")
    capsys.readouterr()
    assert main(["admin", "check"]) == 2
    out = capsys.readouterr()
    assert "JITSTOCK_MQTT_PASSWORD is a placeholder" in out.err
    assert out.out.startswith("FAIL")


def test_provisioning_line_names_a_wrong_or_powerless_dynsec_admin(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / "dynsec").mkdir()
    broker = DynsecBroker(tmp_path / "dynsec")
    broker.start()
    try:
        broker.create_server_client()
        common = {
            "mqtt_url": broker.url,
            "mqtt_user": SERVER_USER,
            "mqtt_password": broker.server_password,
        }
        rc, lines = check(
            capsys,
            monkeypatch,
            **common,
            mqtt_dynsec_user=ADMIN,
            mqtt_dynsec_password="wrong",
        )
        assert rc == 1
        assert lines["broker"].startswith("ok"), lines
        assert "refused the dynsec admin client" in lines["provisioning"]
        # the server's own client logs in but may not read the plugin's answers
        rc, lines = check(
            capsys,
            monkeypatch,
            **common,
            mqtt_dynsec_user=SERVER_USER,
            mqtt_dynsec_password=broker.server_password,
        )
        assert rc == 1
        assert "not a dynsec admin client" in lines["provisioning"], lines
        rc, lines = check(
            capsys,
            monkeypatch,
            **common,
            mqtt_dynsec_user=ADMIN,
            mqtt_dynsec_password=broker.admin_password,
        )
        assert rc == 0, lines
        assert "answers admin client 'jitstock-admin'" in lines["provisioning"]
    finally:
        broker.stop()
