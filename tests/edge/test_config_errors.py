"""`jitstock-edge` refuses a bad configuration loudly, once, with one line naming file and key.

Every refusal exits 2 (the unit's RestartPreventExitStatus=2 stops the restart loop);
a publisher that dies later ends the process non-zero so systemd restarts it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.edge.edge_process import run_edge, start_edge, stop, toml_config
from tests.services import free_port
from tests.waits import WAIT_S, wait_until


def refusal(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start prints; no traceback, no pydantic dump, no web link."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("jitstock-edge: ")
    for noise in ("Traceback", "pydantic", "http", "validation error"):
        assert noise not in line.replace("http://", "HTTP-URL"), line
    return line


def make_ca(tmp_path: Path) -> Path:
    """A self-signed CA certificate (openssl), as a private broker CA would be."""
    cert = tmp_path / "ca.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(tmp_path / "ca.key"), "-out", str(cert),
            "-subj", "/CN=test-ca", "-days", "2",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert


def test_missing_ca_file_exits_2_naming_the_file_and_key(tmp_path: Path) -> None:
    missing = tmp_path / "etc" / "ca.crt"
    config = toml_config(
        tmp_path,
        "mqtts://127.0.0.1:8883",
        extra={"mqtt_ca_file": str(missing)},
    )
    line = refusal(run_edge(config))
    assert str(config) in line
    assert "mqtt_ca_file" in line
    assert str(missing) in line


def test_ca_file_that_is_not_a_certificate_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("not a certificate\n")
    config = toml_config(
        tmp_path, "mqtts://127.0.0.1:8883", extra={"mqtt_ca_file": str(bogus)}
    )
    line = refusal(run_edge(config))
    assert "mqtt_ca_file" in line
    assert str(bogus) in line


@pytest.mark.parametrize(
    "url",
    [
        "http://broker.example:1883",
        "mqtt//broker.example:1883",
        "mqtt://broker.example:99999",
        "mqtt://broker.example:port",
        "mqtt://",
    ],
)
def test_each_bad_mqtt_url_exits_2_with_one_line(tmp_path: Path, url: str) -> None:
    line = refusal(run_edge(toml_config(tmp_path, url)))
    assert "mqtt_url" in line
    assert url in line


@pytest.mark.parametrize(
    ("scales", "key"),
    [
        ([{"port": "/dev/ttyUSB0", "bin": "A-01", "protocl": "sics"}], "scales[0].protocl"),
        ([{"port": "/dev/ttyUSB0", "bin": "A-01", "baud": 19200}], "scales[0].baud"),
        (
            [{"port": "/dev/ttyUSB0", "bin": "A-01"}, {"port": "/dev/ttyUSB0", "bin": "A-02"}],
            "scales[1].port",
        ),
        (
            [{"port": "/dev/ttyUSB0", "bin": "A-01"}, {"port": "/dev/ttyUSB1", "bin": "A-01"}],
            "scales[1].bin",
        ),
        ([{"port": "/dev/ttyUSB0", "bin": "A-01", "net_weight": "ignore"}], "scales[0].net_weight"),
    ],
)  # fmt: skip
def test_config_slips_in_scales_are_refused(
    tmp_path: Path, scales: list[dict[str, object]], key: str
) -> None:
    line = refusal(run_edge(toml_config(tmp_path, "mqtt://127.0.0.1:1", scales=scales)))
    assert str(tmp_path / "edge.toml") in line
    assert key in line


def test_scanner_on_a_scale_port_is_refused(tmp_path: Path) -> None:
    config = toml_config(
        tmp_path,
        "mqtt://127.0.0.1:1",
        scales=[{"port": "/dev/ttyUSB0", "bin": "A-01"}],
        scanners=[{"port": "/dev/ttyUSB0", "id": "gun"}],
    )
    assert "scanners[0].port" in refusal(run_edge(config))


def test_unknown_keys_at_top_level_and_in_signal(tmp_path: Path) -> None:
    config = toml_config(tmp_path, "mqtt://127.0.0.1:1", extra={"tick": 1})
    assert "tick: unknown key" in refusal(run_edge(config))
    config = toml_config(tmp_path, "mqtt://127.0.0.1:1", signal={"stepg": 5})
    assert "stepg" in refusal(run_edge(config))


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('site = "plant1"\nagent = "pi-1\n')
    line = refusal(run_edge(config))
    assert str(config) in line
    assert "TOML" in line


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    line = refusal(run_edge(tmp_path / "nope.toml"))
    assert str(tmp_path / "nope.toml") in line


def test_a_dying_publisher_ends_the_process_non_zero(tmp_path: Path) -> None:
    """The CA vanishes after start-up: the publisher cannot build a client and the
    agent exits 1 (systemd restarts it) instead of running on without MQTT."""
    ca = make_ca(tmp_path)
    config = toml_config(
        tmp_path,
        f"mqtts://127.0.0.1:{free_port()}",  # nobody listens: the publisher keeps retrying
        extra={"mqtt_ca_file": str(ca)},
    )
    log = tmp_path / "edge.log"
    proc = start_edge(config, log)
    try:
        wait_until(
            lambda: "cannot reach broker" in log.read_text(), what="connect attempts"
        )
        ca.unlink()
        rc = proc.wait(WAIT_S)
        assert rc == 1, log.read_text()
        assert "publisher failed" in log.read_text()
    finally:
        stop(proc)
