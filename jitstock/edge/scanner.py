"""ScannerReader: a serial barcode scanner's CR/LF-terminated lines, delivered as scans.

Lines with control bytes (line noise) or longer than the wire contract allows are
counted and dropped (an overlong line whole, up to its CR/LF: its tail is no code).
GS (0x1D) is no noise: it is the FNC1 separator of a GS1 label (a GTIN with a lot
number, a count) and stays in the code, with any AIM symbology identifier (``]C1``,
``]d2``) the scanner sends: the server interprets both (docs/protocol.md).  The length
limit is the contract's, in characters (a code of 256 ``ß`` is 512 bytes).  A vanished
port is reopened with capped exponential backoff (edge/scan_reader.py, shared with the
HID scanner's reader).  The port is opened exclusively (pyserial ``exclusive=True``, a
flock on the device): a second agent or ``check-port`` cannot steal the scanner's lines.
"""

from __future__ import annotations

import termios
from typing import Any

import serial

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.scan_reader import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    DeviceGone,
    ScanReader,
    ScanSink,
    trim_code,
)
from jitstock.protocol import MAX_CODE_LEN, valid_code

# Real seconds one read may block: bounds stop() latency.
READ_TIMEOUT_S = 0.1
# UTF-8 continuation bytes: a line's characters are its bytes less these (a line longer
# than MAX_CODE_LEN characters is garbage before its end is seen, its tail skipped).
_CONTINUATION = bytes(range(0x80, 0xC0))


def line_chars(buf: bytes | bytearray) -> int:
    """How many characters the UTF-8 bytes in ``buf`` are (an invalid byte counts one)."""
    return len(bytes(buf).translate(None, _CONTINUATION))


def split_lines(buf: bytearray) -> list[bytes]:
    """Remove and return the complete CR- or LF-terminated lines in buf (empty ones skipped)."""
    lines: list[bytes] = []
    start = 0
    for i, b in enumerate(buf):
        if b in (0x0A, 0x0D):
            if i > start:
                lines.append(bytes(buf[start:i]))
            start = i + 1
    del buf[:start]
    return lines


def _line_end(buf: bytearray) -> int:
    """Index of the first CR or LF in buf, -1 when there is none."""
    ends = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
    return min(ends, default=-1)


def decode_code(line: bytes) -> str | None:
    """The code in one line, blanks at its ends trimmed, or None when it is garbage
    (not UTF-8, a control character other than GS, nothing but GS, over MAX_CODE_LEN
    characters): :func:`jitstock.protocol.valid_code`."""
    if not line or len(line) > 4 * MAX_CODE_LEN:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) > MAX_CODE_LEN:  # blanks included, as the unfinished line's count
        return None
    text = trim_code(text)
    return text if valid_code(text) else None


class ScannerReader(ScanReader[Any]):
    """Reads one serial scanner port in a daemon thread."""

    KIND = "scanner"
    # termios.error: the driver refuses the line settings (pyserial passes it through)
    OPEN_ERRORS = (serial.SerialException, OSError, ValueError, termios.error)

    def __init__(
        self,
        port: str,
        scanner_id: str,
        sink: ScanSink,
        clock: Clock = REAL_CLOCK,
        baudrate: int = 9600,
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        super().__init__(
            port,
            scanner_id,
            sink,
            clock,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
        )
        self._baudrate = baudrate

    def _open(self) -> Any:
        # a pyserial URL (socket://, rfc2217://) cannot be locked
        extra: dict[str, Any] = {} if "://" in self.port else {"exclusive": True}
        return serial.serial_for_url(
            self.port, baudrate=self._baudrate, timeout=READ_TIMEOUT_S, **extra
        )

    def _close(self, handle: Any) -> None:
        handle.close()

    def _serve(self, port: Any) -> None:
        buf = bytearray()
        # after an overlong line: drop what follows up to its CR/LF, or its tail would
        # be delivered as a code nobody scanned
        skipping = False
        while not self._stop.is_set():
            try:
                chunk = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                raise DeviceGone(str(exc)) from exc
            if not chunk:
                continue
            buf += chunk
            if skipping:
                end = _line_end(buf)
                if end < 0:
                    buf.clear()
                    continue
                del buf[:end]  # the terminator stays: split_lines skips the empty line
                skipping = False
            for line in split_lines(buf):
                self._handle(line)
            if line_chars(buf) > MAX_CODE_LEN:
                buf.clear()
                skipping = True
                self._garbage("a line longer than a code may be")

    def _handle(self, line: bytes) -> None:
        code = decode_code(line)
        if code is None:
            self._garbage(repr(line[:40]))
        else:
            self._deliver(code)
