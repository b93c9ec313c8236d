"""What the ingest benchmarks share: the broker, the server child process, the
do-nothing subscriber baseline, the supplier endpoint, and reading CPU and the
server's histograms.  Used by :mod:`jitstock.bench.ingest` (rising rates) and
:mod:`jitstock.bench.resend` (issue 12's re-send load)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock.bench.services import InfluxDB, Mosquitto, wait_port

# the server's MQTT 5 Receive Maximum bounds what is in flight; the rest queues here
BROKER_CONF = "max_queued_messages 2000000\nmax_queued_bytes 0\npersistence false\n"
# Seconds each server took to exit after SIGTERM, in the order they were stopped.
STOP_S: list[float] = []


def broker(workdir: Path) -> Mosquitto:
    """A private Mosquitto whose queue holds a whole run (nothing dropped while the server lags)."""
    return Mosquitto(workdir, extra_conf=BROKER_CONF)


def counter(url: str, topic: str, ready: Any, stop: Any, out: mp.Queue[Any]) -> None:
    """The baseline: a paho QoS 1 subscriber that parses each message and stores nothing."""
    port = int(url.rsplit(":", 1)[1])
    count = 0

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal count
        count += len(orjson.loads(msg.payload)["readings"])

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-nothing", protocol=mqtt.MQTTv5
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    ready.set()
    stop.wait()
    client.loop_stop()
    client.disconnect()
    out.put({"count": count, "cpu_s": time.process_time()})


def beside_counter(
    ctx: Any, url: str, topic: str, rate: int, load: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """The do-nothing subscriber's figures for one load at `rate` (`load` publishes and
    returns its generator's report, with "sent" and "seconds")."""
    ready, stop = ctx.Event(), ctx.Event()
    q: mp.Queue[Any] = ctx.Queue()
    c = ctx.Process(target=counter, args=(url, topic, ready, stop, q))
    c.start()
    ready.wait(30)
    time.sleep(0.3)
    sent = load()
    time.sleep(1.0)  # the last messages reach the subscriber
    stop.set()
    got = q.get(timeout=30)
    c.join()
    return {
        "target_readings_s": rate,
        "published_readings_s": round(sent["sent"] / sent["seconds"]),
        "received": got["count"],
        "lost": sent["sent"] - got["count"],
        "subscriber_cpu_us_per_reading": round(
            got["cpu_s"] / max(1, got["count"]) * 1e6, 2
        ),
    }


class Receiver:
    """Supplier endpoint: when each order's webhook first arrived, by the order's bin
    or by its webhook-id (the order id)."""

    def __init__(self, key: Literal["bin", "webhook-id"]) -> None:
        self.arrivals: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.time()
                if key == "bin":
                    ident = str(json.loads(body)["data"]["order"]["bin"])
                else:
                    ident = self.headers.get("webhook-id", "")
                receiver.arrivals.setdefault(ident, at)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def server(
    workdir: Path, env: dict[str, str], tree: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`jitstock server` as a child process (of another checkout with ``tree``); stopped
    with SIGTERM at the end, the seconds it took to exit appended to STOP_S."""
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    with open(workdir / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jitstock.cli", "server", "--log-level", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(tree) if tree is not None else None,
        )
    try:
        wait_port(int(env["JITSTOCK_HTTP_PORT"]), timeout=60)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        STOP_S.append(round(time.monotonic() - t0, 2))


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of one process."""
    f = _stat(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_tree_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants (a server's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
            except (OSError, IndexError):
                pass
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_s(p)
        except OSError:
            continue
        todo += parents.get(p, [])
    return total


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def histogram(base: str, name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of each bucket of a histogram on the server's /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out.append(
                (float("inf") if le == "+Inf" else float(le), float(line.split()[-1]))
            )
    return out


def metric(base: str, name: str) -> float:
    """The value of an unlabelled sample on the server's /metrics (0 when absent)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[-1])
    return 0.0


def histogram_quantile(
    before: list[tuple[float, float]], after: list[tuple[float, float]], q: float
) -> float | None:
    """Quantile of the observations between two scrapes of a cumulative histogram (bucket upper bound)."""
    deltas = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None
    return next((le for le, cum in deltas if cum >= q * total), None)


def stored(influx: InfluxDB, db: str, where: str) -> int:
    """Readings InfluxDB holds in ``db`` matching an InfluxQL condition."""
    influx.query(
        f'CREATE DATABASE "{db}"'
    )  # idempotent; the server creates it on first write
    res = influx.query(f"SELECT count(grams) FROM bin_level WHERE {where}", db=db)
    return int(res["series"][0]["values"][0][1]) if "series" in res else 0
