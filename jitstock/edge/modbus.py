"""Modbus weighing indicators: RTU on an RS-485 port or Modbus TCP, read with pymodbus.

A ``protocol = "modbus"`` scale is one unit id on a bus: a serial port (RTU) or
``tcp://host[:port]`` (Modbus TCP, port 502 by default). Several ``[[scales]]`` share
one bus by unit id; they share one :class:`ModbusBus` (one pymodbus client, one lock:
RS-485 is half duplex, one request at a time). Each scale has its own
:class:`ModbusScaleReader` thread that polls its weight register every
``poll_interval_s`` (and its status register, when a stable or motion bit is set up),
turns it into grams (data type, word order, ``factor``) and feeds the same
range check, filter and stability path as a serial scale (edge/scale.py).

Faults (reported through the agent's status, recovered by themselves):
``timeout`` — no valid answer in ``timeout_s`` (silent unit, wrong unit id or baud rate,
bad CRC), ``modbus_exception`` — the indicator answered with an exception code
(illegal address, device busy…), ``garbage`` — a float register that is NaN or
infinite, ``port_error`` — the port or the TCP connection cannot be opened.
"""

from __future__ import annotations

import logging
import socket
import termios
import threading
from typing import Any

import serial
from pymodbus import ModbusException
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from jitstock.clock import REAL_CLOCK, Clock, wait
from jitstock.edge.frames import Frame
from jitstock.edge.registers import (
    REGISTERS,
    ModbusSpec,
    decode_registers,
    tcp_address,
)
from jitstock.edge.scale import ReadingSink, ScalePortConfig, ScaleReader, _PortGone
from jitstock.edge.stability import SignalSettings

log = logging.getLogger(__name__)

# pymodbus logs every timeout at ERROR; the reader logs them itself, rate-limited.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

MODBUS_FAULTS = ("timeout", "modbus_exception")


class ModbusTimeout(Exception):
    """No valid answer (silence, wrong unit id, bad CRC)."""


class ModbusExceptionResponse(Exception):
    """The indicator answered with a Modbus exception code."""


class ModbusBus:
    """One pymodbus client shared by the indicators on one port or TCP address."""

    def __init__(self, port: str, baudrate: int, spec: ModbusSpec) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._baudrate, self._spec = baudrate, spec
        address = tcp_address(port)
        self._address = address
        self._client: ModbusSerialClient | ModbusTcpClient
        if address is not None:
            self._client = ModbusTcpClient(
                address[0], port=address[1], timeout=spec.timeout_s, retries=0
            )
        else:
            self._client = ModbusSerialClient(
                port,
                baudrate=baudrate,
                parity=spec.parity,
                stopbits=spec.stopbits,
                timeout=spec.timeout_s,
                retries=0,
            )

    def read(self, spec: ModbusSpec, address: int, count: int) -> list[int]:
        """``count`` registers at ``address`` of unit ``spec.unit_id``.

        Raises ModbusTimeout, ModbusExceptionResponse, or _PortGone (the port or
        connection failed: the caller re-opens after a backoff).
        """
        with self._lock:
            if not self._client.connected and not self._client.connect():
                raise _PortGone(f"cannot open {self.port}: {self._why_not()}")
            call = (
                self._client.read_input_registers
                if spec.register_type == "input"
                else self._client.read_holding_registers
            )
            try:
                answer: Any = call(address, count=count, device_id=spec.unit_id)
            except ModbusIOException as exc:
                raise ModbusTimeout(str(exc)) from None
            except (ModbusException, serial.SerialException, OSError) as exc:
                self._client.close()  # type: ignore[no-untyped-call]
                raise _PortGone(str(exc)) from exc
        if answer.isError():
            code = getattr(answer, "exception_code", "?")
            raise ModbusExceptionResponse(f"exception code {code}")
        registers = list(answer.registers)
        if len(registers) != count:
            raise ModbusTimeout(f"{len(registers)} registers, asked for {count}")
        return registers

    def _why_not(self) -> str:
        """Why the port or address does not open: pymodbus's connect() keeps the reason to
        its own log (silenced above), so ask once more; only after a failure, at most once
        per backoff.
        """
        try:
            if self._address is not None:
                socket.create_connection(self._address, self._spec.timeout_s).close()
            else:
                serial.serial_for_url(
                    self.port,
                    baudrate=self._baudrate,
                    parity=self._spec.parity,
                    stopbits=self._spec.stopbits,
                    exclusive=True,
                ).close()
        except termios.error as exc:  # the driver refuses the line settings
            return (
                f"the port refuses {self._baudrate} baud, parity {self._spec.parity}, "
                f"stopbits {self._spec.stopbits} ({exc.args[-1]})"
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            return str(exc)
        return "it opens now; retrying"

    def close(self) -> None:
        """Close the port or connection (the next read opens it again)."""
        with self._lock:
            self._client.close()  # type: ignore[no-untyped-call]


class ModbusScaleReader(ScaleReader):
    """Polls one indicator's registers; everything after the weight is ScaleReader's."""

    def __init__(
        self,
        config: ScalePortConfig,
        settings: SignalSettings,
        sink: ReadingSink,
        bus: ModbusBus,
        clock: Clock = REAL_CLOCK,
        **kwargs: Any,
    ) -> None:
        if config.modbus is None:
            raise ValueError("a Modbus scale needs its register settings")
        super().__init__(config, settings, sink, clock, **kwargs)
        self._bus = bus
        for fault in MODBUS_FAULTS:
            self._stats[f"frames_bad_{fault}"] = 0

    def _open(self, cfg: ScalePortConfig) -> Any:
        """The shared bus; it connects on the first request."""
        if self._opened_once:
            self._count("reopens")
        self._opened_once = True
        self._last_line_at = self._clock.monotonic()
        return self._bus

    def _serve(self, port: Any, cfg: ScalePortConfig) -> bool:
        spec = cfg.modbus
        assert spec is not None  # checked in __init__, kept by update()
        got_good = False
        clock = self._clock
        next_poll = clock.monotonic()
        while not self._stop.is_set():
            if self._apply_pending():
                return got_good
            now = clock.monotonic()
            if now >= next_poll:
                next_poll = now + cfg.poll_interval_s
                if self._poll(spec):
                    got_good = True
            self._housekeeping()
            left = next_poll - clock.monotonic()
            if left > 0 and wait(clock, min(left, 0.05), self._stop):
                break
        return got_good

    def _poll(self, spec: ModbusSpec) -> bool:
        """One weight (and status) request; True for a good reading. Raises _PortGone."""
        try:
            registers = self._bus.read(
                spec, spec.weight_register, REGISTERS[spec.data_type]
            )
            stable = True
            if spec.status_register is not None:
                (word,) = self._bus.read(spec, spec.status_register, 1)
                if spec.stable_bit is not None:
                    stable = bool(word >> spec.stable_bit & 1)
                if spec.motion_bit is not None:
                    stable = stable and not word >> spec.motion_bit & 1
        except ModbusTimeout as exc:
            self._answered()
            self._bad("timeout", f"unit {spec.unit_id} on {self._config.port}: {exc}")
            return False
        except ModbusExceptionResponse as exc:
            self._answered()
            self._bad(
                "modbus_exception",
                f"unit {spec.unit_id} on {self._config.port} answered {exc}",
            )
            return False
        self._answered()
        try:
            grams = decode_registers(registers, spec)
        except ValueError as exc:
            self._bad("garbage", f"unit {spec.unit_id}: {exc}")
            return False
        return self._handle_frame(Frame(grams, stable), self._clock.monotonic())

    def _answered(self) -> None:
        """A request was settled: the fault says why, `no_data` would hide it."""
        self._last_line_at = self._clock.monotonic()
