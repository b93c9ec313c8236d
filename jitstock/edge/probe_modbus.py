"""check-port for Modbus weighing indicators: RTU on a serial port, TCP on tcp://host[:port].

RTU: once a port is silent and does not answer MT-SICS, the probe sends one Modbus
"read holding registers" request (two registers at ``register`` of ``unit``) on the
port it already holds, framed by pymodbus's ``FramerRTU``; any answer with a good CRC
from that unit — registers or an exception code — is a Modbus device. TCP: the same
request through pymodbus's TCP client. The registers are shown raw and as int32 and
float32 (big-endian word order), so an installer can match them to the display.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ModbusPDU
from pymodbus.pdu.register_message import ReadHoldingRegistersRequest

from jitstock.edge.registers import tcp_address

# check-port prints one line with the cause; pymodbus logs the same failures (a refused
# connection, a timeout) at ERROR to stderr, a second, raw line. Silenced as in
# edge/modbus.py.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

# Seconds to wait for a Modbus answer: an indicator answers within ~50 ms at 9600 baud.
MODBUS_WAIT_S = 1.0
# Exception codes a TCP gateway answers for a unit id that is not behind it.
GATEWAY_EXCEPTIONS = frozenset({0x0A, 0x0B})
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target did not respond",
}


def _shown(registers: list[int]) -> str:
    raw = " ".join(f"0x{r:04x}" for r in registers)
    if len(registers) < 2:
        return f"[{raw}]"
    packed = struct.pack(">HH", registers[0], registers[1])
    (as_int,) = struct.unpack(">i", packed)
    (as_float,) = struct.unpack(">f", packed)
    return f"[{raw}] = int32 {as_int} / float32 {as_float:g} (big-endian words)"


def describe_answer(
    where: str, unit: int, register: int, answer: ModbusPDU
) -> tuple[str, bool]:
    """One line about a Modbus answer, and whether it is a usable indicator."""
    head = f"{where}: Modbus {'TCP' if where.startswith('tcp://') else 'RTU'} device"
    code = getattr(answer, "exception_code", None)
    if answer.isError() and code is not None:
        name = EXCEPTION_NAMES.get(code, f"code {code}")
        if code in GATEWAY_EXCEPTIONS:
            return (
                f"{head} (a gateway) has no unit {unit}: exception {code} ({name}) - "
                "try another --unit",
                False,
            )
        return (
            f"{head}, unit {unit} answered register {register} with exception {code} "
            f'({name}) - a Modbus device (protocol = "modbus", unit_id = {unit}); take '
            "the weight register from the indicator's manual (--register)",
            True,
        )
    registers = list(getattr(answer, "registers", []))
    return (
        f"{head}, unit {unit}: holding registers {register}-{register + 1} "
        f'{_shown(registers)} - protocol = "modbus", unit_id = {unit}; match the value '
        "to the display to choose weight_register, data_type, word_order and factor "
        "(docs/connect-devices.md)",
        True,
    )


def ask_rtu(ser: Any, unit: int, register: int, wait_s: float) -> ModbusPDU | None:
    """Send one read request on an open serial port; the unit's answer or None."""
    framer = FramerRTU(DecodePDU(is_server=False))
    request = ReadHoldingRegistersRequest(address=register, count=2, dev_id=unit)
    ser.reset_input_buffer()
    ser.write(framer.buildFrame(request))
    buf = b""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        buf += ser.read(ser.in_waiting or 1)
        if not buf:
            continue
        try:
            used, pdu = framer.handleFrame(buf, unit, 0)
        except ModbusException:
            return None  # an answer pymodbus cannot decode: not Modbus
        if pdu is not None:
            return pdu
        if used:
            buf = buf[used:]
    return None


def probe_tcp(port: str, unit: int, register: int, timeout_s: float) -> tuple[str, int]:
    """Diagnose a Modbus TCP address: (text, exit code 0 identified / 1 unknown / 2 no connection)."""
    try:
        address = tcp_address(port)
    except ValueError as exc:
        return f"{port}: {exc}", 2
    assert address is not None
    client = ModbusTcpClient(
        address[0], port=address[1], timeout=min(timeout_s, 5.0), retries=0
    )
    try:
        if not client.connect():  # type: ignore[no-untyped-call]
            return (
                f"{port}: cannot connect to {address[0]}:{address[1]} (address, port, "
                "firewall? Modbus TCP listens on 502 by default)",
                2,
            )
        try:
            answer = client.read_holding_registers(register, count=2, device_id=unit)
        except ModbusException as exc:
            return (
                f"{port}: connected, but unit {unit} did not answer ({exc}) - another --unit?",
                1,
            )
        text, ok = describe_answer(port, unit, register, answer)
        return text, 0 if ok else 1
    finally:
        client.close()  # type: ignore[no-untyped-call]
