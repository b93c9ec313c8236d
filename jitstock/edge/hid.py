"""HidScannerReader: a USB HID barcode scanner read from its Linux input device.

A HID scanner is a keyboard: each scanned code arrives as key presses, ended by the
suffix key (Enter or Tab). The reader opens the device by its stable path
(``/dev/input/by-id/usb-…-event-kbd``), grabs it exclusively (``EVIOCGRAB``) so the
scans do not also type into a console or a login prompt, and reads the kernel's
``struct input_event`` records directly (``struct timeval`` + u16 type + u16 code +
s32 value, 24 bytes on 64-bit): the ``evdev`` package is an sdist that needs kernel
headers on the Pi, and the record layout is a stable kernel ABI.

Key presses become characters through :class:`~jitstock.edge.keymap.Keymap` (Shift,
Caps Lock, AltGr; layout ``us`` or ``de``).  Ctrl+] is GS (0x1D), the FNC1 separator a
GS1 label's variable-length fields end with, as keyboard-wedge scanners type it: it
stays in the code; Ctrl with any other key is a control character, and its code
garbage. A finished code is delivered exactly like
a serial scanner's line (:meth:`ScanSink.on_scan`). Garbage — a key the layout has no
character for, a code longer than the wire contract allows, a code left unfinished
for :data:`PARTIAL_TIMEOUT_S` — is counted and dropped, the next code is read.

Unplug: the device node disappears and reads fail (``ENODEV``); a FIFO standing in
for it in tests reports end of file. The reader reports the scanner faulty
(``port_error``), logs once per kind of failure, and re-opens the same path with
capped exponential backoff until it is back (edge/scan_reader.py, shared with the
serial scanner's reader).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
from typing import Protocol

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.edge.keymap import (
    CTRL_KEYS,
    IGNORED_KEYS,
    KEY_CAPSLOCK,
    KEY_RIGHTALT,
    KEY_RIGHTBRACE,
    SHIFT_KEYS,
    SUFFIX_KEYS,
    Keymap,
    Layout,
)
from jitstock.edge.scan_reader import (
    BACKOFF_INITIAL_S,
    BACKOFF_MAX_S,
    DeviceGone,
    ScanReader,
    ScanSink,
    trim_code,
)
from jitstock.protocol import GS, MAX_CODE_LEN, valid_code

log = logging.getLogger(__name__)

# struct input_event: struct timeval (two native longs), __u16 type, __u16 code, __s32 value.
EVENT = struct.Struct("llHHi")
EV_KEY = 0x01
KEY_PRESS, KEY_RELEASE = 1, 0  # 2 is auto-repeat: a scanner never holds a key
# EVIOCGRAB = _IOW('E', 0x90, int): exclusive access, no other reader sees the keys.
EVIOCGRAB = 0x40044590
# Real seconds one select may block: bounds stop() latency.
READ_TIMEOUT_S = 0.1
# A scanner types a whole code within milliseconds; keys older than this without a
# suffix are someone pressing keys (or a lost suffix), not the start of the next code.
PARTIAL_TIMEOUT_S = 2.0


class HealthSink(Protocol):
    """Receives the scanner's health (called from the reader thread, on change only)."""

    def on_health(self, bin: str, ok: bool, fault: str | None) -> None:
        """Healthy, or the fault label."""
        ...


class ScanAndHealthSink(ScanSink, HealthSink, Protocol):
    """What the agent offers a HID reader."""


class KeyDecoder:
    """Key events to codes: modifiers held, characters collected until the suffix key."""

    def __init__(self, layout: Layout) -> None:
        self.keymap = Keymap(layout)
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._altgr = False
        self._caps = False
        self._chars: list[str] = []
        self._bad: str | None = None
        self.started_at: float | None = None

    @property
    def pending(self) -> bool:
        """True while a code has been started but not ended."""
        return bool(self._chars) or self._bad is not None

    def reset(self) -> None:
        """Forget a half-typed code and the modifiers (after a re-open)."""
        self._shift.clear()
        self._ctrl.clear()
        self._altgr = False
        self._chars, self._bad, self.started_at = [], None, None

    def key(self, code: int, value: int, now: float) -> tuple[str | None, str | None]:
        """Feed one key event; ``(code, None)`` when a code ends, ``(None, why)`` when it is garbage."""
        if code in SHIFT_KEYS:
            if value == KEY_PRESS:
                self._shift.add(code)
            elif value == KEY_RELEASE:
                self._shift.discard(code)
            return None, None
        if code in CTRL_KEYS:
            if value == KEY_PRESS:
                self._ctrl.add(code)
            elif value == KEY_RELEASE:
                self._ctrl.discard(code)
            return None, None
        if code == KEY_RIGHTALT:
            if value in (KEY_PRESS, KEY_RELEASE):
                self._altgr = value == KEY_PRESS
            return None, None
        if value != KEY_PRESS:
            return None, None
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None, None
        if code in IGNORED_KEYS:
            return None, None
        if code in SUFFIX_KEYS:
            return self._finish()
        if self.started_at is None:
            self.started_at = now
        char = self.keymap.char(
            code, shift=bool(self._shift), caps=self._caps, altgr=self._altgr
        )
        if self._ctrl and (char is not None or code == KEY_RIGHTBRACE):
            if char != "]" and code != KEY_RIGHTBRACE:
                self._bad = self._bad or (
                    f"Ctrl+{char} is a control character (only Ctrl+], GS, is taken)"
                )
                return None, None
            char = GS  # Ctrl+]: a GS1 label's FNC1 separator
        if char is None:
            self._bad = (
                self._bad
                or f"key code {code} has no character in layout {self.keymap.layout}"
            )
        elif len(self._chars) >= MAX_CODE_LEN:
            self._bad = self._bad or f"code longer than {MAX_CODE_LEN} characters"
        else:
            self._chars.append(char)
        return None, None

    def _finish(self) -> tuple[str | None, str | None]:
        text, bad = "".join(self._chars), self._bad
        self._chars, self._bad, self.started_at = [], None, None
        # a scanner releases Shift/AltGr before its suffix; one still down is a lost release
        # (line noise, a glitch) that would garble every later code, so a code ends it
        self._shift.clear()
        self._ctrl.clear()
        self._altgr = False
        if bad is not None:
            return None, f"{bad} (typed so far {text[:40]!r})"
        text = trim_code(text)
        if not text:
            return None, None  # a lone Enter: nothing was scanned
        if not valid_code(text):
            return None, f"unprintable code {text[:40]!r}"
        return text, None


class HidScannerReader(ScanReader[int]):
    """Reads one HID scanner's input device in a daemon thread (see module docstring)."""

    KIND = "HID scanner"

    def __init__(
        self,
        path: str,
        scanner_id: str,
        sink: ScanAndHealthSink,
        clock: Clock = REAL_CLOCK,
        layout: Layout = "us",
        *,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        super().__init__(
            path,
            scanner_id,
            sink,
            clock,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            counters=("not_grabbed", "events"),
        )
        self._health_sink = sink
        self._decoder = KeyDecoder(layout)
        self._ok: bool | None = None

    def start(self) -> None:
        """Start the reader thread (warning about a path that changes on replug)."""
        if self.port.startswith("/dev/input/event"):
            log.warning(
                "HID scanner %s: %s is renumbered on replug; use its "
                "/dev/input/by-id/...-event-kbd path",
                self.scanner_id,
                self.port,
            )
        super().start()

    def _open(self) -> int:
        # non-blocking: a FIFO opens without a writer, and select() bounds every read
        fd = os.open(self.port, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, EVIOCGRAB, 1)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                os.close(fd)
                raise OSError(
                    errno.EBUSY, "grabbed by another process (a second agent?)"
                ) from None
            # not an evdev node (a FIFO or pty in tests, a wrong path): read it anyway
            self._count("not_grabbed")
            self._ratelog.log(
                logging.WARNING,
                "grab",
                "%s: cannot grab the device (%s): scans may also type into a console",
                self.port,
                exc.strerror or exc,
            )
        return fd

    def _close(self, handle: int) -> None:
        os.close(handle)

    def _opened(self) -> None:
        self._decoder.reset()

    def _serve(self, fd: int) -> None:
        buf = bytearray()
        size = EVENT.size
        while not self._stop.is_set():
            self._expire_partial()
            try:
                ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
            except (OSError, ValueError) as exc:
                raise DeviceGone(str(exc)) from exc
            if not ready:
                continue
            try:
                chunk = os.read(fd, size * 64)
            except BlockingIOError:
                continue
            except OSError as exc:  # ENODEV after an unplug
                raise DeviceGone(exc.strerror or str(exc)) from exc
            if not chunk:
                raise DeviceGone("end of file (device removed)")
            buf += chunk
            whole = len(buf) - len(buf) % size
            for _sec, _usec, type_, code, value in EVENT.iter_unpack(
                bytes(buf[:whole])
            ):
                self._event(type_, code, value)
            del buf[:whole]

    def _event(self, type_: int, code: int, value: int) -> None:
        self._count("events")
        if type_ != EV_KEY:
            return  # EV_SYN, EV_MSC (scan codes), LEDs: nothing to type
        text, bad = self._decoder.key(code, value, self._clock.monotonic())
        if bad is not None:
            self._garbage(bad)
        elif text is not None:
            self._deliver(text)

    def _expire_partial(self) -> None:
        started = self._decoder.started_at
        if (
            started is not None
            and self._clock.monotonic() - started > PARTIAL_TIMEOUT_S
        ):
            self._decoder.reset()
            self._garbage(
                f"keys without a suffix key (Enter/Tab) for {PARTIAL_TIMEOUT_S} s"
            )

    def _health(self, ok: bool, fault: str | None) -> None:
        if self._ok is ok:
            return
        self._ok = ok
        try:
            self._health_sink.on_health(self.scanner_id, ok, fault)
        except Exception:
            log.exception("sink.on_health failed for scanner %s", self.scanner_id)
