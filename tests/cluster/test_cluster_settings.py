"""`jitstock admin check` fails the cluster settings `jitstock server` refuses, and the
server refuses a cluster on the embedded (one node's) history store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest

from jitstock.cli import main
from jitstock.server.cluster.leader import libpq_url
from jitstock.server.cluster.node import node_lock_key
from tests.server.conftest import _postgres_database
from tests.services import free_port
from tests.waits import wait_until


@pytest.fixture
def pg_url() -> Iterator[str]:
    gen = cast(Generator[str, None, None], _postgres_database())
    yield next(gen)
    gen.close()


@pytest.fixture
def env(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A cluster node's environment that `jitstock server` accepts; tests unset parts."""
    for name in list(os.environ):
        if name.startswith("JITSTOCK_"):
            monkeypatch.delenv(name)
    values = {
        "JITSTOCK_DB_URL": pg_url,
        "JITSTOCK_DATA_DIR": str(tmp_path),
        "JITSTOCK_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",
        "JITSTOCK_MQTT_PROTOCOL": "5",
        "JITSTOCK_CLUSTER": "true",
        "JITSTOCK_CLUSTER_NODE": "n1",
        "JITSTOCK_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def cluster_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **change: str
) -> tuple[int, str]:
    for k, v in change.items():
        if v:
            monkeypatch.setenv(f"JITSTOCK_{k.upper()}", v)
        else:
            monkeypatch.delenv(f"JITSTOCK_{k.upper()}")
    capsys.readouterr()
    rc = main(["admin", "check"])
    lines = [
        x for x in capsys.readouterr().out.splitlines() if x.split()[1:2] == ["cluster"]
    ]
    assert len(lines) == 1
    return rc, lines[0]


def test_admin_check_fails_what_the_server_refuses(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, line = cluster_line(capsys, monkeypatch)
    assert line.startswith("ok"), line
    assert "node n1" in line
    rc, line = cluster_line(capsys, monkeypatch, mqtt_protocol="3.1.1")
    assert rc == 1
    assert line.startswith("FAIL"), line
    assert "MQTT_PROTOCOL=5" in line, line
    monkeypatch.setenv("JITSTOCK_MQTT_PROTOCOL", "5")
    rc, line = cluster_line(capsys, monkeypatch, cluster_node="")
    assert rc == 1
    assert line.startswith("FAIL"), line
    assert "CLUSTER_NODE" in line, line
    monkeypatch.setenv("JITSTOCK_CLUSTER_NODE", "n1")
    rc, line = cluster_line(capsys, monkeypatch, influx_url="")
    assert rc == 1
    assert line.startswith("FAIL"), line
    assert "INFLUX_URL" in line, line


def test_no_cluster_line_without_cluster(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JITSTOCK_CLUSTER")
    capsys.readouterr()
    main(["admin", "check"])
    assert " cluster " not in capsys.readouterr().out


def test_the_server_refuses_a_cluster_on_the_embedded_history_store(
    env: dict[str, str],
) -> None:
    child = {k: v for k, v in os.environ.items() if k != "JITSTOCK_INFLUX_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "server"],
        env=child,
        capture_output=True,
        text=True,
        timeout=120,  # a server that starts would run until killed here
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "JITSTOCK_INFLUX_URL" in done.stderr


# A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low 32
# bits), objsubid 1.  Looked up, not tried: a probe that took the lock for a moment
# would make a node starting in that moment refuse its own name.
_HELD = """
SELECT EXISTS (
  SELECT 1 FROM pg_locks
  WHERE locktype = 'advisory' AND granted AND objsubid = 1
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND classid::text::bigint = (%(key)s::bigint >> 32) & 4294967295
    AND objid::text::bigint = %(key)s::bigint & 4294967295
)
"""


def _name_taken(url: str, name: str) -> bool:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute(_HELD, {"key": node_lock_key(name)}).fetchone()
        return bool(row and row[0])


def test_a_second_node_with_the_same_name_is_refused(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    # no broker (the node keeps trying to reach it): a killed node's persistent session
    # on the tests' shared broker would take a share of other tests' messages
    child = dict(os.environ)
    child["JITSTOCK_CLUSTER_NODE"] = "n2"
    child["JITSTOCK_HTTP_PORT"] = str(free_port())
    first = subprocess.Popen(
        [sys.executable, "-m", "jitstock.cli", "server"],
        env=child,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _name_taken(pg_url, "n2"), 60, what="the first n2 running")
        child["JITSTOCK_HTTP_PORT"] = str(free_port())
        child["JITSTOCK_DATA_DIR"] = str(tmp_path / "second")
        done = subprocess.run(
            [sys.executable, "-m", "jitstock.cli", "server"],
            env=child,
            capture_output=True,
            text=True,
            timeout=120,  # a second n2 that starts would run until killed here
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "JITSTOCK_CLUSTER_NODE=n2" in done.stderr
        assert first.poll() is None  # the first one runs on
        first.kill()  # a killed node's name is free for its restart
        first.wait(timeout=60)
        wait_until(lambda: not _name_taken(pg_url, "n2"), 60, what="n2 free again")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
