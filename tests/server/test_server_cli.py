"""`jitstock server` as a child process: refused settings exit 2 with one readable line,
the production profile refuses weak admin keys, webhook credentials and remote error
bodies stay out of its log and of last_error, and its SQLite files are private."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from jitstock.clock import REAL_CLOCK
from jitstock.server.db.models import Bin, Order
from jitstock.server.db.secrets import new_webhook_secret
from jitstock.server.db.session import make_engine, make_session_factory, transaction
from jitstock.server.reorder import maybe_reorder
from tests.server.db_factories import seed
from tests.server.server_support import ServerProcess, server_env, wait_until
from tests.services import free_port

# A refused start does no work: it must end long before this.
REFUSAL_TIMEOUT_S = 60.0


def _run_server(tmp_path: Path, **settings: object) -> subprocess.CompletedProcess[str]:
    env = server_env(
        {
            "data_dir": tmp_path,
            "db_url": f"sqlite:///{tmp_path / 'state.db'}",
            "http_port": free_port(),
            "mqtt_url": f"mqtt://127.0.0.1:{free_port()}",
            **settings,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "jitstock.cli", "server"],
        env=env,
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
        check=False,
    )


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        (
            {"environment": "production", "bootstrap_admin_key": "abc"},
            ["JITSTOCK_BOOTSTRAP_ADMIN_KEY", "32"],
        ),
        (
            # long enough, but one character repeated is not random
            {"environment": "production", "bootstrap_admin_key": "a" * 48},
            ["JITSTOCK_BOOTSTRAP_ADMIN_KEY"],
        ),
        (
            {"environment": "production", "bootstrap_admin_key": "changeme"},
            ["JITSTOCK_BOOTSTRAP_ADMIN_KEY", "placeholder"],
        ),
        (
            {"environment": "production", "auth": "off"},
            ["JITSTOCK_AUTH=off"],
        ),
        ({"environment": "prod"}, ["JITSTOCK_ENVIRONMENT"]),
        ({"http_port": "eighty"}, ["JITSTOCK_HTTP_PORT"]),
        ({"http_port": "70000"}, ["JITSTOCK_HTTP_PORT"]),
    ],
)
def test_a_refused_setting_exits_2_with_one_readable_line(
    tmp_path: Path, settings: dict[str, str], names: list[str]
) -> None:
    done = _run_server(tmp_path, **settings)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("jitstock server: refused: "), lines[0]
    for name in names:
        assert name in lines[0]
    assert "Traceback" not in done.stderr
    # the refused value itself is not echoed (it may be a secret)
    assert "changeme" not in lines[0].split("JITSTOCK_BOOTSTRAP_ADMIN_KEY", 1)[-1]
    assert not (tmp_path / "state.db").exists()  # refused before touching anything


def test_production_with_a_strong_admin_key_starts(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(32)
    server = ServerProcess(
        tmp_path,
        environment="production",
        auth="on",
        bootstrap_admin_key=key,
        db_url=f"sqlite:///{tmp_path / 'state.db'}",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
    )
    try:
        server.start()
        r = httpx.get(
            f"{server.url}/api/v1/bins", headers={"Authorization": f"Bearer {key}"}
        )
        assert r.status_code == 200, r.text
    finally:
        server.stop()


class _NosySupplier:
    """An 'internal service' a manager pointed a webhook at: answers 404 with a body
    that must not become readable through last_error or the log."""

    BODY = b"INTERNAL-ONLY db_password=pg-s3cret \x1b[31m<script>x</script>"

    def __init__(self) -> None:
        body = self.BODY
        self.auth_headers: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.auth_headers.append(self.headers.get("authorization", ""))
                self.send_response(404)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _NosySupplier:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A `jitstock server` logging at INFO (its default) over a state DB it creates itself."""
    proc = ServerProcess(
        tmp_path,
        db_url=f"sqlite:///{tmp_path / 'state.db'}",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # no broker: HTTP and dispatch suffice
    )
    proc.start()
    yield proc
    proc.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_and_history_files_are_created_private(
    server: ServerProcess, tmp_path: Path
) -> None:
    files = [tmp_path / "state.db", tmp_path / "jitstock-ts.db"]
    files += list(tmp_path.glob("*.db-wal"))
    assert len(files) >= 3, sorted(os.listdir(tmp_path))
    for path in files:
        assert _mode(path) == 0o600, (path.name, oct(_mode(path)))


def test_webhook_credentials_and_remote_bodies_stay_out_of_log_and_last_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    with _NosySupplier() as supplier:
        url = (
            f"http://hook-user:hunter2-pass@127.0.0.1:{supplier.port}"
            "/jit/orders?token=tok-SECRET-9f8e&plant=1"
        )
        engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
        factory = make_session_factory(engine)
        try:
            (bin_id,) = seed(
                factory, webhook_url=url, webhook_secret=new_webhook_secret()
            )
            with transaction(factory) as s:
                b = s.get(Bin, bin_id)
                b.on_hand = 0
                order = maybe_reorder(s, b, REAL_CLOCK.time_ms(), {"test": True})
                assert order is not None
                order_id = order.id

            def failed() -> Order | None:
                with transaction(factory, readonly=True) as s:
                    o = s.get(Order, order_id)
                    return o if o is not None and o.state == "failed" else None

            got = wait_until(failed, timeout=60, what="the 404 to fail the order")
        finally:
            engine.dispose()
        assert supplier.auth_headers  # the credentials were used, just never shown

    assert got.last_error == "HTTP 404 Not Found"
    log = server.log.read_text()
    # the endpoint (host, port) is named; its path, query values and login are not
    assert f"127.0.0.1:{supplier.port}/***?token=***&plant=***" in log
    for secret in ("hunter2-pass", "hook-user", "tok-SECRET-9f8e", "pg-s3cret"):
        assert secret not in log, secret
    assert "INTERNAL-ONLY" not in log
