"""ScannerReader: a serial barcode scanner's CR/LF-terminated lines, delivered as scans.

Lines with non-printable bytes (line noise) or longer than the wire contract allows
are counted and dropped. A vanished port is reopened with capped exponential backoff.
The port is opened exclusively (pyserial ``exclusive=True``, a flock on the device):
a second agent or ``check-port`` cannot steal the scanner's lines.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import serial

from jitstock.clock import REAL_CLOCK, Clock, wait
from jitstock.protocol import MAX_CODE_LEN
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Real seconds one read may block: bounds stop() latency.
READ_TIMEOUT_S = 0.1
# Reopen soon after an unplug, then back off up to the cap (see edge/scale.py).
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0


class ScanSink(Protocol):
    """Receives scans (called from the reader thread)."""

    def on_scan(self, scanner: str, ts_ms: int, code: str) -> None:
        """One scanned code."""
        ...


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


def decode_code(line: bytes) -> str | None:
    """The code in one line, or None when it is garbage (non-printable, not UTF-8, too long)."""
    if not line or len(line) > MAX_CODE_LEN:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.strip()
    if not text or not text.isprintable():
        return None
    return text


class ScannerReader:
    """Reads one scanner port in a daemon thread."""

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
        self.port = port
        self.scanner_id = scanner_id
        self._sink = sink
        self._clock = clock
        self._baudrate = baudrate
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = {"scans": 0, "garbage": 0, "reopens": 0, "open_failures": 0}
        self._ratelog = RateLimitedLog(log)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: scans, garbage, reopens, open_failures."""
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"scanner-{self.scanner_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        opened = False
        while not self._stop.is_set():
            try:
                extra: dict[str, Any] = (
                    {} if "://" in self.port else {"exclusive": True}
                )
                port: Any = serial.serial_for_url(
                    self.port, baudrate=self._baudrate, timeout=READ_TIMEOUT_S, **extra
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                self._count("open_failures")
                self._ratelog.log(
                    logging.WARNING, "open", "cannot open %s: %s", self.port, exc
                )
                if wait(self._clock, backoff, self._stop):
                    return
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            if opened:
                self._count("reopens")
            opened = True
            try:
                self._serve(port)
                backoff = self._backoff_initial_s
            except (serial.SerialException, OSError) as exc:
                self._ratelog.log(
                    logging.WARNING, "gone", "scanner %s failed: %s", self.port, exc
                )
                if wait(self._clock, backoff, self._stop):
                    return
                backoff = min(backoff * 2, self._backoff_max_s)
            except Exception:
                log.exception("scanner reader %s crashed; restarting", self.scanner_id)
                if wait(self._clock, backoff, self._stop):
                    return
            finally:
                try:
                    port.close()
                except Exception:  # closing a dead port may fail too
                    pass

    def _serve(self, port: Any) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            chunk = port.read(port.in_waiting or 1)
            if not chunk:
                continue
            buf += chunk
            for line in split_lines(buf):
                self._handle(line)
            if len(buf) > MAX_CODE_LEN:
                buf.clear()
                self._garbage(b"(overlong line)")

    def _handle(self, line: bytes) -> None:
        code = decode_code(line)
        if code is None:
            self._garbage(line)
            return
        self._count("scans")
        try:
            self._sink.on_scan(self.scanner_id, self._clock.time_ms(), code)
        except Exception:
            log.exception("sink.on_scan failed for scanner %s", self.scanner_id)

    def _garbage(self, line: bytes) -> None:
        self._count("garbage")
        self._ratelog.log(
            logging.WARNING,
            "garbage",
            "scanner %s: dropped %r",
            self.scanner_id,
            line[:40],
        )
