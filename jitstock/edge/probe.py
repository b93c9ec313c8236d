"""probe_port: find out what a serial port speaks (for `jitstock-edge check-port`)."""

from __future__ import annotations

import time
from typing import Any

import serial

from jitstock.edge.frames import (
    SICS_REQUEST,
    FrameError,
    parse_sics_response,
    parse_stream_line,
)
from jitstock.edge.scanner import decode_code, split_lines

# Share of the timeout spent listening for a continuous stream before asking with SICS `S`:
# a streaming head sends several frames a second, so a second of silence is conclusive.
LISTEN_SHARE = 0.5
MAX_LISTEN_S = 1.5


def _collect(port: Any, seconds: float, want: int) -> list[bytes]:
    """Lines received within `seconds` (stops early after `want` lines)."""
    buf = bytearray()
    lines: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(lines) < want:
        chunk = port.read(port.in_waiting or 1)
        if chunk:
            buf += chunk
            lines += split_lines(buf)
    return lines


def _weights(lines: list[bytes], parse: Any) -> tuple[list[str], dict[str, int]]:
    ok: list[str] = []
    bad: dict[str, int] = {}
    for line in lines:
        try:
            frame = parse(line)
        except FrameError as exc:
            bad[exc.reason] = bad.get(exc.reason, 0) + 1
            continue
        ok.append(f"{frame.grams:.1f} g {'stable' if frame.stable else 'moving'}")
    return ok, bad


def probe_port(port: str, timeout_s: float = 3.0, baudrate: int = 9600) -> str:
    """Listen briefly, then try a SICS `S` request; describe what the port speaks."""
    try:
        ser: Any = serial.serial_for_url(port, baudrate=baudrate, timeout=0.05)
    except (serial.SerialException, OSError, ValueError) as exc:
        return f"{port}: cannot open: {exc}"
    try:
        listen_s = min(MAX_LISTEN_S, timeout_s * LISTEN_SHARE)
        lines = _collect(ser, listen_s, want=10)
        if lines:
            ok, bad = _weights(lines, parse_stream_line)
            if ok:
                extra = f" ({sum(bad.values())} bad lines: {bad})" if bad else ""
                return (
                    f"{port}: continuous stream scale (protocol=stream), {len(ok)} frames in "
                    f"{listen_s:.1f} s, last {ok[-1]}, e.g. {lines[-1]!r}{extra}"
                )
            codes = [c for c in (decode_code(x) for x in lines) if c is not None]
            if codes:
                return (
                    f"{port}: sends text lines that are not scale frames - a barcode scanner? "
                    f"e.g. {codes[0]!r}"
                )
            return f"{port}: sends unreadable data ({len(lines)} lines) - wrong baud rate? e.g. {lines[0][:40]!r}"
        ser.reset_input_buffer()
        ser.write(SICS_REQUEST)
        answers = _collect(ser, max(0.2, timeout_s - listen_s), want=1)
        if answers:
            ok, bad = _weights(answers, parse_sics_response)
            if ok:
                return f"{port}: MT-SICS scale (protocol=sics), answered S with {answers[0]!r}: {ok[0]}"
            if bad.keys() - {"garbage"}:
                return (
                    f"{port}: MT-SICS scale (protocol=sics) answering {answers[0]!r} "
                    f"({', '.join(bad)}) - check the scale's display"
                )
            return f"{port}: answered S with something unknown: {answers[0][:40]!r}"
        return f"{port}: silent - no data within {listen_s:.1f} s and no answer to SICS 'S' (cable, power, baud rate?)"
    except (serial.SerialException, OSError) as exc:
        return f"{port}: port failed while probing: {exc}"
    finally:
        ser.close()
