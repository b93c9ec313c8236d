"""docs/pi-install.md as far as this machine allows: the steps into a temporary root
(venv, pip install of the edge extra from the working tree, config placement) and
the systemd unit checked by `systemd-analyze verify` and by reading its lines."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from jitstock.firmware_sim.scale import SimulatedScale
from tests.services import find_binary
from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "jitstock-edge.service"
DOC = ROOT / "docs" / "pi-install.md"
VENV = "/opt/jitstock/venv"
CONFIG = "/etc/jitstock/edge.toml"
# Serial driver groups of /proc/devices the unit must admit (issue 11: the Pi's GPIO UART
# behind /dev/serial0 is ttyS0 on a Pi 3/4, RS-485 HATs are ttySC*).
SERIAL_GROUPS = ("ttyUSB", "ttyACM", "ttyAMA", "ttyS", "ttySC")
# pip resolves and downloads the edge extra's wheels: minutes on a slow link, not seconds.
PIP_TIMEOUT_S = 600


def unit_lines(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting in a unit file, in order."""
    section, out = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def settings(key: str) -> list[str]:
    return [
        v for s, k, v in unit_lines(UNIT.read_text()) if k == key and s == "Service"
    ]


def verify(unit_text: str, where: Path) -> None:
    """`systemd-analyze verify` passes without a single warning."""
    analyze = find_binary("systemd-analyze", "/usr/bin/systemd-analyze")
    where.mkdir(parents=True, exist_ok=True)
    path = where / "jitstock-edge.service"
    path.write_text(unit_text)
    proc = subprocess.run(
        [analyze, "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    # other units of the machine may warn about themselves; ours must not
    ours = [x for x in (proc.stdout + proc.stderr).splitlines() if "jitstock" in x]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ours == []


def test_unit_admits_every_serial_driver_of_a_pi_and_nothing_else() -> None:
    assert settings("DevicePolicy") == ["closed"]
    assert sorted(settings("DeviceAllow")) == sorted(
        [*(f"char-{g} rw" for g in SERIAL_GROUPS), "char-input r"]  # HID scanners
    )
    assert settings("SupplementaryGroups") == ["dialout input"]
    assert settings("RestartPreventExitStatus") == ["2"]
    assert settings("ExecStart") == [f"{VENV}/bin/jitstock-edge --config {CONFIG}"]
    doc = DOC.read_text()
    for group in SERIAL_GROUPS:
        assert f"`{group}`" in doc
    assert f"{VENV}/bin/jitstock-edge" in doc
    assert CONFIG in doc


def test_unit_verifies_with_systemd_analyze(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at an executable that does
    stub = tmp_path / "jitstock-edge"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text().replace(f"{VENV}/bin/jitstock-edge", str(stub))
    verify(text, tmp_path / "system")
    # and the check is real: a misspelt key is caught
    typo = text.replace(
        "DevicePolicy=closed", "DevicePolicy=closed\nDeviceAlow=char-ttyS rw"
    )
    with pytest.raises(AssertionError):
        verify(typo, tmp_path / "typo")


def run(
    *argv: str | Path, timeout: float = WAIT_S, **kw
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.timeout(PIP_TIMEOUT_S + 300)
def test_documented_install_steps_into_a_temp_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    venv = root / VENV.lstrip("/")
    etc = root / "etc" / "jitstock"
    # 2. the program, in its own venv: the edge extra from the working tree
    run(sys.executable, "-m", "venv", venv)
    run(
        venv / "bin" / "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        f"{ROOT}[edge]",
        timeout=PIP_TIMEOUT_S,
    )
    version = run(venv / "bin" / "jitstock-edge", "--version").stdout
    assert version.startswith("jitstock-edge ")
    py = venv / "bin" / "python"
    run(py, "-c", "import serial, paho.mqtt.client, yaml, pydantic_settings")
    # only the edge: no server dependencies on the Pi
    lean = subprocess.run([py, "-c", "import fastapi"], capture_output=True)
    assert lean.returncode != 0
    # 3. configuration, with the documented modes
    run("install", "-d", "-m", "0755", etc)
    run(
        "install",
        "-m",
        "0644",
        ROOT / "deploy" / "edge.example.toml",
        etc / "edge.toml",
    )
    run("install", "-m", "0600", "/dev/null", etc / "edge.env")
    assert stat.S_IMODE((etc / "edge.toml").stat().st_mode) == 0o644
    assert stat.S_IMODE((etc / "edge.env").stat().st_mode) == 0o600
    # the example config is valid for the installed agent (ports are checked at run time)
    scales = run(
        py,
        "-c",
        "import sys; from jitstock.edge.settings import load_settings; "
        "print(len(load_settings(sys.argv[1]).scales))",
        etc / "edge.toml",
        cwd=tmp_path,
    ).stdout
    assert int(scales) == 5  # stream, sics, two Modbus RTU units, Modbus TCP
    # 4. the installed command asks a port what it speaks
    with SimulatedScale("A-01", "stream", workdir=tmp_path / "ports") as scale:
        probe = subprocess.run(
            [venv / "bin" / "jitstock-edge", "check-port", scale.port],
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "protocol=stream" in probe.stdout
    # 5. the unit, pointed into the temp root, verifies against the installed files
    text = UNIT.read_text().replace(VENV, str(venv)).replace("/etc/jitstock", str(etc))
    verify(text, root / "etc" / "systemd" / "system")
    shutil.rmtree(root)
