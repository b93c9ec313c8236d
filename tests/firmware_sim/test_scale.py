"""SimulatedScale seen from a plain serial port: frames, answers and faults."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from jitstock.clock import ScaledClock
from jitstock.firmware_sim.scale import SimulatedScale
from tests.waits import WAIT_S

STREAM_RE = re.compile(rb"^(ST|US),GS,[+-]\d+\.\d{1,4} (g|kg|lb)\r\n$")


def read_lines(port: serial.Serial, n: int, timeout: float = WAIT_S) -> list[bytes]:
    lines: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(lines) < n and time.monotonic() < deadline:
        line = port.readline()
        if line:
            lines.append(line)
    return lines


def read_until(port: serial.Serial, wanted: bytes, timeout: float = WAIT_S) -> bool:
    """Read lines until `wanted` arrives (True) or the bound passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port.readline() == wanted:
            return True
    return False


@pytest.fixture
def stream_scale() -> Iterator[SimulatedScale]:
    with SimulatedScale("T1", "stream", count=100, rate_hz=50.0) as sim:
        yield sim


@pytest.fixture
def sics_scale() -> Iterator[SimulatedScale]:
    with SimulatedScale("T2", "sics", count=100) as sim:
        yield sim


def ask(port: serial.Serial, command: bytes) -> bytes:
    port.write(command)
    return port.readline()


@pytest.mark.parametrize(("unit", "digits"), [("g", 1), ("kg", 4), ("lb", 4)])
def test_stream_frames_have_the_documented_form(unit: str, digits: int) -> None:
    with (
        SimulatedScale("F", "stream", unit=unit, rate_hz=50.0) as sim,  # type: ignore[arg-type]
        serial.serial_for_url(sim.port, timeout=1) as port,
    ):
        lines = read_lines(port, 5)
    assert len(lines) == 5
    for line in lines[1:]:  # the first may be cut by opening mid-frame
        assert STREAM_RE.match(line), line
        assert line.split(b".")[1].split(b" ")[0].__len__() == digits


def test_stream_pick_shows_unstable_frames_then_the_new_weight(
    stream_scale: SimulatedScale,
) -> None:
    with serial.serial_for_url(stream_scale.port, timeout=1) as port:
        read_lines(port, 3)
        stream_scale.pick(3)
        lines = read_lines(port, 40)  # 0.8 s at 50 Hz, settle_s is 0.4
    flags = [line[:2] for line in lines]
    assert b"US" in flags[:5]
    assert flags[-1] == b"ST"
    last = float(lines[-1].split(b",")[2].split(b" ")[0])
    assert abs(last - (500.0 + 97 * 12.5)) < 1.5


def test_sics_answers(sics_scale: SimulatedScale) -> None:
    with serial.serial_for_url(sics_scale.port, timeout=1) as port:
        answer = ask(port, b"S\r\n")
        assert re.match(rb"^S S +1750\.\d g\r\n$", answer) or re.match(
            rb"^S S +1749\.\d g\r\n$", answer
        ), answer
        assert ask(port, b"XYZ\r\n") == b"ES\r\n"
        sics_scale.pick(1)
        assert ask(port, b"S\r\n").startswith(b"S D ")
        sics_scale.error_frames(2)
        assert [ask(port, b"S\r\n") for _ in range(2)] == [b"EL\r\n", b"EL\r\n"]


def test_unplug_breaks_the_reader_and_replug_repoints_the_symlink(
    sics_scale: SimulatedScale,
) -> None:
    port = serial.serial_for_url(sics_scale.port, timeout=1)
    try:
        sics_scale.unplug()
        assert not Path(sics_scale.port).exists()
        with pytest.raises(serial.SerialException):
            port.read(1)
    finally:
        port.close()
    sics_scale.replug()
    assert Path(sics_scale.port).exists()
    with serial.serial_for_url(sics_scale.port, timeout=1) as port:
        assert ask(port, b"S\r\n") == b"S I\r\n"  # booting
        assert ask(port, b"S\r\n").startswith(b"S S ")


def test_garbage_error_frames_and_freeze_on_the_stream(
    stream_scale: SimulatedScale,
) -> None:
    with serial.serial_for_url(stream_scale.port, timeout=1) as port:
        read_lines(port, 2)
        stream_scale.error_frames(2)
        # frames buffered in the pty before the request come first (many on a loaded machine)
        assert read_until(port, b"ER,01\r\n")
        stream_scale.inject_garbage(16)
        lines = read_lines(port, 4)
        assert any(not STREAM_RE.match(x) for x in lines)
        stream_scale.freeze(True)
        read_lines(port, 1)
        frozen = read_lines(port, 10)
        assert len(set(frozen)) == 1
        stream_scale.freeze(False)
        assert len(set(read_lines(port, 20))) > 1


def test_spikes_appear_while_on(stream_scale: SimulatedScale) -> None:
    with serial.serial_for_url(stream_scale.port, timeout=1) as port:
        stream_scale.spikes(True)
        lines = read_lines(port, 60)[1:]
    grams = [
        float(x.split(b",")[2].split(b" ")[0]) for x in lines if STREAM_RE.match(x)
    ]
    assert max(abs(g - 1750.0) for g in grams) > 40


def test_nobody_listening_drops_frames_instead_of_blocking() -> None:
    clock = ScaledClock(50.0)
    with SimulatedScale("D", "stream", rate_hz=100.0, clock=clock) as sim:
        time.sleep(1.0)  # 5000 frames, far more than a pty buffer holds
        assert sim._pty.dropped_bytes > 0
        sim.set_count(0)
        with serial.serial_for_url(sim.port, timeout=1) as port:
            lines = read_lines(port, 200)
    assert lines, "the scale stopped sending"
    # opening flushes the backlog: fresh frames show the new (empty) bin within a few lines
    assert any(
        x.startswith(b"ST,GS,+0000500.") or x.startswith(b"ST,GS,+0000499.")
        for x in lines
    )
