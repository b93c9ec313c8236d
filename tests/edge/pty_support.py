"""A pseudo-terminal that says the same lines again and again (or nothing): a scale head,
a silent port or an unknown device for check-port's tests, in-process and on the CLI."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jitstock.firmware_sim.pty_port import PtyPort


@contextmanager
def talking_port(tmp_path: Path, *lines: bytes, every_s: float = 0.05) -> Iterator[str]:
    """A pty that repeats `lines` (each written as is) until the block ends; silent without."""
    port = PtyPort(tmp_path / "talk.port")
    port.open()
    stop = threading.Event()

    def talk() -> None:
        while not stop.is_set():
            for line in lines:
                if stop.wait(every_s):
                    return
                port.write(line)
            if not lines:
                stop.wait()

    t = threading.Thread(target=talk)
    t.start()
    try:
        yield str(port.link)
    finally:
        stop.set()
        t.join()
        port.close()
