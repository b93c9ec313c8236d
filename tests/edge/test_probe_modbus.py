"""`jitstock-edge check-port` recognises Modbus indicators: RTU on a pty, TCP on host:port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from jitstock.firmware_sim.modbus import SimulatedModbusBus
from tests.services import free_port
from tests.waits import WAIT_S


def check_port(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, as an installer runs it."""
    return subprocess.run(
        [sys.executable, "-m", "jitstock.edge.cli", "check-port", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )


@pytest.fixture(params=["rtu", "tcp"])
def bus(request: pytest.FixtureRequest) -> Iterator[SimulatedModbusBus]:
    b = SimulatedModbusBus(request.param)
    b.add_unit(1, "B1", unit_weight_g=10.0, count=50, tare_g=500.0)
    b.add_unit(2, "B2", unit_weight_g=10.0, count=20, tare_g=500.0)
    b.start()
    yield b
    b.stop()


def test_check_port_identifies_each_unit(bus: SimulatedModbusBus) -> None:
    kind = "RTU" if bus.transport == "rtu" else "TCP"
    found = check_port(bus.address, "--unit", "2", "--register", "2", "--parity", "E")
    assert found.returncode == 0, found.stdout + found.stderr
    assert f"Modbus {kind} device, unit 2" in found.stdout
    assert 'protocol = "modbus", unit_id = 2' in found.stdout
    # registers 2-3 of the simulator hold the gross weight as float32: 500 + 20 x 10 g
    value = float(found.stdout.split("float32 ")[1].split()[0])
    assert value == pytest.approx(700.0, abs=2.0)


def test_an_exception_answer_is_still_a_modbus_device(bus: SimulatedModbusBus) -> None:
    found = check_port(bus.address, "--register", "100")
    assert found.returncode == 0, found.stdout
    assert "exception 2 (illegal data address)" in found.stdout


def test_a_unit_nobody_has(bus: SimulatedModbusBus) -> None:
    found = check_port(bus.address, "--unit", "9", "--timeout", "2")
    assert found.returncode == 1, found.stdout
    if bus.transport == "rtu":
        assert "nor to Modbus RTU unit 9" in found.stdout  # silence on RS-485
    else:
        assert "has no unit 9" in found.stdout  # the gateway says so


@pytest.mark.parametrize(
    "args",
    [
        ("--unit", "0"),
        ("--unit", "248"),
        ("--unit", str(2**64)),
        ("--register", "-1"),
        ("--register", "65536"),
        ("--unit", "5e-324"),
        ("--register", "nan"),
        ("--parity", "X"),
        ("--baudrate", str(2**63)),  # was an OverflowError traceback
        ("--baudrate", "0"),
        ("--timeout", "inf"),  # probed forever
        ("--timeout", "nan"),
        ("--timeout", "0"),
    ],
)
def test_bad_unit_or_register_is_refused(args: tuple[str, str]) -> None:
    found = check_port("tcp://127.0.0.1:1", *args)
    assert found.returncode == 2
    assert "Traceback" not in found.stderr
    assert args[0] in found.stderr


def test_nobody_listening_on_tcp() -> None:
    found = check_port(f"tcp://127.0.0.1:{free_port()}", "--timeout", "1")
    assert found.returncode == 2
    assert "cannot connect" in found.stdout
    # one line, as docs/scales.md says: pymodbus's own ERROR record of the same failure
    # ("ERROR pymodbus.logging: Connection to (...) failed") went to stderr before it
    assert "pymodbus" not in found.stderr, found.stderr
    found = check_port("tcp://", "--timeout", "1")
    assert found.returncode == 2
    assert "tcp://host" in found.stdout


def test_tcp_port_0_is_refused_not_read_as_502() -> None:
    found = check_port("tcp://127.0.0.1:0", "--timeout", "1")
    assert found.returncode == 2
    assert "TCP port must be 1..65535" in found.stdout


def test_line_settings_the_port_refuses_are_one_line_not_a_traceback() -> None:
    """Some kernels refuse a pty's parity change (EINVAL from tcsetattr), as some USB
    adapters refuse a setting: pyserial passes termios.error through, which check-port
    printed as a traceback. Asking twice with E reaches that refusal on such kernels.
    """
    bus = SimulatedModbusBus("rtu")
    bus.add_unit(1, "B1", unit_weight_g=10.0, count=50, tare_g=500.0)
    bus.start()
    try:
        for _ in range(2):
            found = check_port(bus.address, "--parity", "E", "--timeout", "1")
            assert "Traceback" not in found.stderr, found.stderr
            if found.returncode == 2:
                assert "refuses 9600 baud, parity E" in found.stdout
            else:
                assert found.returncode == 0, found.stdout
                assert "Modbus RTU device, unit 1" in found.stdout
    finally:
        bus.stop()
