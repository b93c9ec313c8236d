"""SimulatedScanner: a barcode scanner on a pty that types `code\\r\\n` per scan."""

from __future__ import annotations

import shutil
import tempfile
from itertools import count
from pathlib import Path

from jitstock.firmware_sim.pty_port import PtyPort

_ids = count(1)


class SimulatedScanner:
    """A serial barcode scanner; `.port` is a stable symlink to the pty slave."""

    def __init__(self, workdir: Path | None = None, name: str | None = None) -> None:
        self._own_workdir = workdir is None
        self._workdir = (
            Path(tempfile.mkdtemp(prefix="jitstock-scan-"))
            if workdir is None
            else workdir
        )
        self.name = name or f"scanner{next(_ids)}"
        self._pty = PtyPort(self._workdir / f"{self.name}.port")

    @property
    def port(self) -> str:
        """Path of the symlink a reader opens."""
        return str(self._pty.link)

    def start(self) -> None:
        """Create the pty."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._pty.open()

    def stop(self) -> None:
        """Close the pty and remove a temp workdir."""
        self._pty.close()
        if self._own_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def scan(self, code: str) -> bool:
        """Type one code followed by CR LF; False if nobody could receive it (dropped)."""
        return self._pty.write(code.encode("utf-8") + b"\r\n")

    def send_raw(self, data: bytes) -> bool:
        """Write raw bytes (line noise, odd terminators) for fault tests."""
        return self._pty.write(data)

    def __enter__(self) -> SimulatedScanner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
