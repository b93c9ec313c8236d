"""Modbus indicator settings and register decoding (no I/O: shared by the reader, the
settings and check-port).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pymodbus.client import ModbusTcpClient

DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
WordOrder = Literal["big", "little"]
RegisterType = Literal["holding", "input"]
Parity = Literal["N", "E", "O"]
REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
MAX_REGISTER = 65535  # Modbus addresses are 16 bits
TCP_PREFIX = "tcp://"
DEFAULT_TCP_PORT = 502


@dataclass(frozen=True)
class ModbusSpec:
    """Where one indicator keeps its weight and how to read it."""

    unit_id: int = 1
    weight_register: int = 0
    register_type: RegisterType = "holding"
    data_type: DataType = "int32"
    word_order: WordOrder = "big"
    factor: float = 1.0  # grams per count of the register
    status_register: int | None = None
    stable_bit: int | None = None  # set = stable
    motion_bit: int | None = None  # set = the load moves
    parity: Parity = "N"
    stopbits: int = 1
    timeout_s: float = 1.0


def tcp_address(port: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp://host[:port]`` bus, None for a serial port."""
    if not port.startswith(TCP_PREFIX):
        return None
    parts = urlsplit(port)
    if not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{port!r}: Modbus TCP is tcp://host[:port]")
    try:
        number = parts.port
    except ValueError:
        number = 0  # out of range: refused below with the same words as port 0
    if number == 0 or (number is None and parts.netloc.endswith(":")):
        raise ValueError(f"{port!r}: the TCP port must be 1..65535 (502 when left out)")
    return parts.hostname, number or DEFAULT_TCP_PORT


def bus_key(port: str) -> str:
    """Scales on the same port or TCP address (``tcp://h`` is ``tcp://h:502``) share one bus."""
    address = tcp_address(port)
    return port if address is None else f"{TCP_PREFIX}{address[0]}:{address[1]}"


def decode_registers(registers: list[int], spec: ModbusSpec) -> float:
    """The register value in grams; ValueError for a float that is not a number."""
    kind = getattr(ModbusTcpClient.DATATYPE, spec.data_type.upper())
    raw = ModbusTcpClient.convert_from_registers(
        registers, kind, word_order=spec.word_order
    )
    if not isinstance(raw, int | float):
        raise ValueError(f"register decodes to {raw!r}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"register value {raw!r} is not a finite number")
    grams = float(raw) * spec.factor
    if not math.isfinite(grams):
        raise ValueError(
            f"register value {raw!r} times factor {spec.factor!r} overflows"
        )
    return grams
