"""probe_port: find out what a serial port speaks (for `jitstock-edge check-port`).

The probe opens the port exclusively (a port the agent holds is refused, never
read from), listens for a continuous stream, and when the port is silent asks
MT-SICS ``SI`` (answered at once, even while the load moves), then ``S``, then
a Modbus RTU read of one unit (edge/probe_modbus.py; ``tcp://host[:port]`` is
probed as Modbus TCP).
Each known output format is one :data:`VARIANTS` entry; docs/scales.md shows the
same table to people.

Exit codes of `check-port` (:attr:`Diagnosis.exit_code`)::

    EXIT_IDENTIFIED  0  a scale or scanner jitstock-edge reads; the text says how to configure it
    EXIT_UNKNOWN     1  silent, unreadable, or a format jitstock-edge does not read
    EXIT_NO_PORT     2  the port cannot be opened: missing, no permission, or in use
"""

from __future__ import annotations

import errno
import os
import re
import termios
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial

from jitstock.edge.frames import (
    UNIT_GRAMS,
    FrameError,
    parse_sics_response,
    parse_stream_line,
)
from jitstock.edge.probe_modbus import (
    MODBUS_WAIT_S,
    ask_rtu,
    describe_answer,
    probe_tcp,
)
from jitstock.edge.registers import TCP_PREFIX
from jitstock.edge.scanner import decode_code, split_lines

EXIT_IDENTIFIED, EXIT_UNKNOWN, EXIT_NO_PORT = 0, 1, 2
# Linux input devices (evdev): HID scanners, read by the agent, never by check-port.
INPUT_DEVICES = "/dev/input/"

# Share of the timeout spent listening for a continuous stream before asking MT-SICS:
# a streaming head sends several frames a second, so a second of silence is conclusive.
LISTEN_SHARE = 0.5
MAX_LISTEN_S = 1.5
# Of what is left after listening, this share waits for the answer to `SI` (answered at
# once by any MT-SICS scale); the rest waits for `S`, which a scale may hold until stable.
SI_SHARE = 0.5
# Enough frames to name the format with confidence; stop listening early after these.
WANT_FRAMES = 10
# Bytes of a line shown in a diagnosis.
SHOW_BYTES = 40
# errnos of an open() or flock() on a port another process holds (TIOCEXCL or flock).
IN_USE_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK})

SI_REQUEST = b"SI\r\n"
S_REQUEST = b"S\r\n"


@dataclass(frozen=True, slots=True)
class Variant:
    """One output format a scale head may speak; `protocol` is None when the agent cannot read it."""

    key: str
    title: str
    example: bytes
    protocol: str | None
    note: str = ""


# The table of docs/scales.md (tests/edge/test_probe_formats.py keeps the two in step).
VARIANTS: tuple[Variant, ...] = (
    Variant(
        "gs",
        "continuous output, gross (ST/US/OL, GS)",
        b"ST,GS,+0001234.5 g",
        "stream",
    ),
    Variant(
        "gs",
        "continuous output, gross, unit without a space",
        b"ST,GS,+0001.234kg",
        "stream",
    ),
    Variant(
        "nt",
        "continuous output, net (NT)",
        b"ST,NT,+0000734.5 g",
        "stream",
        'net weight: refused unless net_weight = "add_tare" with tare_g; lock the '
        "indicator's tare key (docs/scales.md, 'Net and gross')",
    ),
    Variant(
        "ad",
        "A&D standard format (no GS/NT field)",
        b"ST,+001234.5  g",
        "stream",
    ),
    Variant(
        "toledo",
        "Mettler Toledo continuous output (status bytes)",
        b"\x02+ !012345000000\r",  # STX, status bytes, weight and tare digits, CR
        None,
        "jitstock-edge does not read it: set the terminal's port to MT-SICS or to "
        "an ST,GS line format",
    ),
    Variant(
        "sics",
        "MT-SICS, answer to SI or S",
        b"S S      1234.5 g",
        "sics",
        "MT-SICS weights are net: keep the scale's tare at zero (lock the tare key) "
        "or set tare_g (docs/scales.md, 'Net and gross')",
    ),
)
_BY_KEY = {v.key: v for v in reversed(VARIANTS)}  # the first entry of a key names it

_LINE_PATTERNS = (
    ("gs", re.compile(rb"^(ST|US|OL),GS,")),
    ("nt", re.compile(rb"^(ST|US|OL),NT,")),
    ("ad", re.compile(rb"^(ST|US|OL|QT),[+-]")),
)
# STX, three status bytes (bit 5 set), six weight and six tare digits (leading spaces allowed), CR
_TOLEDO_RE = re.compile(rb"\x02([\x20-\x3f\x60-\x7f]{3})([ 0-9]{6})([ 0-9]{6})\r")
# a number with a weight unit somewhere in the line: a scale in a format we do not know
_WEIGHTISH_RE = re.compile(rb"[+-]?\d+(?:\.\d+)?\s*(?:g|kg|lb|oz|t)\b", re.IGNORECASE)
_STATE_RE = re.compile(rb"^(ST|US|OL|QT),")
_UNIT_RE = re.compile(rb"(g|kg|lb)\s*$")


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a port speaks: one line for people and the exit code for scripts."""

    text: str
    exit_code: int
    variant: str | None = None

    @property
    def identified(self) -> bool:
        """True when jitstock-edge can read what was found."""
        return self.exit_code == EXIT_IDENTIFIED


def _show(line: bytes) -> str:
    return repr(line[:SHOW_BYTES]) + ("..." if len(line) > SHOW_BYTES else "")


def _collect(port: Any, seconds: float, want_lines: int) -> bytes:
    """Raw bytes received within `seconds` (stops early after `want_lines` line ends)."""
    buf = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = port.read(port.in_waiting or 1)
        if chunk:
            buf += chunk
            if max(buf.count(b"\n"), buf.count(b"\r")) >= want_lines:
                break
    return bytes(buf)


def _holders(port: str) -> list[str]:
    """'pid N (name)' of the processes that have the device open (those /proc lets us see)."""
    try:
        device = os.path.realpath(port)
    except OSError:
        return []
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == device for fd in fd_dir.iterdir()):
                pid = fd_dir.parent.name
                name = (fd_dir.parent / "comm").read_text().strip()
                found.append(f"pid {pid} ({name})")
        except OSError:
            continue  # another user's process, or it just ended
    return [h for h in found if not h.startswith(f"pid {os.getpid()} ")]


def _open(port: str, baudrate: int, parity: str = "N") -> Any:
    """The port opened exclusively; Diagnosis-ready SerialException when it cannot be."""
    return serial.serial_for_url(
        port, baudrate=baudrate, parity=parity, timeout=0.05, exclusive=True
    )


def _cannot_open(port: str, exc: Exception) -> Diagnosis:
    code = getattr(exc, "errno", None)
    if code in IN_USE_ERRNOS:
        who = _holders(port)
        by = f" ({', '.join(who)})" if who else ""
        return Diagnosis(
            f"{port}: in use by another process{by} (is jitstock-edge running?) - "
            "not probed; stop the service (systemctl stop jitstock-edge) to probe it",
            EXIT_NO_PORT,
        )
    if code == errno.EACCES:
        return Diagnosis(
            f"{port}: permission denied - add the user to group dialout "
            f"(sudo usermod -aG dialout $USER, then log in again): {exc}",
            EXIT_NO_PORT,
        )
    return Diagnosis(f"{port}: cannot open: {exc}", EXIT_NO_PORT)


def _toledo(port: str, raw: bytes) -> Diagnosis | None:
    frames = _TOLEDO_RE.findall(raw)
    if not frames:
        return None
    status, weight, _tare = frames[-1]
    swa, swb, swc = status
    decimals = {2: 0, 3: 1, 4: 2, 5: 3, 6: 4, 7: 5}.get(swa & 0x07, 0)
    value = int(weight.replace(b" ", b"0") or b"0") / 10**decimals
    value = -value if swb & 0x02 else value
    unit = "g" if swc & 0x07 == 0b001 else ("kg" if swb & 0x10 else "lb")
    state = "out of range" if swb & 0x04 else ("moving" if swb & 0x08 else "stable")
    net = ", net" if swb & 0x01 else ""
    v = _BY_KEY["toledo"]
    return Diagnosis(
        f"{port}: {v.title}, {len(frames)} frames, last {value:.{decimals}f} {unit} "
        f"{state}{net} - {v.note}",
        EXIT_UNKNOWN,
        "toledo",
    )


def _stream(port: str, lines: list[bytes], listen_s: float) -> Diagnosis | None:
    """A continuous-output diagnosis when most lines are frames of one known variant."""
    kinds: dict[str, int] = {}
    for line in lines:
        text = line.strip(b" ")
        for key, pattern in _LINE_PATTERNS:
            if pattern.match(text):
                kinds[key] = kinds.get(key, 0) + 1
                break
    errors = [x for x in lines if x.strip().startswith(b"ER,")]
    if not kinds:
        if errors and len(errors) == len(lines):
            return Diagnosis(
                f"{port}: continuous output, but only error frames, e.g. {_show(errors[-1])} - "
                "check the scale's display",
                EXIT_UNKNOWN,
            )
        return None
    key = max(kinds, key=lambda k: kinds[k])
    v = _BY_KEY[key]
    ok: list[tuple[float, bool]] = []
    bad: dict[str, int] = {}
    states: dict[str, int] = {}
    units: set[str] = set()
    for line in lines:
        text = line.strip(b" ")
        state = _STATE_RE.match(text)
        if state:
            states[state.group(1).decode()] = states.get(state.group(1).decode(), 0) + 1
        unit = _UNIT_RE.search(text)
        if unit:
            units.add(unit.group(1).decode())
        try:
            frame = parse_stream_line(line)
        except FrameError as exc:
            bad[exc.reason] = bad.get(exc.reason, 0) + 1
            continue
        ok.append((frame.grams, frame.stable))
    parts = [
        f"{port}: {v.title} (protocol=stream), {len(lines)} frames in {listen_s:.1f} s",
        "states " + " ".join(f"{s}x{n}" for s, n in sorted(states.items())),
    ]
    if units:
        parts.append("unit " + "/".join(sorted(units)))
    if ok:
        grams, stable = ok[-1]
        parts.append(f"last {grams:.1f} g {'stable' if stable else 'moving'}")
    parts.append(f"e.g. {_show(lines[-1])}")
    if bad:
        parts.append(f"{sum(bad.values())} unusable ({', '.join(sorted(bad))})")
    if ok and not any(stable for _, stable in ok):
        parts.append("no stable frame yet (the load moves?)")
    if v.note:
        parts.append(v.note)
    return Diagnosis(
        "; ".join(parts),
        EXIT_IDENTIFIED if ok else EXIT_UNKNOWN,
        key,
    )


def describe_output(port: str, raw: bytes, listen_s: float) -> Diagnosis:
    """Diagnose what a port sent by itself within `listen_s` (`raw`: the bytes as received)."""
    found = _toledo(port, raw)
    if found is not None:
        return found
    lines = split_lines(bytearray(raw))
    if not lines:
        return Diagnosis(
            f"{port}: sends bytes but no line ends ({len(raw)} bytes) - wrong baud rate? "
            f"e.g. {_show(raw)}",
            EXIT_UNKNOWN,
        )
    found = _stream(port, lines, listen_s)
    if found is not None:
        return found
    weightish = [x for x in lines if _WEIGHTISH_RE.search(x)]
    if len(weightish) * 2 >= len(lines):
        return Diagnosis(
            f"{port}: sends weights in a format jitstock-edge does not know, "
            f"e.g. {_show(weightish[-1])} - see docs/scales.md for the formats it reads",
            EXIT_UNKNOWN,
        )
    codes = [c for c in (decode_code(x) for x in lines) if c is not None]
    if codes and len(codes) * 2 >= len(lines):
        return Diagnosis(
            f"{port}: text lines that are not weights - a barcode scanner ([[scanners]])? "
            f"{len(codes)} codes, e.g. {codes[0]!r}",
            EXIT_IDENTIFIED,
            "scanner",
        )
    return Diagnosis(
        f"{port}: sends unreadable data ({len(lines)} lines) - wrong baud rate? "
        f"e.g. {_show(lines[0])}",
        EXIT_UNKNOWN,
    )


def _sics_answer(port: str, command: str, answer: bytes, listen_s: float) -> Diagnosis:
    """Diagnose one answer to `SI` or `S`."""
    line = answer.strip()
    head = (
        f"{port}: MT-SICS scale (protocol=sics), answered {command} with {_show(line)}"
    )
    try:
        frame = parse_sics_response(line)
    except FrameError as exc:
        if exc.reason == "garbage":
            return Diagnosis(
                f"{port}: silent for {listen_s:.1f} s, then answered {command} with "
                f"something that is not MT-SICS: {_show(line)}",
                EXIT_UNKNOWN,
            )
        hint = {
            "busy": "busy (taring, booting or never stable): ask again when the display is steady",
            "out_of_range": "over- or underload: check what lies on the platform",
            "scale_error": "the scale reports an error: check its display",
        }[exc.reason]
        return Diagnosis(f"{head}: {hint}", EXIT_IDENTIFIED, "sics")
    unit = _UNIT_RE.search(line)
    shown = f"{frame.grams:.1f} g {'stable' if frame.stable else 'moving'}"
    if unit and unit.group(1).decode() != "g":
        shown += f" (sent in {unit.group(1).decode()}, x{UNIT_GRAMS[unit.group(1).decode()]:g})"
    moving = "" if frame.stable else "; the load moves (S waits until it settles)"
    note = _BY_KEY["sics"].note
    return Diagnosis(f"{head}: {shown}{moving}; {note}", EXIT_IDENTIFIED, "sics")


def _ask(ser: Any, request: bytes, seconds: float) -> bytes | None:
    """Send one MT-SICS command; the first answer line within `seconds`, else None."""
    ser.reset_input_buffer()
    ser.write(request)
    lines = split_lines(bytearray(_collect(ser, seconds, want_lines=1)))
    return lines[0] if lines else None


def diagnose(
    port: str,
    timeout_s: float = 3.0,
    baudrate: int = 9600,
    *,
    unit: int = 1,
    register: int = 0,
    parity: str = "N",
) -> Diagnosis:
    """Open `port` exclusively, listen, ask MT-SICS `SI` and `S`, then Modbus RTU `unit`.

    ``tcp://host[:port]`` is a Modbus TCP address: only the Modbus question is asked.
    """
    if port.startswith(INPUT_DEVICES):
        # a USB HID scanner: pyserial would only say "Inappropriate ioctl for device"
        return Diagnosis(
            f"{port}: an input device (a USB HID scanner types like a keyboard), not a "
            'serial port - check-port does not read it: configure [[scanners]] kind = "hid" '
            "with this path and scan a code (docs/connect-devices.md)",
            EXIT_UNKNOWN,
        )
    if port.startswith(TCP_PREFIX):
        text, code = probe_tcp(port, unit, register, timeout_s)
        return Diagnosis(text, code, "modbus" if code == EXIT_IDENTIFIED else None)
    try:
        ser = _open(port, baudrate, parity)
    except (serial.SerialException, OSError, ValueError) as exc:
        return _cannot_open(port, exc)
    except termios.error as exc:
        # pyserial passes the driver's refusal of the line settings through as is
        return Diagnosis(
            f"{port}: the port refuses {baudrate} baud, parity {parity} "
            f"({exc.args[-1]}) - try the indicator's other settings",
            EXIT_NO_PORT,
        )
    try:
        listen_s = min(MAX_LISTEN_S, timeout_s * LISTEN_SHARE)
        raw = _collect(ser, listen_s, want_lines=WANT_FRAMES)
        if raw:
            return describe_output(port, raw, listen_s)
        left = max(0.4, timeout_s - listen_s)
        answers = []
        for command, request, wait_s in (
            ("SI", SI_REQUEST, left * SI_SHARE),
            ("S", S_REQUEST, left * (1 - SI_SHARE)),
        ):
            answer = _ask(ser, request, wait_s)
            if answer is None:
                continue
            answers.append(answer)
            # `ES`: a scale that does not know SI (very old MT-SICS level); `S` is level 0
            if answer.strip() != b"ES":
                return _sics_answer(port, command, answer, listen_s)
        if answers:
            return Diagnosis(
                f"{port}: answers MT-SICS commands with {_show(answers[-1].strip())} - "
                "an MT-SICS device that does not weigh? check its display",
                EXIT_UNKNOWN,
            )
        modbus = ask_rtu(ser, unit, register, MODBUS_WAIT_S)
        if modbus is not None:
            text, ok = describe_answer(port, unit, register, modbus)
            return Diagnosis(text, EXIT_IDENTIFIED if ok else EXIT_UNKNOWN, "modbus")
        return Diagnosis(
            f"{port}: silent - no data within {listen_s:.1f} s, no answer to MT-SICS "
            f"SI or S nor to Modbus RTU unit {unit} at {baudrate} baud, parity {parity} "
            "(cable, power, baud rate, parity, unit id? a scanner sends only when it "
            "scans)",
            EXIT_UNKNOWN,
        )
    except (serial.SerialException, OSError) as exc:
        return Diagnosis(f"{port}: port failed while probing: {exc}", EXIT_NO_PORT)
    finally:
        ser.close()


def probe_port(port: str, timeout_s: float = 3.0, baudrate: int = 9600) -> str:
    """The diagnosis of `port` as one line of text (see :func:`diagnose`)."""
    return diagnose(port, timeout_s, baudrate).text
