"""probe_port tells an installer what a port speaks."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from jitstock.edge.probe import probe_port
from jitstock.firmware_sim.pty_port import PtyPort
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.firmware_sim.scanner import SimulatedScanner


def test_stream_scale() -> None:
    with SimulatedScale("P1", "stream", count=10) as sim:
        text = probe_port(sim.port, timeout_s=2.0)
    assert "protocol=stream" in text
    last = re.search(r"last (-?[0-9.]+) g", text)
    assert last is not None
    assert abs(float(last.group(1)) - 625.0) < 1.5


def test_sics_scale() -> None:
    with SimulatedScale("P2", "sics", count=10) as sim:
        text = probe_port(sim.port, timeout_s=1.0)
    assert "protocol=sics" in text
    assert "S S" in text


def test_silent_port(tmp_path: Path) -> None:
    port = PtyPort(tmp_path / "quiet.port")
    port.open()
    try:
        text = probe_port(str(port.link), timeout_s=0.6)
    finally:
        port.close()
    assert "silent" in text


def test_missing_port(tmp_path: Path) -> None:
    assert "cannot open" in probe_port(str(tmp_path / "nope"), timeout_s=0.5)


def test_barcode_scanner() -> None:
    with SimulatedScanner() as scanner:
        stop = threading.Event()

        def keep_scanning() -> None:
            while not stop.wait(0.05):
                scanner.scan("KANBAN-01-000042")

        t = threading.Thread(target=keep_scanning)
        t.start()
        try:
            text = probe_port(scanner.port, timeout_s=1.0)
        finally:
            stop.set()
            t.join()
    assert "barcode scanner" in text
