"""`jitstock demo` as a subprocess for the tests that watch the whole loop run:
start it on a port and data dir of the test's own, wait until its API answers,
stop it the way systemd or Ctrl-C would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# Start-up (synthetic history, broker, server, 24 pty scales, two edge processes) on a
# loaded box.
START_DEADLINE_S = 150.0


def start_demo(
    tmp_path: Path,
    port: int,
    duration_s: float,
    name: str = "demo",
    *,
    own_group: bool = False,
) -> subprocess.Popen[bytes]:
    """The demo on ``port`` with its data in ``tmp_path/demo``; output in
    ``tmp_path/<name>.out`` and ``.err``.  ``duration_s`` is a backstop only:
    the tests stop it with SIGTERM.  No JITSTOCK_* variable of the test run leaks in.
    ``own_group``: in a session and process group of its own, as a shell runs a
    foreground command, so a test can signal the whole group as a terminal's Ctrl-C."""
    with (
        open(tmp_path / f"{name}.out", "wb") as out,
        open(tmp_path / f"{name}.err", "wb") as err,
    ):
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jitstock.cli",
                "demo",
                "--duration",
                str(int(duration_s)),
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "demo"),
            ],
            stdout=out,
            stderr=err,
            env={k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")},
            start_new_session=own_group,
            # a terminal's foreground command has Ctrl-C's default action even when
            # the test run itself was started in the background (which ignores SIGINT,
            # and children inherit that)
            preexec_fn=_default_sigint if own_group else None,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_up(
    api: httpx.Client,
    proc: subprocess.Popen[bytes],
    err: Path,
    deadline_s: float = START_DEADLINE_S,
) -> None:
    """Until the demo's /healthz answers 200; fails with its stderr if it died."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()[-3000:]
        try:
            if api.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"demo API not up after {deadline_s} s")


def stop_demo(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
