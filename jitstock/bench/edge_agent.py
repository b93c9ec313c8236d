"""The edge agent process itself under load: CPU share and RSS of a real `jitstock-edge`.

N simulated scales (stream at 10 frames/s, or MT-SICS polled every 0.1 s) on
pseudo-terminals in this process, a private Mosquitto, and `jitstock-edge` as a
child process with a config file, exactly as on a Pi. After every bin reports ok
and has published, the agent's user+system CPU time (``/proc/<pid>/stat``) over
the window divided by the window is its share of one core; RSS comes from
``/proc/<pid>/status``. The simulators and the broker run in other processes, so
they are not counted (they do load the same machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from jitstock.bench.services import Mosquitto
from jitstock.firmware_sim.fleet import BinSpec, SimulatedFleet
from jitstock.firmware_sim.scale import ScaleProtocol

# Frames (stream) or polls (MT-SICS) per second per scale: what the issue asks to measure.
FRAME_HZ = 10.0
# Demand per bin: a pick every ~30 s per bin keeps readings flowing without dominating.
PARTS_PER_HOUR = 120.0
# How long the agent may take until every bin is ok and has published (32 ptys, cold start).
WARMUP_TIMEOUT_S = 120.0
# Let start-up work (imports, first status, outbox creation) finish before the window opens.
SETTLE_S = 2.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (fields 14 and 15 of /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size in MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


class _Watcher:
    """An MQTT subscriber on the agent's topics: latest status and readings per bin."""

    def __init__(self, port: int, site: str, agent: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.sensors_ok: dict[str, bool] = {}
        self.status_seen = False
        self.readings: dict[str, int] = {}
        self.batches = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.subscribe(f"jit/v1/{site}/{agent}/+", qos=1)
        self._client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = orjson.loads(msg.payload) if msg.payload else {}
        with self._lock:
            if msg.topic.endswith("/status"):
                self.status_seen = doc.get("state") == "online"
                self.sensors_ok = {s["bin"]: s["ok"] for s in doc.get("sensors", [])}
            elif msg.topic.endswith("/readings"):
                self.batches += 1
                for r in doc["readings"]:
                    self.readings[r["bin"]] = self.readings.get(r["bin"], 0) + 1

    def ready(self, bins: list[str]) -> bool:
        """Online, every bin ok on the status and published at least once."""
        with self._lock:
            return (
                self.status_seen
                and all(self.sensors_ok.get(b) for b in bins)
                and all(self.readings.get(b) for b in bins)
            )

    def counts(self) -> tuple[int, int]:
        """(readings, batches) received so far."""
        with self._lock:
            return sum(self.readings.values()), self.batches

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _config(path: Path, broker: Mosquitto, fleet: SimulatedFleet | None) -> None:
    lines = [
        'site = "bench"',
        'agent = "bench-pi"',
        f'mqtt_url = "{broker.url}"',
        f'outbox_path = "{path.parent / "outbox.db"}"',
    ]
    for bin_, port, proto in fleet.ports() if fleet else []:
        lines += [
            "",
            "[[scales]]",
            f'port = "{port}"',
            f'bin = "{bin_}"',
            f'protocol = "{proto}"',
            f"poll_interval_s = {1 / FRAME_HZ}",
        ]
    path.write_text("\n".join(lines) + "\n")


def measure(
    n_scales: int, protocol: ScaleProtocol, duration_s: float, seed: int = 1
) -> dict[str, float]:
    """Run one agent with n_scales simulated scales for duration_s; its CPU %, RSS and output."""
    with tempfile.TemporaryDirectory(prefix="jitstock-bench-edge-") as tmp:
        root = Path(tmp)
        (root / "broker").mkdir()
        broker = Mosquitto(root / "broker")
        broker.start()
        specs = [
            BinSpec(f"B{i:02d}", protocol, parts_per_hour=PARTS_PER_HOUR)
            for i in range(n_scales)
        ]
        fleet = (
            SimulatedFleet(specs, seed=seed, workdir=root / "ports", rate_hz=FRAME_HZ)
            if specs
            else None
        )
        watcher = _Watcher(broker.port, "bench", "bench-pi")
        agent: subprocess.Popen[bytes] | None = None
        try:
            if fleet:
                fleet.start()
                fleet.run_demand(auto_refill=True)
            config = root / "edge.toml"
            _config(config, broker, fleet)
            with open(root / "edge.log", "ab") as log:
                agent = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "jitstock.edge.cli",
                        "--config",
                        str(config),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            bins = [s.bin for s in specs]
            deadline = time.monotonic() + WARMUP_TIMEOUT_S
            while not watcher.ready(bins):
                if agent.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"agent not ready: {(root / 'edge.log').read_text()[-2000:]}"
                    )
                time.sleep(0.1)
            time.sleep(SETTLE_S)
            readings0, batches0 = watcher.counts()
            cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
            time.sleep(duration_s)
            cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
            rss, peak = rss_mib(agent.pid)
            readings1, batches1 = watcher.counts()
            if agent.poll() is not None:
                raise RuntimeError("agent exited during the measurement")
        finally:
            if agent is not None and agent.poll() is None:
                agent.terminate()
                agent.wait(30)
            watcher.close()
            if fleet:
                fleet.stop()
            broker.stop()
    return {
        "cpu_pct_of_one_core": (cpu1 - cpu0) / (t1 - t0) * 100,
        "rss_mib": rss,
        "peak_rss_mib": peak,
        "readings_published": readings1 - readings0,
        "batches_published": batches1 - batches0,
        "window_s": t1 - t0,
    }


def run_all(
    scale_counts: list[int], duration_s: float, seed: int = 1
) -> dict[str, float]:
    """Idle agent, then each count for stream and MT-SICS: flat keys for the bench table."""
    result: dict[str, float] = {
        "agent_window_s": duration_s,
        "agent_frame_hz": FRAME_HZ,
    }
    cases: list[tuple[str, int, ScaleProtocol]] = [("idle", 0, "stream")]
    for n in scale_counts:
        cases += [(f"{n}_stream", n, "stream"), (f"{n}_sics", n, "sics")]
    for name, n, proto in cases:
        m = measure(n, proto, duration_s, seed)
        result[f"agent_{name}_cpu_pct"] = m["cpu_pct_of_one_core"]
        result[f"agent_{name}_rss_mib"] = m["rss_mib"]
        result[f"agent_{name}_peak_rss_mib"] = m["peak_rss_mib"]
        if n:
            result[f"agent_{name}_readings"] = int(m["readings_published"])
    return result
