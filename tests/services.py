"""Real services for the tests (see jitstock.bench.services): under CI=true a missing
binary is a failure, never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jitstock.bench import services as _services
from jitstock.bench.services import Process, ServiceMissing, free_port, wait_port
from tests.waits import WAIT_S

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START_TIMEOUT_S = _services.START_TIMEOUT_S

__all__ = [
    "IN_CI",
    "InfluxDB",
    "Mosquitto",
    "Process",
    "deploy_acl_broker",
    "find_binary",
    "free_port",
    "wait_port",
]


def find_binary(name: str, *extra: str) -> str:
    """Path of a service binary, or fail (CI) / skip (laptop) with what to install."""
    try:
        return _services.find_binary(name, *extra)
    except ServiceMissing as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    raise AssertionError("unreachable")


class Mosquitto(_services.Mosquitto):
    """A private Mosquitto 2 broker (persistence on, so a restart keeps queued messages)."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra_conf: str = ""
    ) -> None:
        super().__init__(
            workdir,
            port,
            extra_conf,
            binary=find_binary("mosquitto", "/usr/sbin/mosquitto"),
        )


class InfluxDB(_services.InfluxDB):
    """A private InfluxDB 1.x with its own dirs and ports."""

    def __init__(
        self, workdir: Path, port: int | None = None, auth: bool = False
    ) -> None:
        super().__init__(
            workdir, port, auth, binary=find_binary("influxd", "/usr/bin/influxd")
        )

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        """As the service's own, with the tests' generous bound (influxd loads slowly when busy)."""
        super().wait_ready(timeout)


def deploy_acl_broker(tmp_path: Path, passwords: dict[str, str]) -> Mosquitto:
    """A started Mosquitto with password logins and deploy/mosquitto.acl as shipped
    (what a plant runs); the caller stops it."""
    passwd = find_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    pwfile = tmp_path / "passwd"
    pwfile.touch()
    for user, pw in passwords.items():
        subprocess.run([passwd, "-b", str(pwfile), user, pw], check=True)
    acl = tmp_path / "jitstock.acl"
    shutil.copy(ROOT / "deploy" / "mosquitto.acl", acl)
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Mosquitto(
        workdir,
        extra_conf=f"allow_anonymous false\npassword_file {pwfile}\nacl_file {acl}\n",
    )
    broker.start()
    return broker
