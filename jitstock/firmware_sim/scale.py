"""SimulatedScale: a scale controller on a pseudo-terminal speaking the stream or SICS protocol.

Frames come from a :class:`~jitstock.firmware_sim.loadcell.LoadCell` driven by the
scale's clock, so a ScaledClock shared with the reader makes it faster than real time.
Faults on demand: unplug/replug, garbage bytes, spikes, error frames, frozen value,
a swaying load that never settles.

Continuous-output formats (``stream_format``, one example line each in docs/scales.md):
``"gs"`` ``ST,GS,+0001234.5 g`` (gross), ``"nt"`` ``ST,NT,+0000734.5 g`` (net: the
bin's tare subtracted, as after pressing the indicator's tare key), ``"ad"`` the A&D
standard format ``ST,+001234.5  g``, ``"toledo"`` Mettler Toledo continuous output
(STX, three status bytes, weight and tare digits, CR, checksum).

MT-SICS: ``SI`` answers at once (``S S`` or ``S D``). ``S`` asks for a *stable*
weight; a real scale holds the answer until the load settles and gives ``S I``
after its stability timeout. ``sics_stable_timeout_s`` switches that behaviour
on; ``None`` (the default) answers ``S`` at once like ``SI``.
"""

from __future__ import annotations

import logging
import math
import random
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Literal

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.firmware_sim.loadcell import DEFAULT_COUNTS_PER_GRAM, LoadCell, Sample
from jitstock.firmware_sim.pty_port import PtyPort

log = logging.getLogger(__name__)

ScaleProtocol = Literal["stream", "sics"]
Unit = Literal["g", "kg", "lb"]
StreamFormat = Literal["gs", "nt", "ad", "toledo"]
STREAM_FORMATS = ("gs", "nt", "ad", "toledo")

UNIT_GRAMS = {"g": 1.0, "kg": 1000.0, "lb": 453.59237}
# display resolution per unit (decimals): 0.1 g, 0.1 g in kg, ~0.05 g in lb
UNIT_DECIMALS = {"g": 1, "kg": 4, "lb": 4}
# Share of frames hit by a spike while spikes are on, and their size range (EMI on a long cable).
SPIKE_PROBABILITY = 0.15
SPIKE_RANGE_G = (50.0, 400.0)
# Real seconds the request-reading thread waits per select: bounds stop() latency.
READ_POLL_S = 0.05
# Stream writers fall this many frames behind before skipping ahead instead of bursting.
MAX_FRAMES_BEHIND = 5
# Answers after a replug are `S I` (busy) while the controller boots.
BOOT_BUSY_ANSWERS = 1
# A swaying load (someone leaning on the bin, a conveyor beside it): amplitude and frequency,
# well above any stability spread, slow enough that 10 Hz frames show it.
SWAY_AMPLITUDE_G = 40.0
SWAY_HZ = 1.3
# Toledo continuous output: status word bits (SWA decimal point code, SWB flags, SWC units).
TOLEDO_SWA_DECIMALS = {0: 0b010, 1: 0b011, 2: 0b100, 3: 0b101, 4: 0b110}
TOLEDO_SWA_BASE = 0b0010_1000  # bit 5 always set, increment size x1 (bits 3-4 = 01)
TOLEDO_SWB_BASE = 0b0010_0000  # bit 5 always set
(
    TOLEDO_SWB_NET,
    TOLEDO_SWB_NEGATIVE,
    TOLEDO_SWB_RANGE,
    TOLEDO_SWB_MOTION,
    TOLEDO_SWB_KG,
) = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
)
TOLEDO_SWC_BASE = 0b0010_0000  # bit 5 always set
TOLEDO_SWC_GRAMS = 0b001

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class SimulatedScale:
    """One simulated scale on a pty; `.port` is a symlink that survives unplug/replug."""

    def __init__(
        self,
        bin: str,
        protocol: ScaleProtocol = "stream",
        *,
        unit_weight_g: float = 12.5,
        count: int = 100,
        tare_g: float = 500.0,
        unit: Unit = "g",
        noise_counts: float = 20.0,
        drift_g_per_h: float = 0.0,
        settle_s: float = 0.4,
        rate_hz: float = 10.0,
        clock: Clock = REAL_CLOCK,
        seed: int = 0,
        workdir: Path | None = None,
        counts_per_gram: float = DEFAULT_COUNTS_PER_GRAM,
        stream_format: StreamFormat = "gs",
        sics_stable_timeout_s: float | None = None,
    ) -> None:
        if protocol not in ("stream", "sics"):
            raise ValueError(f"unknown protocol {protocol!r}")
        if unit not in UNIT_GRAMS:
            raise ValueError(f"unknown unit {unit!r}")
        if stream_format not in STREAM_FORMATS:
            raise ValueError(f"unknown stream format {stream_format!r}")
        self.stream_format: StreamFormat = stream_format
        self.sics_stable_timeout_s = sics_stable_timeout_s
        self._sway = False
        self.bin = bin
        self.protocol: ScaleProtocol = protocol
        self.unit: Unit = unit
        self.unit_weight_g = unit_weight_g
        self.tare_g = tare_g
        self.rate_hz = rate_hz
        self._clock = clock
        self._rng = random.Random(seed ^ 0x5CA1E)
        self._lock = threading.Lock()
        self._count = count
        self._cell = LoadCell(
            self._gross(count),
            counts_per_gram=counts_per_gram,
            noise_counts=noise_counts,
            drift_g_per_h=drift_g_per_h,
            settle_s=settle_s,
            seed=seed,
            t0=clock.monotonic(),
        )
        self._own_workdir = workdir is None
        self._workdir = (
            Path(tempfile.mkdtemp(prefix="jitstock-sim-"))
            if workdir is None
            else workdir
        )
        self._pty = PtyPort(self._workdir / f"{_SAFE_NAME.sub('_', bin)}.port")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors_pending = 0
        self._spikes = False
        self._frozen: bytes | None = None
        self._freeze = False
        self._busy_answers = 0
        self.frames_sent = 0

    # -- state --------------------------------------------------------------------------

    def _gross(self, count: int) -> float:
        return self.tare_g + count * self.unit_weight_g

    @property
    def port(self) -> str:
        """Path of the stable symlink to the current pty slave (like /dev/serial/by-id/...)."""
        return str(self._pty.link)

    @property
    def count(self) -> int:
        """Parts in the bin."""
        return self._count

    @property
    def gross_g(self) -> float:
        """True gross load on the platform (bin plus parts), without noise."""
        return self._gross(self._count)

    @property
    def plugged(self) -> bool:
        """False between unplug() and replug()."""
        return self._pty.is_open

    def set_count(self, n: int) -> None:
        """Put exactly n parts in the bin (the load rings, then settles)."""
        with self._lock:
            self._count = max(0, int(n))
            self._cell.set_load(self._gross(self._count), self._clock.monotonic())

    def pick(self, n: int = 1) -> int:
        """Take n parts out (fewer if the bin runs dry); returns how many were taken."""
        with self._lock:
            taken = min(max(0, n), self._count)
        self.set_count(self._count - taken)
        return taken

    def refill(self, n: int) -> None:
        """Put n parts in."""
        self.set_count(self._count + n)

    # -- faults -------------------------------------------------------------------------

    def unplug(self) -> None:
        """Pull the cable: the pty closes and the symlink disappears."""
        self._pty.close()

    def replug(self) -> None:
        """Plug back in: a new pty behind the same symlink; the controller is busy while it boots."""
        if not self._pty.is_open:
            self._busy_answers = BOOT_BUSY_ANSWERS
            self._pty.open()

    def inject_garbage(self, nbytes: int = 32) -> None:
        """Write nbytes of line noise (no CR/LF, so it spoils the next frame too)."""
        data = bytes(self._rng.choice(range(256)) for _ in range(nbytes))
        self._pty.write(data.replace(b"\n", b"\x00").replace(b"\r", b"\x00"))

    def error_frames(self, n: int) -> None:
        """Make the next n frames (stream) or answers (sics) error frames."""
        with self._lock:
            self._errors_pending += n

    def spikes(self, on: bool) -> None:
        """Switch random single-frame spikes on or off."""
        self._spikes = on

    def sway(self, on: bool) -> None:
        """Make the load sway (never stable) or let it settle again."""
        with self._lock:
            self._sway = on

    def freeze(self, on: bool) -> None:
        """Freeze the displayed value (a hung ADC keeps repeating its last frame)."""
        with self._lock:
            self._freeze = on
            if not on:
                self._frozen = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Create the pty and start the threads."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._pty.open()
        self._threads = [
            threading.Thread(
                target=self._read_loop, name=f"sim-{self.bin}-rx", daemon=True
            )
        ]
        if self.protocol == "stream":
            self._threads.append(
                threading.Thread(
                    target=self._write_loop, name=f"sim-{self.bin}-tx", daemon=True
                )
            )
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the threads, close the pty and remove a temp workdir."""
        self._stop.set()
        for t in self._threads:
            t.join(5.0)
        self._threads = []
        self._pty.close()
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> SimulatedScale:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- frames -------------------------------------------------------------------------

    def _sample(self) -> Sample:
        with self._lock:
            t = self._clock.monotonic()
            s = self._cell.sample(t)
            if self._sway:
                swing = SWAY_AMPLITUDE_G * math.sin(2 * math.pi * SWAY_HZ * t)
                s = Sample(s.grams + swing, False, s.overload)
        if self._spikes and self._rng.random() < SPIKE_PROBABILITY:
            size = self._rng.uniform(*SPIKE_RANGE_G) * self._rng.choice((-1.0, 1.0))
            s = Sample(s.grams + size, s.stable, s.overload)
        return s

    def _value(self, grams: float) -> float:
        return round(grams / UNIT_GRAMS[self.unit], UNIT_DECIMALS[self.unit])

    def stream_frame(self) -> bytes:
        """The next stream frame, e.g. b'ST,GS,+0001234.5 g\\r\\n' (see ``stream_format``)."""
        with self._lock:
            if self._errors_pending > 0:
                self._errors_pending -= 1
                return b"ER,01\r\n"
            frozen = self._frozen
        if frozen is not None:
            return frozen
        s = self._sample()
        grams = s.grams - self.tare_g if self.stream_format == "nt" else s.grams
        frame = self._format(grams, s.stable, s.overload)
        self._maybe_freeze(frame)
        return frame

    def _format(self, grams: float, stable: bool, overload: bool) -> bytes:
        d = UNIT_DECIMALS[self.unit]
        value = self._value(grams)
        status = "OL" if overload else ("ST" if stable else "US")
        if self.stream_format == "toledo":
            return self._toledo(value, d, stable, overload)
        if self.stream_format == "ad":
            # A&D: header, 9-character signed value, 3-character right-aligned unit
            return f"{status},{value:+0{9}.{min(d, 3)}f}{self.unit:>3}\r\n".encode()
        kind = "NT" if self.stream_format == "nt" else "GS"
        return f"{status},{kind},{value:+0{10}.{d}f} {self.unit}\r\n".encode()

    def _toledo(self, value: float, decimals: int, stable: bool, over: bool) -> bytes:
        """Mettler Toledo continuous output: STX SWA SWB SWC, 6 weight + 6 tare digits, CR, checksum."""
        d = min(decimals, 3)
        digits = round(abs(value) * 10**d)
        if digits > 999_999:
            digits, over = 999_999, True
        swa = TOLEDO_SWA_BASE | TOLEDO_SWA_DECIMALS[d]
        swb = TOLEDO_SWB_BASE
        swb |= TOLEDO_SWB_NEGATIVE if value < 0 else 0
        swb |= TOLEDO_SWB_RANGE if over else 0
        swb |= 0 if stable else TOLEDO_SWB_MOTION
        swb |= TOLEDO_SWB_KG if self.unit == "kg" else 0
        swc = TOLEDO_SWC_BASE | (TOLEDO_SWC_GRAMS if self.unit == "g" else 0)
        body = bytes((0x02, swa, swb, swc)) + f"{digits:06d}000000\r".encode()
        checksum = (-sum(body)) & 0x7F  # 7-bit two's complement of the sum
        return body + bytes((checksum,))

    def sics_answer(self, command: bytes) -> bytes:
        """The answer to one SICS command line (without terminator), given at once."""
        cmd = command.strip().upper()
        if cmd not in (b"S", b"SI"):
            return b"ES\r\n"
        with self._lock:
            if self._busy_answers > 0:
                self._busy_answers -= 1
                return b"S I\r\n"
            if self._errors_pending > 0:
                self._errors_pending -= 1
                return b"EL\r\n"
            frozen = self._frozen
        if frozen is not None:
            return frozen
        s = self._sample()
        if s.overload:
            return b"S +\r\n" if s.grams > 0 else b"S -\r\n"
        d = UNIT_DECIMALS[self.unit]
        flag = "S" if s.stable else "D"
        answer = f"S {flag} {self._value(s.grams):>11.{d}f} {self.unit}\r\n".encode()
        self._maybe_freeze(answer)
        return answer

    def _maybe_freeze(self, frame: bytes) -> None:
        with self._lock:
            if self._freeze and self._frozen is None:
                self._frozen = frame

    def _send(self, data: bytes) -> None:
        if self._pty.write(data):
            self.frames_sent += 1

    def _write_loop(self) -> None:
        clock = self._clock
        period = 1.0 / self.rate_hz
        next_t = clock.monotonic()
        while not self._stop.is_set():
            if self._pty.is_open:
                try:
                    self._send(self.stream_frame())
                except Exception:  # a simulator bug must not silence the scale
                    log.exception("simulated scale %s: frame failed", self.bin)
            next_t += period
            now = clock.monotonic()
            if now - next_t > period * MAX_FRAMES_BEHIND:
                next_t = now  # fell behind (a loaded machine): skip frames, never burst
            clock.sleep(next_t - now)

    def _stable_now(self) -> bool:
        with self._lock:
            return (
                not self._sway
                and self._cell.sample(self._clock.monotonic()).stable
                and self._busy_answers == 0
            )

    def _answer_held_s(self, since: float | None) -> float | None:
        """Answer a held `S` once the load settled (or `S I` after the timeout); the new hold."""
        if since is None or self.sics_stable_timeout_s is None:
            return None
        if self._stable_now():
            self._send(self.sics_answer(b"S"))
            return None
        if self._clock.monotonic() - since >= self.sics_stable_timeout_s:
            self._send(b"S I\r\n")
            return None
        return since

    def _read_loop(self) -> None:
        buf = bytearray()
        held_s: float | None = None  # when a strict `S` started waiting for stability
        while not self._stop.is_set():
            data = self._pty.read(READ_POLL_S)
            if self.protocol != "sics":
                continue  # stream scales ignore what they are sent
            try:
                held_s = self._answer_held_s(held_s)
            except Exception:
                log.exception("simulated scale %s: held answer failed", self.bin)
                held_s = None
            if not data:
                continue
            buf += data
            while True:
                end = next((i for i, b in enumerate(buf) if b in (0x0A, 0x0D)), -1)
                if end < 0:
                    break
                line = bytes(buf[:end])
                del buf[: end + 1]
                if line.strip():
                    try:
                        if (
                            line.strip().upper() == b"S"
                            and self.sics_stable_timeout_s is not None
                            and not self._stable_now()
                        ):
                            held_s = held_s or self._clock.monotonic()
                            continue
                        self._send(self.sics_answer(line))
                    except Exception:
                        log.exception("simulated scale %s: answer failed", self.bin)
            if len(buf) > 256:
                buf.clear()
