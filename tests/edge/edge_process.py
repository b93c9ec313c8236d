"""Running `jitstock-edge` as a child process with a config file, as systemd would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from jitstock import protocol as p
from tests.edge.mqtt_support import Collector

SITE, AGENT = "plant1", "pi-cli"
# Shrunk for tests: batches every 0.2 s, faults noticed after 1.5 s of silence.
TICK_S = 0.2
NO_DATA_S = 1.5


def toml_config(
    tmp_path: Path,
    broker_url: str,
    *,
    scales: Iterable[dict[str, object]] = (),
    scanners: Iterable[dict[str, object]] = (),
    signal: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
    name: str = "edge.toml",
) -> Path:
    """Write an edge config file; values are TOML-quoted by type."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    top = {
        "site": SITE,
        "agent": AGENT,
        "mqtt_url": broker_url,
        "mqtt_reconnect_max_s": 1.0,
        "outbox_path": str(tmp_path / "outbox.db"),
        "tick_s": TICK_S,
        **(extra or {}),
    }
    lines = [f"{k} = {value(v)}" for k, v in top.items()]
    lines += ["", "[signal]", f"no_data_timeout_s = {NO_DATA_S}"]
    lines += [f"{k} = {value(v)}" for k, v in (signal or {}).items()]
    for table, entries in (("scales", scales), ("scanners", scanners)):
        for entry in entries:
            lines += ["", f"[[{table}]]"]
            lines += [f"{k} = {value(v)}" for k, v in entry.items()]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def start_edge(
    config: Path, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`jitstock-edge --config <config>` with stdout and stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jitstock.edge.cli", "--config", str(config), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


def run_edge(config: Path, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `jitstock-edge --config <config>` to its end (for refused starts)."""
    return subprocess.run(
        [sys.executable, "-m", "jitstock.edge.cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("JITSTOCK_")},
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child left running by a failed test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def readings(sub: Collector, bin_: str) -> list[p.Reading]:
    """Every reading of ``bin_`` the subscriber saw, in arrival order."""
    out = []
    for m in sub.snapshot("/readings"):
        batch, _ = p.decode_readings(m.payload)
        out += [r for r in batch.readings if r.bin == bin_]
    return out


def statuses(sub: Collector) -> list[p.Status]:
    """Every status message the subscriber saw."""
    return [p.decode_status(m.payload) for m in sub.snapshot("/status")]


def assert_same_payload_per_seq(sub: Collector) -> None:
    """A duplicate is a re-send of the same batch, never a new batch reusing a seq."""
    by_seq: dict[int, bytes] = {}
    for m in sub.snapshot():
        if m.topic.endswith(("/readings", "/scans")):
            seq = m.doc["seq"]
            assert by_seq.setdefault(seq, m.payload) == m.payload, f"seq {seq} reused"
