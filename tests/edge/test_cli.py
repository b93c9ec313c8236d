"""`jitstock-edge` command line: check-port on a simulated scale, bad config exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jitstock.edge.cli import main
from jitstock.firmware_sim.scale import SimulatedScale


@pytest.mark.parametrize("proto", ["stream", "sics"])
def test_check_port_says_what_a_scale_speaks(
    tmp_path: Path, proto: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with SimulatedScale("B1", proto, workdir=tmp_path) as scale:
        assert main(["check-port", scale.port, "--timeout", "3"]) == 0
    out = capsys.readouterr().out.lower()
    assert ("sics" in out) == (proto == "sics")
    assert " g" in out


def test_check_port_on_a_missing_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-port", "/dev/does-not-exist", "--timeout", "0.5"]) == 2
    assert "cannot open" in capsys.readouterr().out


def test_bad_config_exits_2_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('site = "p"\n')  # no agent id
    proc = subprocess.run(
        [sys.executable, "-m", "jitstock.edge.cli", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "agent" in proc.stderr
