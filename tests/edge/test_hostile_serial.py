"""Hostile bytes on real pseudo-terminals: a scale head and a serial scanner that send
what no manual shows (found by an outside try of the agent).

- a weight with a tab (or another ASCII whitespace) between sign and digits: the frame
  pattern took it, the number conversion did not, and the ValueError restarted the
  reader (port closed and re-opened, buffered frames lost, nothing counted) on every
  such line, and made ``check-port`` end in a traceback;
- a line longer than the longest frame or code: its first bytes were dropped as
  garbage, but its tail was read as a line of its own, so a long scan's last bytes
  became a scan of a code nobody scanned, and a long scale line ending in a frame
  became a weight.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock.edge.scale import MAX_LINE_BYTES, ScalePortConfig, ScaleReader
from jitstock.edge.scanner import ScannerReader
from jitstock.edge.stability import SignalSettings
from jitstock.firmware_sim.pty_port import PtyPort
from jitstock.firmware_sim.scanner import SimulatedScanner
from jitstock.protocol import MAX_CODE_LEN
from tests.edge.conftest import RecordingSink
from tests.edge.pty_support import talking_port
from tests.edge.test_probe_cli import check_port
from tests.edge.test_scanner import wait_until_reading
from tests.waits import wait_until

FAST = SignalSettings(stability_window_s=0.5, keepalive_s=60.0, no_data_timeout_s=30.0)
READER_KW = {"recovery_s": 0.3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}


@pytest.fixture
def port(tmp_path: Path) -> Iterator[PtyPort]:
    pty = PtyPort(tmp_path / "scale.port")
    pty.open()
    yield pty
    pty.close()


@pytest.fixture
def reader(port: PtyPort, sink: RecordingSink) -> Iterator[ScaleReader]:
    r = ScaleReader(ScalePortConfig(str(port.link), "H1"), FAST, sink, **READER_KW)  # type: ignore[arg-type]
    r.start()
    yield r
    r.stop()


def send(port: PtyPort, data: bytes) -> None:
    """Write all of ``data`` (the pty buffer is small: retry until it takes it)."""
    deadline = time.monotonic() + 30
    while not port.write(data):
        assert time.monotonic() < deadline, "the pty never took the bytes"
        time.sleep(0.01)


@pytest.mark.parametrize("space", [b"\t", b"\x0b", b"\x0c", b" \t "])
def test_a_weight_with_a_tab_is_read_and_the_port_stays_open(
    port: PtyPort, reader: ScaleReader, sink: RecordingSink, space: bytes
) -> None:
    line = b"ST,GS,+" + space + b"0000640.0 g\r\n"
    deadline = time.monotonic() + 60
    while not sink.readings:
        assert time.monotonic() < deadline, f"no reading; stats {reader.stats}"
        send(port, line)
        time.sleep(0.025)
    assert sink.readings[0].grams == 640.0
    stats = reader.stats
    assert stats["reopens"] == 0, stats
    assert stats["frames_ok"] >= 2
    assert sum(v for k, v in stats.items() if k.startswith("frames_bad_")) == 0


def test_check_port_reads_a_weight_with_a_tab(tmp_path: Path) -> None:
    with talking_port(tmp_path, b"ST,GS,+\t0000640.0 g\r\n") as path:
        proc = check_port(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "last 640.0 g stable" in proc.stdout


def test_the_tail_of_an_overlong_scale_line_is_no_frame(
    port: PtyPort, reader: ScaleReader, sink: RecordingSink
) -> None:
    # pyserial empties the input buffer when it opens the port: first make sure it reads
    deadline = time.monotonic() + 60
    while reader.stats["frames_bad_scale_error"] == 0:
        assert time.monotonic() < deadline, f"the reader never read; {reader.stats}"
        send(port, b"ER,07\r\n")
        time.sleep(0.05)
    for i in range(1, 21):
        # one byte more than a line may hold: the reader drops it whatever the chunks ...
        send(port, b"x" * (MAX_LINE_BYTES + 1))
        wait_until(lambda i=i: reader.stats["frames_bad_garbage"] >= i)
        # ... and the same line goes on with what looks like a frame
        send(port, b"ST,GS,+0000500.0 g\r\n")
        time.sleep(0.025)
    errors = reader.stats["frames_bad_scale_error"]
    send(port, b"ER,07\r\n")  # a line of its own: every byte before it has been read
    wait_until(lambda: reader.stats["frames_bad_scale_error"] > errors)
    stats = reader.stats
    assert stats["frames_ok"] == 0, stats
    assert stats["frames_bad_garbage"] == 20, stats  # one per overlong line, no more
    assert sink.readings == []
    # good frames after it are read as ever
    deadline = time.monotonic() + 60
    while not sink.readings:
        assert time.monotonic() < deadline, f"no reading; stats {reader.stats}"
        send(port, b"ST,GS,+0000640.0 g\r\n")
        time.sleep(0.025)
    assert [r.grams for r in sink.readings] == [640.0]


def test_the_tail_of_an_overlong_scan_is_no_code(sink: RecordingSink) -> None:
    scanner = SimulatedScanner()
    scanner.start()
    reader = ScannerReader(
        scanner.port, "S1", sink, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    reader.start()
    try:
        wait_until_reading(scanner, sink)
        for i in range(1, 6):
            assert scanner.send_raw(b"A" * (MAX_CODE_LEN + 1))
            wait_until(lambda i=i: reader.stats["garbage"] >= i)
            assert scanner.send_raw(f"TAIL-{i}\r\n".encode())
        scanner.scan("AFTER")
        sink.wait_for(lambda: sink.scans[-1][2] == "AFTER")
        assert [c for _, _, c in sink.scans if c != "PROBE"] == ["AFTER"]
        assert reader.stats["garbage"] == 5
    finally:
        reader.stop()
        scanner.stop()


def feed_until(
    port: PtyPort, reader: ScaleReader, sink: RecordingSink, grams: float
) -> None:
    """Send frames of ``grams`` (a 40 Hz head) until a reading of it is published."""
    line = f"ST,GS,+{grams:012.1f} g\r\n".encode()
    deadline = time.monotonic() + 60
    while not any(r.grams == grams for r in sink.readings):
        assert time.monotonic() < deadline, f"no {grams} g; stats {reader.stats}"
        send(port, line)
        time.sleep(0.025)


@pytest.mark.parametrize("gap", ["silence", "unplug"])
def test_a_weight_from_before_a_gap_is_not_published_after_it(
    port: PtyPort, reader: ScaleReader, sink: RecordingSink, gap: str
) -> None:
    feed_until(port, reader, sink, 1000.0)
    # the load changes, and the scale goes away before the new weight could settle ...
    ok = reader.stats["frames_ok"]
    for _ in range(5):
        send(port, b"ST,GS,+0001500.0 g\r\n")
        time.sleep(0.02)
    wait_until(lambda: reader.stats["frames_ok"] >= ok + 5)
    assert [r.grams for r in sink.readings] == [1000.0]  # 0.1 s: not settled
    if gap == "unplug":
        reopens = reader.stats["reopens"]
        port.close()
        time.sleep(1.5)
        port.open()
        wait_until(lambda: reader.stats["reopens"] > reopens)
    else:
        time.sleep(1.5)  # three stability windows, well inside no_data_timeout_s
    # ... and comes back weighing 2000 g: 1500 g was never a settled weight, and it is
    # not one now (before: the first two frames after the gap published it)
    feed_until(port, reader, sink, 2000.0)
    assert [r.grams for r in sink.readings] == [1000.0, 2000.0]
