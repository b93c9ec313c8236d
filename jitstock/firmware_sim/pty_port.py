"""A pseudo-terminal that plays a serial port, behind a stable symlink that survives unplug/replug.

The simulator owns the master side (non-blocking); readers open the symlink (the slave).
Writes never block: with nobody reading, a full buffer drops the data, as a real
device does not care whether anyone listens.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from pathlib import Path


class PtyPort:
    """Master side of a pty plus a symlink at `link` pointing at its slave."""

    def __init__(self, link: Path) -> None:
        self.link = Path(link)
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_name = ""
        self.dropped_bytes = 0

    @property
    def is_open(self) -> bool:
        """True while plugged in."""
        return self._master is not None

    def open(self) -> None:
        """Create a fresh pty and (re-)point the symlink at its slave."""
        master, slave = os.openpty()
        # raw: CR and LF pass unchanged, no echo of what a reader writes
        tty.setraw(slave)
        os.set_blocking(master, False)
        name = os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        with self._lock:
            self._master, self._slave, self.slave_name = master, slave, name
        os.replace(
            tmp, self.link
        )  # atomic: a reader never sees a missing link during replug

    def close(self) -> None:
        """Unplug: remove the symlink and close the pty (a reader's next read fails)."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        with self._lock:
            fds = (self._master, self._slave)
            self._master = self._slave = None
        for fd in fds:
            if fd is not None:
                os.close(fd)

    def write(self, data: bytes) -> bool:
        """Write without blocking; False (and counted) when unplugged or the buffer is full."""
        with self._lock:
            if self._master is None:
                return False
            try:
                n = os.write(self._master, data)
            except (BlockingIOError, OSError):
                self.dropped_bytes += len(data)
                return False
        if n < len(data):
            self.dropped_bytes += len(data) - n
            return False
        return True

    def read(self, timeout_s: float) -> bytes:
        """Bytes a reader wrote to the port, waiting up to timeout_s real seconds; b'' if none."""
        with self._lock:
            fd = self._master
        if fd is None:
            time.sleep(timeout_s)
            return b""
        try:
            ready, _, _ = select.select([fd], [], [], timeout_s)
        except (OSError, ValueError):
            return b""  # closed under us by an unplug
        if not ready:
            return b""
        with self._lock:
            if self._master != fd:
                return b""  # replugged meanwhile: fd number may now be a different pty
            try:
                return os.read(fd, 4096)
            except BlockingIOError:
                return b""
            except OSError:
                pass  # EIO: no slave side open at the moment
        time.sleep(timeout_s)  # do not spin on a readable-but-failing fd
        return b""
