"""ScanReader: what a serial and a USB HID barcode scanner's readers share.

Both read one device in a daemon thread and deliver codes as scans; they differ only in
how the device opens and how bytes become codes. This base owns the rest, so both
recover the same way: an open that fails is retried after a capped exponential backoff
(0.5 s, doubling, at most 30 s apart; the backoff starts over once the device opens), a
device that fails while open is re-opened after the initial backoff, each kind of
failure is logged at most every 30 s (:class:`~jitstock.ratelog.RateLimitedLog`), and a
bug in the reading code is logged and survived, never the end of the thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Generic, Protocol, TypeVar

from jitstock.clock import REAL_CLOCK, Clock, wait
from jitstock.protocol import GS
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Reopen soon after an unplug, then back off up to the cap (as edge/scale.py does).
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0

Handle = TypeVar("Handle")

# What both readers trim at the ends of a code: blanks, not GS (str.strip() would take
# GS, which Python counts as whitespace, and with it a leading FNC1).  No blank is
# above U+3000.
_BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c != GS)


def trim_code(text: str) -> str:
    """``text`` without the blanks at its ends (GS kept: it is a GS1 label's FNC1)."""
    return text.strip(_BLANKS)


class ScanSink(Protocol):
    """Receives scans (called from the reader thread)."""

    def on_scan(self, scanner: str, ts_ms: int, code: str) -> None:
        """One scanned code."""
        ...


class DeviceGone(Exception):
    """The device vanished or failed while open; the reader re-opens it."""


class ScanReader(Generic[Handle]):
    """One scanner read in a daemon thread; subclasses open, read and close the device.

    ``_open`` raises OSError (or a subclass's ``OPEN_ERRORS``) when the device does not
    open; ``_serve`` reads until ``_stop`` is set and raises :class:`DeviceGone` when the
    device fails.
    """

    # what the logs call this kind of scanner
    KIND = "scanner"
    # the exceptions of a device that does not open (anything else is a bug, survived)
    OPEN_ERRORS: tuple[type[Exception], ...] = (OSError,)

    def __init__(
        self,
        port: str,
        scanner_id: str,
        sink: ScanSink,
        clock: Clock = REAL_CLOCK,
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        counters: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.scanner_id = scanner_id
        self._sink = sink
        self._clock = clock
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stats = dict.fromkeys(
            ("scans", "garbage", "reopens", "open_failures", *counters), 0
        )
        self._ratelog = RateLimitedLog(log)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: scans, garbage, reopens, open_failures and the subclass's own."""
        with self._lock:
            return dict(self._stats)

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def start(self) -> None:
        """Start the reader thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"{self.KIND}-{self.scanner_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the device."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- what a subclass provides -------------------------------------------------------

    def _open(self) -> Handle:
        raise NotImplementedError

    def _serve(self, handle: Handle) -> None:
        raise NotImplementedError

    def _close(self, handle: Handle) -> None:
        raise NotImplementedError

    def _opened(self) -> None:
        """Called each time the device opens (before reading): reset per-device state."""

    def _health(self, ok: bool, fault: str | None) -> None:
        """The device opened (ok) or failed (``port_error``); reported by HID readers."""

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        opened = False
        while not self._stop.is_set():
            try:
                handle = self._open()
            except self.OPEN_ERRORS as exc:
                self._count("open_failures")
                self._ratelog.log(
                    logging.WARNING,
                    "open",
                    "cannot open %s %s (%s): %s",
                    self.KIND,
                    self.scanner_id,
                    self.port,
                    exc,
                )
                self._health(False, "port_error")
                if wait(self._clock, backoff, self._stop):
                    return
                backoff = min(backoff * 2, self._backoff_max_s)
                continue
            backoff = self._backoff_initial_s
            if opened:
                self._count("reopens")
                # rate-limited too: a path that opens and fails at once (a regular file, a
                # flaky cable) would log this every backoff
                self._ratelog.log(
                    logging.INFO,
                    "back",
                    "%s %s is back (%s)",
                    self.KIND,
                    self.scanner_id,
                    self.port,
                )
            opened = True
            self._opened()
            self._health(True, None)
            try:
                self._serve(handle)
            except DeviceGone as exc:
                self._ratelog.log(
                    logging.WARNING,
                    "gone",
                    "%s %s (%s) gone: %s",
                    self.KIND,
                    self.scanner_id,
                    self.port,
                    exc,
                )
                self._health(False, "port_error")
                if wait(self._clock, backoff, self._stop):
                    return
            except Exception:
                self._ratelog.log(
                    logging.ERROR,
                    "bug",
                    "%s reader %s crashed",
                    self.KIND,
                    self.scanner_id,
                )
                log.debug("%s reader crash", self.KIND, exc_info=True)
                if wait(self._clock, backoff, self._stop):
                    return
            finally:
                try:
                    self._close(handle)
                except (
                    Exception
                ):  # closing a dead device may fail too; it is gone either way
                    pass

    def _deliver(self, code: str) -> None:
        """One finished code to the sink (a failing sink never stops the reader)."""
        self._count("scans")
        try:
            self._sink.on_scan(self.scanner_id, self._clock.time_ms(), code)
        except Exception:
            log.exception("sink.on_scan failed for scanner %s", self.scanner_id)

    def _garbage(self, why: str) -> None:
        """A dropped code: counted, logged at most every 30 s."""
        self._count("garbage")
        self._ratelog.log(
            logging.WARNING,
            "garbage",
            "%s %s: dropped a code: %s",
            self.KIND,
            self.scanner_id,
            why,
        )
