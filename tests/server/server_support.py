"""Running a real jitstock server for tests: in this process (ServerApp + uvicorn thread)
or as a child process that a test can SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from jitstock.server.app import ServerApp
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
from jitstock.server.settings import ServerSettings
from tests.services import free_port, wait_port

# re-exported: the server tests import their waits from here
from tests.waits import WAIT_S as WAIT_S
from tests.waits import wait_progress as wait_progress
from tests.waits import wait_until as wait_until


def seed(
    db_url: str,
    bins: list[BinSeed],
    suppliers: list[SupplierSeed],
    site: str = "plant1",
) -> None:
    """Migrate and fill a state DB before a server starts on it."""
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        seed_plant(make_session_factory(engine), site, bins, suppliers)
    finally:
        engine.dispose()


def server_env(settings: dict[str, Any]) -> dict[str, str]:
    """JITSTOCK_* variables for a child server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")}
    env.update(
        {f"JITSTOCK_{k.upper()}": str(v) for k, v in settings.items() if v is not None}
    )
    return env


@contextmanager
def running_app(**settings: Any) -> Iterator[tuple[ServerApp, str]]:
    """A ServerApp on a free port, serving HTTP from a thread; yields (app, base_url)."""
    port = free_port()
    app = ServerApp(ServerSettings(http_port=port, auth="off", **settings))
    app.start()
    thread = threading.Thread(target=app.serve, daemon=True)
    thread.start()
    wait_port(port, timeout=WAIT_S)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        app.stop()
        thread.join(timeout=10)


class ServerProcess:
    """`jitstock server` as a child process, for crash tests."""

    def __init__(self, workdir: Path, **settings: Any) -> None:
        self.port = free_port()
        self.settings = {
            "http_port": self.port,
            "auth": "off",
            "data_dir": workdir,
            **settings,
        }
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jitstock.cli", "server"],
                env=server_env(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_port(self.port, timeout=WAIT_S)

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def api_get(base_url: str, path: str) -> Any:
    """GET a JSON resource of the API (None on 404 or connection errors)."""
    try:
        r = httpx.get(base_url + path, timeout=5.0)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None
