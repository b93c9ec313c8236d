"""Simulated Modbus weighing indicators: several unit ids on one RTU bus (a pty) or behind
one Modbus TCP address, each unit weighing with the same load-cell model as the serial
scales (firmware_sim/loadcell.py).

Frames are decoded and built with pymodbus's own framers (``FramerRTU``,
``FramerSocket``); this module only decides what each unit answers. Register map of
every simulated unit (holding registers, the same as input registers; docs/connect-devices.md)::

    0-1  gross weight, int32, 0.1 g per count    (factor = 0.1)
    2-3  gross weight, float32, grams            (factor = 1)
    4    status word: bit 0 stable, bit 1 overload
    5    gross weight, int16, whole grams (clipped to -32768..32767)

Word order of the 32-bit values is ``word_order`` (big: high word first). Faults on
demand per unit: ``timeouts(n)`` (no answer), ``exception_responses(n, code)``,
``bad_crc(n)`` (RTU: the answer's CRC is wrong). A unit id nobody has is silent on
RTU and answers exception 0x0B (gateway target failed to respond) on TCP, as a real
gateway does. Reading past register 5 answers exception 2 (illegal data address).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
from pathlib import Path
from typing import Literal

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    ReadInputRegistersResponse,
)

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.firmware_sim.loadcell import LoadCell
from jitstock.firmware_sim.pty_port import PtyPort

log = logging.getLogger(__name__)

Transport = Literal["rtu", "tcp"]
REGISTER_COUNT = 6
STATUS_STABLE, STATUS_OVERLOAD = 0x01, 0x02
ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, DEVICE_BUSY, GATEWAY_NO_TARGET = 1, 2, 6, 0x0B
READ_HOLDING, READ_INPUT = 3, 4
READ_POLL_S = 0.05
# A request longer than any read request is line noise: drop the buffer.
MAX_REQUEST_BYTES = 256


class SimulatedUnit:
    """One weighing indicator (one unit id): a bin on a platform, with faults on demand."""

    def __init__(
        self,
        unit_id: int,
        bin: str,
        *,
        unit_weight_g: float,
        count: int,
        tare_g: float,
        clock: Clock,
        settle_s: float = 0.4,
        noise_counts: float = 20.0,
        seed: int = 0,
    ) -> None:
        self.unit_id = unit_id
        self.bin = bin
        self.unit_weight_g = unit_weight_g
        self.tare_g = tare_g
        self._clock = clock
        self._lock = threading.Lock()
        self._count = count
        self._cell = LoadCell(
            self._gross(count),
            settle_s=settle_s,
            noise_counts=noise_counts,
            seed=seed,
            t0=clock.monotonic(),
        )
        self._timeouts = 0
        self._exceptions: list[int] = []
        self._bad_crc = 0
        self.requests = 0

    def _gross(self, count: int) -> float:
        return self.tare_g + count * self.unit_weight_g

    @property
    def count(self) -> int:
        """Parts in the bin."""
        return self._count

    def set_count(self, n: int) -> None:
        """Put exactly n parts in the bin (the load rings, then settles)."""
        with self._lock:
            self._count = max(0, int(n))
            self._cell.set_load(self._gross(self._count), self._clock.monotonic())

    def pick(self, n: int = 1) -> int:
        """Take n parts out (fewer if the bin runs dry); how many were taken."""
        taken = min(max(0, n), self._count)
        self.set_count(self._count - taken)
        return taken

    def refill(self, n: int) -> None:
        """Put n parts in."""
        self.set_count(self._count + n)

    def timeouts(self, n: int) -> None:
        """Leave the next n requests unanswered."""
        with self._lock:
            self._timeouts += n

    def exception_responses(self, n: int, code: int = DEVICE_BUSY) -> None:
        """Answer the next n requests with Modbus exception ``code``."""
        with self._lock:
            self._exceptions += [code] * n

    def bad_crc(self, n: int) -> None:
        """Spoil the CRC of the next n RTU answers."""
        with self._lock:
            self._bad_crc += n

    def registers(self, word_order: str) -> list[int]:
        """The six registers as they read now."""
        with self._lock:
            s = self._cell.sample(self._clock.monotonic())
        tenths = max(-(2**31), min(2**31 - 1, round(s.grams * 10)))
        hi_lo = [*struct.unpack(">HH", struct.pack(">i", tenths))]
        f_hi_lo = [*struct.unpack(">HH", struct.pack(">f", s.grams))]
        if word_order == "little":
            hi_lo.reverse()
            f_hi_lo.reverse()
        status = (STATUS_STABLE if s.stable else 0) | (
            STATUS_OVERLOAD if s.overload else 0
        )
        whole = max(-32768, min(32767, round(s.grams))) if math.isfinite(s.grams) else 0
        return [*hi_lo, *f_hi_lo, status, whole & 0xFFFF]

    def answer(
        self, request: ModbusPDU, word_order: str
    ) -> tuple[ModbusPDU | None, bool]:
        """The response to one request (None: stay silent) and whether to spoil its CRC."""
        with self._lock:
            self.requests += 1
            if self._timeouts > 0:
                self._timeouts -= 1
                return None, False
            spoil = self._bad_crc > 0
            if spoil:
                self._bad_crc -= 1
            code = self._exceptions.pop(0) if self._exceptions else None
        fc = request.function_code
        if code is None and fc not in (READ_HOLDING, READ_INPUT):
            code = ILLEGAL_FUNCTION
        address, count = getattr(request, "address", 0), getattr(request, "count", 0)
        if code is None and not (1 <= count and address + count <= REGISTER_COUNT):
            code = ILLEGAL_ADDRESS
        if code is not None:
            return ExceptionResponse(fc, code, device_id=self.unit_id), spoil
        values = self.registers(word_order)[address : address + count]
        kind = (
            ReadHoldingRegistersResponse
            if fc == READ_HOLDING
            else ReadInputRegistersResponse
        )
        return kind(registers=values, dev_id=self.unit_id), spoil


class SimulatedModbusBus:
    """Indicators on one bus: RTU on a pty (``.port``) or Modbus TCP on a free port (``.url``)."""

    def __init__(
        self,
        transport: Transport = "rtu",
        *,
        clock: Clock = REAL_CLOCK,
        word_order: str = "big",
        workdir: Path | None = None,
        name: str = "modbus",
    ) -> None:
        if transport not in ("rtu", "tcp"):
            raise ValueError(f"unknown transport {transport!r}")
        if word_order not in ("big", "little"):
            raise ValueError(f"unknown word order {word_order!r}")
        self.transport: Transport = transport
        self.word_order = word_order
        self._clock = clock
        self.units: dict[int, SimulatedUnit] = {}
        self._own_workdir = workdir is None
        self._workdir = (
            Path(tempfile.mkdtemp(prefix="jitstock-modbus-"))
            if workdir is None
            else workdir
        )
        self._pty = PtyPort(self._workdir / f"{name}.port")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: socketserver.ThreadingTCPServer | None = None
        self.frames_bad = 0

    def add_unit(self, unit_id: int, bin: str, **kwargs: object) -> SimulatedUnit:
        """Put an indicator with ``unit_id`` on the bus (kwargs: see SimulatedUnit)."""
        if not 1 <= unit_id <= 247:
            raise ValueError(f"unit id {unit_id} outside 1..247")
        if unit_id in self.units:
            raise ValueError(f"unit id {unit_id} is already on the bus")
        unit = SimulatedUnit(unit_id, bin, clock=self._clock, **kwargs)  # type: ignore[arg-type]
        self.units[unit_id] = unit
        return unit

    @property
    def port(self) -> str:
        """RTU: the stable symlink to the pty slave (like /dev/serial/by-id/...)."""
        return str(self._pty.link)

    @property
    def url(self) -> str:
        """TCP: ``tcp://127.0.0.1:<port>`` as jitstock-edge's config takes it."""
        if self._server is None:
            raise RuntimeError("the TCP bus is not started")
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"

    @property
    def address(self) -> str:
        """What a ``[[scales]]`` port key names: the pty path (RTU) or the URL (TCP)."""
        return self.port if self.transport == "rtu" else self.url

    # -- RTU ----------------------------------------------------------------------------

    def unplug(self) -> None:
        """RTU: pull the USB-RS485 adapter (the symlink disappears)."""
        self._pty.close()

    def replug(self) -> None:
        """RTU: plug it back in on the same path."""
        if not self._pty.is_open:
            self._pty.open()

    def _rtu_loop(self) -> None:
        framer = FramerRTU(DecodePDU(is_server=True))
        buf = b""
        while not self._stop.is_set():
            data = self._pty.read(READ_POLL_S)
            if not data:
                buf = b""  # a gap ends a frame (RTU's 3.5 character silence)
                continue
            buf += data
            while buf:
                try:
                    used, pdu = framer.handleFrame(buf, 0, 0)
                except Exception:  # a request pymodbus cannot decode: line noise
                    used, pdu = len(buf), None
                    self.frames_bad += 1
                if used == 0:
                    break
                buf = buf[used:]
                if pdu is not None:
                    self._rtu_answer(framer, pdu)
            if len(buf) > MAX_REQUEST_BYTES:
                buf = b""
                self.frames_bad += 1

    def _rtu_answer(self, framer: FramerRTU, request: ModbusPDU) -> None:
        unit = self.units.get(request.dev_id)
        if unit is None:
            return  # nobody on the bus has this id: silence, as on RS-485
        try:
            response, spoil = unit.answer(request, self.word_order)
        except Exception:
            log.exception("simulated indicator %d: answer failed", request.dev_id)
            return
        if response is None:
            return
        frame = framer.buildFrame(response)
        if spoil:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        self._pty.write(frame)

    # -- TCP ----------------------------------------------------------------------------

    def _tcp_server(self) -> socketserver.ThreadingTCPServer:
        bus = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                framer = FramerSocket(DecodePDU(is_server=True))
                conn: socket.socket = self.request
                conn.settimeout(READ_POLL_S)
                buf = b""
                while not bus._stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                    while buf:
                        try:
                            used, pdu = framer.handleFrame(buf, 0, 0)
                        except Exception:
                            used, pdu = len(buf), None
                            bus.frames_bad += 1
                        if used == 0:
                            break
                        buf = buf[used:]
                        if pdu is not None:
                            bus._tcp_answer(conn, framer, pdu)
                    if len(buf) > MAX_REQUEST_BYTES:
                        return  # a client speaking something else: hang up

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        return Server(("127.0.0.1", 0), Handler)

    def _tcp_answer(
        self, conn: socket.socket, framer: FramerSocket, request: ModbusPDU
    ) -> None:
        unit = self.units.get(request.dev_id)
        response: ModbusPDU | None
        if unit is None:
            response = ExceptionResponse(
                request.function_code, GATEWAY_NO_TARGET, device_id=request.dev_id
            )
        else:
            response, _spoil = unit.answer(request, self.word_order)  # no CRC on TCP
        if response is None:
            return
        response.transaction_id = request.transaction_id
        with contextlib.suppress(OSError):
            conn.sendall(framer.buildFrame(response))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Open the pty (RTU) or listen on a free port (TCP) and start answering."""
        if self.transport == "rtu":
            self._workdir.mkdir(parents=True, exist_ok=True)
            self._pty.open()
            target = self._rtu_loop
        else:
            self._server = self._tcp_server()
            server = self._server

            def target() -> None:
                server.serve_forever(poll_interval=READ_POLL_S)

        self._thread = threading.Thread(
            target=target, name=f"sim-modbus-{self.transport}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering, release the pty or the port, remove a temp workdir."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self._pty.close()
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> SimulatedModbusBus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
