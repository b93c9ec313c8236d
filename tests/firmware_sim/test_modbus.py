"""The simulated Modbus indicators, seen by pymodbus's own client (a third party to the sim)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from jitstock.firmware_sim.modbus import SimulatedModbusBus

Client = ModbusSerialClient | ModbusTcpClient


@pytest.fixture(params=["rtu", "tcp"])
def bus_and_client(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[SimulatedModbusBus, Client]]:
    bus = SimulatedModbusBus(request.param, word_order="little")
    bus.add_unit(1, "B1", unit_weight_g=10.0, count=30, tare_g=200.0, noise_counts=0.0)
    bus.add_unit(2, "B2", unit_weight_g=5.0, count=10, tare_g=100.0, noise_counts=0.0)
    bus.start()
    client: Client
    if bus.transport == "rtu":
        client = ModbusSerialClient(bus.port, timeout=0.3, retries=0)
    else:
        client = ModbusTcpClient(
            "127.0.0.1", port=int(bus.url.rsplit(":", 1)[1]), timeout=0.3, retries=0
        )
    assert client.connect()
    yield bus, client
    client.close()  # type: ignore[no-untyped-call]
    bus.stop()


def grams(client: Client, unit: int) -> float:
    regs = client.read_holding_registers(0, count=6, device_id=unit).registers
    tenths = client.convert_from_registers(
        regs[0:2], client.DATATYPE.INT32, word_order="little"
    )
    as_float = client.convert_from_registers(
        regs[2:4], client.DATATYPE.FLOAT32, word_order="little"
    )
    assert isinstance(tenths, int)
    assert isinstance(as_float, float)
    assert regs[5] == round(as_float)  # int16 whole grams
    assert regs[4] & 1  # settled: stable bit
    assert tenths / 10 == pytest.approx(as_float, abs=0.1)
    return as_float


def test_units_weigh_their_own_bins(
    bus_and_client: tuple[SimulatedModbusBus, Client],
) -> None:
    bus, client = bus_and_client
    assert grams(client, 1) == pytest.approx(500.0, abs=0.5)
    assert grams(client, 2) == pytest.approx(150.0, abs=0.5)
    bus.units[2].pick(4)
    bus.units[2].set_count(6)
    answer = client.read_input_registers(
        2, count=2, device_id=2
    )  # input registers mirror
    value = client.convert_from_registers(
        answer.registers, client.DATATYPE.FLOAT32, word_order="little"
    )
    assert isinstance(value, float)
    assert 100.0 <= value <= 150.0  # ringing towards 130 g


def test_faults(bus_and_client: tuple[SimulatedModbusBus, Client]) -> None:
    bus, client = bus_and_client
    unit = bus.units[1]
    unit.exception_responses(1, code=4)
    answer = client.read_holding_registers(0, count=2, device_id=1)
    assert answer.isError()
    assert answer.exception_code == 4
    unit.timeouts(1)
    with pytest.raises(ModbusIOException):
        client.read_holding_registers(0, count=2, device_id=1)
    if bus.transport == "rtu":
        unit.bad_crc(1)  # the client drops the answer: no response
        with pytest.raises(ModbusIOException):
            client.read_holding_registers(0, count=2, device_id=1)
    assert client.read_holding_registers(0, count=10, device_id=1).exception_code == 2
    assert not client.read_holding_registers(0, count=2, device_id=1).isError()


def test_line_noise_does_not_stop_the_bus(
    bus_and_client: tuple[SimulatedModbusBus, Client],
) -> None:
    bus, client = bus_and_client
    noise = bytes(range(256)) * 3
    if bus.transport == "rtu":
        fd = os.open(bus.port, os.O_WRONLY | os.O_NOCTTY)
        os.write(fd, noise)
        os.close(fd)
    else:
        with socket.create_connection(
            ("127.0.0.1", int(bus.url.rsplit(":", 1)[1]))
        ) as s:
            s.sendall(noise)
    client.close()  # type: ignore[no-untyped-call]
    assert client.connect()
    for _ in range(5):
        try:
            assert grams(client, 1) == pytest.approx(500.0, abs=0.5)
            return
        except ModbusIOException:
            continue  # the noise may still be draining on the pty
    raise AssertionError("the bus never answered again")


def test_bad_arguments() -> None:
    bus = SimulatedModbusBus("rtu")
    with pytest.raises(ValueError, match="1..247"):
        bus.add_unit(0, "B0", unit_weight_g=1.0, count=1, tare_g=0.0)
    bus.add_unit(1, "B1", unit_weight_g=1.0, count=1, tare_g=0.0)
    with pytest.raises(ValueError, match="already"):
        bus.add_unit(1, "B2", unit_weight_g=1.0, count=1, tare_g=0.0)
    bus.stop()  # never started: removes its temp dir all the same
    with pytest.raises(ValueError, match="transport"):
        SimulatedModbusBus("ascii")  # type: ignore[arg-type]
