"""Real services for the tests: started on free ports in temp dirs, stopped after.

Each service is a small class with start/stop/restart so a test can take it
away mid-run (broker outage, InfluxDB outage) and bring it back on the same port.
Under CI=true a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# How long a freshly started service may take to accept connections.
START_TIMEOUT_S = 20.0


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to 0, read it back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = START_TIMEOUT_S, host: str = "127.0.0.1"
) -> None:
    """Block until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def find_binary(name: str, *extra: str) -> str:
    """Path of a service binary, or fail (CI) / skip (laptop) with what to install."""
    found = shutil.which(name) or next((p for p in extra if Path(p).exists()), None)
    if found:
        return found
    msg = f"{name} is not installed; run `make test` (it installs it) or `apt-get install {name}`"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError("unreachable")


class Process:
    """A service process with its own temp dir and a fixed port across restarts."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "service.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.command()[0]} did not start: {self.log.read_text()[-2000:]}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Mosquitto(Process):
    """A private Mosquitto 2 broker with persistence (so a restart keeps queued messages)."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra_conf: str = ""
    ) -> None:
        super().__init__(workdir, port or free_port())
        self.binary = find_binary("mosquitto", "/usr/sbin/mosquitto")
        self.extra_conf = extra_conf
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # generous queues: the tests measure our back-pressure, not Mosquitto's defaults
            "max_queued_messages 100000\n"
            "max_inflight_messages 1000\n"
            f"{self.extra_conf}\n"
        )
        return [self.binary, "-c", str(conf)]
