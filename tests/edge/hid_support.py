"""A FIFO standing in for a USB HID scanner's ``/dev/input/eventN``: real ``input_event`` records.

Tests have no uinput, so the reader's input path is a named pipe: the records written
are exactly what the kernel delivers (``struct input_event``: timeval, type, code,
value), including the EV_MSC scan codes and EV_SYN reports a real scanner sends.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from pathlib import Path

from tests.waits import WAIT_S

EV_SYN, EV_KEY, EV_MSC = 0, 1, 4
KEY_LEFTSHIFT, KEY_ENTER, KEY_TAB = 42, 28, 15
EVENT = struct.Struct("llHHi")


def record(type_: int, code: int, value: int) -> bytes:
    """One ``struct input_event`` as the kernel writes it (time of day in the timeval)."""
    now = time.time()
    return EVENT.pack(int(now), int(now % 1 * 1e6), type_, code, value)


def tap(code: int, shift: bool = False) -> bytes:
    """Press and release one key (with Shift held around it), as a scanner types it."""
    out = b""
    if shift:
        out += record(EV_KEY, KEY_LEFTSHIFT, 1) + record(EV_SYN, 0, 0)
    for value in (1, 0):
        out += record(EV_MSC, 4, 0x70000 + code)  # MSC_SCAN: the HID usage
        out += record(EV_KEY, code, value) + record(EV_SYN, 0, 0)
    if shift:
        out += record(EV_KEY, KEY_LEFTSHIFT, 0) + record(EV_SYN, 0, 0)
    return out


def typed(keys: list[tuple[int, bool]], suffix: int = KEY_ENTER) -> bytes:
    """A whole scan: the keys (code, shift) and the suffix key."""
    return b"".join(tap(code, shift) for code, shift in keys) + tap(suffix)


class FakeInputDevice:
    """A FIFO at ``path``: ``plug`` creates it, ``write`` feeds records, ``unplug`` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def plug(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(self.path)

    def _writer(self) -> int:
        """Open the write end once the reader has the FIFO open (ENXIO until then)."""
        if self._fd is None:
            deadline = time.monotonic() + WAIT_S
            while True:
                try:
                    self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.ENXIO, errno.ENOENT):
                        raise
                    if time.monotonic() > deadline:
                        raise AssertionError(f"nobody opened {self.path}") from None
                    time.sleep(0.02)
        return self._fd

    def write(self, data: bytes) -> None:
        fd = self._writer()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            view = view[n:]

    def unplug(self) -> None:
        """The device node disappears and the reader's next read sees the end."""
        self.path.unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
