"""Real services on free ports in temp dirs: Mosquitto and InfluxDB as child processes.

Each service is a small class with start/stop/restart, so a test can take it
away mid-run (broker outage, InfluxDB outage) and bring it back on the same
port, and a benchmark can run the real thing beside the server it measures.
tests/services.py wraps these for pytest (a missing binary fails under CI).
"""

from __future__ import annotations

import collections
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

# How long a freshly started service may take to accept connections.
START_TIMEOUT_S = 20.0


# Port slices for pytest-xdist workers (gw0 … gw7; more wrap around).
XDIST_SLICES = 8
# Ports free_port handed out lately in this process: not handed out again while a
# caller may still be about to bind one (a slice holds ~1,600 ports; a test run asks
# for about as many, so old ones come back).
RECENT_PORTS = 256
_handed_out: collections.deque[int] = collections.deque(maxlen=RECENT_PORTS)
_port_rng = random.Random()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; 32768 elsewhere)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nobody listens on right now, below the kernel's ephemeral range.

    A port from bind(0) lies in the ephemeral range, where any outgoing connection of
    any process may take it between this call and the server's own bind (a test once
    waited 60 s on a server that could not bind).  Ports below that range are only ever
    taken by an explicit bind, so a random free one stays free until it is used.
    """
    low, high = 20_000, _ephemeral_low() - 1
    if high - low < 1_000:  # an unusual kernel setting: fall back to bind(0)
        low = high = 0
    else:
        # pytest-xdist workers draw from slices of their own: two workers picking the
        # same port before either bound it once pointed a test at another's server
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        if worker.startswith("gw") and worker[2:].isdigit():
            size = (high - low + 1) // XDIST_SLICES
            low += (int(worker[2:]) % XDIST_SLICES) * size
            high = low + size - 1
    for _ in range(200):
        port = _port_rng.randint(low, high) if high else 0
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(s.getsockname()[1])
        _handed_out.append(port)
        return port
    raise OSError(f"no free TCP port found in {low}-{high}")


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


class ServiceMissing(RuntimeError):
    """A service binary is not installed."""


def find_binary(name: str, *extra: str) -> str:
    """Path of a service binary, or ServiceMissing naming the package to install."""
    found = shutil.which(name) or next((p for p in extra if Path(p).exists()), None)
    if found:
        return found
    raise ServiceMissing(
        f"{name} is not installed; run `make test` (it installs it) or `apt-get install {name}`"
    )


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
        self,
        workdir: Path,
        port: int | None = None,
        extra_conf: str = "",
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, port or free_port())
        self.binary = binary or find_binary("mosquitto", "/usr/sbin/mosquitto")
        self.extra_conf = extra_conf
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            # as root Mosquitto would drop to user `mosquitto`, which cannot write our 0700 temp dir
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            # generous queues: the tests measure our back-pressure, not Mosquitto's defaults
            "max_queued_messages 100000\n"
            "max_inflight_messages 1000\n"
            f"{self.extra_conf}\n"
        )
        return [self.binary, "-c", str(conf)]


class InfluxDB(Process):
    """A private InfluxDB 1.x (influxd) with its own meta/data/wal dirs, HTTP and RPC ports.

    With ``auth=True`` it starts with authentication on and an admin user
    ``admin_user``/``admin_password`` (created through the first-user exception).
    """

    admin_user = "admin"
    admin_password = "admin-secret"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        auth: bool = False,
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, port or free_port())
        self.binary = binary or find_binary("influxd", "/usr/bin/influxd")
        # the RPC (backup/restore) port defaults to 8088 for every instance: give each its own
        self.rpc_port = free_port()
        self.auth = auth
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("meta", "data", "wal"):
            (workdir / sub).mkdir(exist_ok=True)

    def command(self) -> list[str]:
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            "[meta]\n"
            f'  dir = "{self.workdir}/meta"\n'
            "[data]\n"
            f'  dir = "{self.workdir}/data"\n'
            f'  wal-dir = "{self.workdir}/wal"\n'
            "  query-log-enabled = false\n"
            "[http]\n"
            f'  bind-address = "127.0.0.1:{self.port}"\n'
            f"  auth-enabled = {'true' if self.auth else 'false'}\n"
            "  log-enabled = false\n"
            # no _internal statistics database: less CPU on a shared 2-core box
            "[monitor]\n"
            "  store-enabled = false\n"
            "[logging]\n"
            '  level = "warn"\n'
        )
        return [self.binary, "run", "-config", str(conf)]

    def env(self) -> dict[str, str] | None:
        # INFLUXDB_* variables would override the config file
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def start(self) -> None:
        super().start()
        self.wait_ready()
        if self.auth and not (self.workdir / ".admin-created").exists():
            self.query(
                f"CREATE USER {self.admin_user} WITH PASSWORD '{self.admin_password}' "
                "WITH ALL PRIVILEGES",
                auth=False,
            )
            (self.workdir / ".admin-created").touch()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until /ping answers 204 (the port opens before the stores are loaded)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(
            f"influxd /ping not ready after {timeout}s: {self.log.read_text()[-2000:]}"
        )

    def query(self, q: str, db: str | None = None, auth: bool = True) -> dict[str, Any]:
        """Run InfluxQL directly (epoch=ms) and return the first result; raises on errors."""
        import httpx

        data = {"q": q, "epoch": "ms"}
        if db:
            data["db"] = db
        creds = (self.admin_user, self.admin_password) if self.auth and auth else None
        r = httpx.post(f"{self.url}/query", data=data, auth=creds, timeout=30.0)
        r.raise_for_status()
        result: dict[str, Any] = r.json()["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']} in {q!r}")
        return result
