"""diagnose/probe_port tell an installer what a port speaks (in-process; the CLI is in test_probe_cli)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from jitstock.edge.probe import (
    EXIT_IDENTIFIED,
    EXIT_NO_PORT,
    EXIT_UNKNOWN,
    diagnose,
    probe_port,
)
from jitstock.firmware_sim.pty_port import PtyPort
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.firmware_sim.scanner import SimulatedScanner
from tests.edge.pty_support import talking_port


def test_stream_scale() -> None:
    with SimulatedScale("P1", "stream", count=10) as sim:
        found = diagnose(sim.port, timeout_s=2.0)
    assert found.exit_code == EXIT_IDENTIFIED
    assert found.variant == "gs"
    assert "protocol=stream" in found.text
    last = re.search(r"last (-?[0-9.]+) g", found.text)
    assert last is not None
    assert abs(float(last.group(1)) - 625.0) < 1.5


def test_sics_scale() -> None:
    with SimulatedScale("P2", "sics", count=10) as sim:
        text = probe_port(sim.port, timeout_s=1.0)
    assert "protocol=sics" in text
    assert "S S" in text


@pytest.mark.parametrize(
    ("answer", "hint"),
    [(b"S I\r\n", "busy"), (b"S +\r\n", "underload"), (b"EL\r\n", "reports an error")],
)
def test_sics_answers_that_are_not_weights(
    tmp_path: Path, answer: bytes, hint: str
) -> None:
    port = PtyPort(tmp_path / "sics.port")
    port.open()
    stop = threading.Event()

    def answer_everything() -> None:
        while not stop.is_set():
            if port.read(0.05):
                port.write(answer)

    t = threading.Thread(target=answer_everything)
    t.start()
    try:
        found = diagnose(str(port.link), timeout_s=1.0)
    finally:
        stop.set()
        t.join()
        port.close()
    assert found.exit_code == EXIT_IDENTIFIED  # it speaks MT-SICS
    assert hint in found.text


def test_overload_and_moving_states_are_counted(tmp_path: Path) -> None:
    with talking_port(
        tmp_path, b"US,GS,+0001234.5 g\r\n", b"OL,GS,+9999999.9 g\r\n"
    ) as port:
        found = diagnose(port, timeout_s=2.0)
    assert found.exit_code == EXIT_IDENTIFIED
    assert "OLx" in found.text
    assert "USx" in found.text
    assert "no stable frame yet" in found.text
    assert "unusable (out_of_range)" in found.text


def test_only_error_frames(tmp_path: Path) -> None:
    with talking_port(tmp_path, b"ER,01\r\n") as port:
        found = diagnose(port, timeout_s=2.0)
    assert found.exit_code == EXIT_UNKNOWN
    assert "only error frames" in found.text


def test_toledo_negative_kg(tmp_path: Path) -> None:
    # SWA '-' (0x2D): 3 decimals; SWB '2' (0x32): negative, stable, kg; SWC ' ': no unit extension
    frame = b"\x02-2 001250000000\r\x11"
    with talking_port(tmp_path, frame) as port:
        found = diagnose(port, timeout_s=2.0)
    assert found.exit_code == EXIT_UNKNOWN
    assert found.variant == "toledo"
    assert "last -1.250 kg stable" in found.text


def test_silent_port(tmp_path: Path) -> None:
    with talking_port(tmp_path) as port:
        found = diagnose(port, timeout_s=0.6)
    assert found.exit_code == EXIT_UNKNOWN
    assert "silent" in found.text


def test_missing_port(tmp_path: Path) -> None:
    found = diagnose(str(tmp_path / "nope"), timeout_s=0.5)
    assert found.exit_code == EXIT_NO_PORT
    assert "cannot open" in found.text


def test_barcode_scanner() -> None:
    with SimulatedScanner() as scanner:
        stop = threading.Event()

        def keep_scanning() -> None:
            while not stop.wait(0.05):
                scanner.scan("KANBAN-01-000042")

        t = threading.Thread(target=keep_scanning)
        t.start()
        try:
            found = diagnose(scanner.port, timeout_s=1.0)
        finally:
            stop.set()
            t.join()
    assert found.exit_code == EXIT_IDENTIFIED
    assert "barcode scanner" in found.text
