"""The whole edge agent: simulated scales on real ptys -> agent -> real Mosquitto -> a subscriber."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock import protocol as p
from jitstock.edge.agent import Agent
from jitstock.edge.settings import EdgeSettings, ScaleSettings, ScannerSettings
from jitstock.edge.stability import SignalSettings
from jitstock.firmware_sim.scale import SimulatedScale
from jitstock.firmware_sim.scanner import SimulatedScanner
from tests.edge.mqtt_support import (
    Collector,
    assert_complete_in_order,
    publish_retained,
)
from tests.services import Mosquitto
from tests.waits import WAIT_S

SITE, AGENT = "plant1", "pi-1"
BINS = ("B1", "B2", "B3")
UNIT_G = 12.5
# The acceptance criterion's broker outage.
OUTAGE_S = 30.0
# Shrunk for tests: batches every 0.2 s, faults noticed after 1.5 s of silence.
TICK_S = 0.2
NO_DATA_S = 1.5
# Keep-alives give the outage tests a steady flow of batches besides the picks.
OUTAGE_KEEPALIVE_S = 3.0


@pytest.fixture
def scales(tmp_path: Path) -> Iterator[dict[str, SimulatedScale]]:
    workdir = tmp_path / "ports"
    workdir.mkdir()
    sims = {
        b: SimulatedScale(
            b,
            "sics" if b == "B3" else "stream",
            unit_weight_g=UNIT_G,
            count=100,
            seed=i,
            workdir=workdir,
        )
        for i, b in enumerate(BINS)
    }
    for s in sims.values():
        s.start()
    yield sims
    for s in sims.values():
        s.stop()


def edge_settings(
    tmp_path: Path,
    broker: Mosquitto,
    scales: dict[str, SimulatedScale],
    keepalive_s: float = 60.0,
    **kw,
) -> EdgeSettings:
    values = {
        "site": SITE,
        "agent": AGENT,
        "mqtt_url": broker.url,
        "mqtt_reconnect_max_s": 1.0,
        "outbox_path": tmp_path / "outbox.db",
        "tick_s": TICK_S,
        "scales": [
            ScaleSettings(port=s.port, bin=b, protocol=s.protocol)
            for b, s in scales.items()
        ],
        "signal": SignalSettings(no_data_timeout_s=NO_DATA_S, keepalive_s=keepalive_s),
    }
    return EdgeSettings(**{**values, **kw})


class RunningAgent:
    """An Agent running in a thread, as the CLI would run it in the main thread."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.agent = Agent(settings)
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.rc = self.agent.run()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self) -> int | None:
        self.agent.stop()
        self.thread.join(20)
        return self.rc


def readings(sub: Collector, bin_: str) -> list[p.Reading]:
    out = []
    for m in sub.snapshot("/readings"):
        batch, rejects = p.decode_readings(m.payload, expected_agent=AGENT)
        assert rejects == []
        out += [r for r in batch.readings if r.bin == bin_]
    return out


def changes(series: list[p.Reading], noise_g: float = 1.0) -> list[p.Reading]:
    """Readings that differ from the one before (keep-alives repeat the last weight)."""
    return [
        b
        for a, b in zip(series, series[1:], strict=False)
        if abs(b.grams - a.grams) > noise_g
    ]


def last_status(sub: Collector) -> p.Status | None:
    msgs = sub.snapshot("/status")
    return p.decode_status(msgs[-1].payload) if msgs else None


def sensor(sub: Collector, bin_: str) -> p.SensorStatus | None:
    status = last_status(sub)
    if status is None or status.state != "online":
        return None
    return next((s for s in status.sensors if s.bin == bin_), None)


def test_pick_of_three_parts_gives_one_reading_of_minus_37_5_g(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    run = RunningAgent(edge_settings(tmp_path, mosquitto, scales, inflight_window=100))
    try:
        sub.wait_for(
            lambda: all(readings(sub, b) for b in BINS),
            what="first reading of every bin",
        )
        before = readings(sub, "B1")
        scales["B1"].pick(3)
        sub.wait_for(
            lambda: len(readings(sub, "B1")) > len(before),
            what="reading after the pick",
        )
        time.sleep(2.0)  # the scale has settled long since: nothing more may follow
        after = changes(readings(sub, "B1")[len(before) - 1 :])
        assert len(after) == 1, f"expected one change after the pick, got {after}"
        change = after[0].grams - before[-1].grams
        assert change == pytest.approx(-3 * UNIT_G, abs=1.0)
        assert after[0].stable
        assert all(r.stable for r in readings(sub, "B1"))
        # the other bins were not touched and produced no change readings
        assert all(
            abs(r.grams - readings(sub, "B2")[0].grams) < 1.0
            for r in readings(sub, "B2")
        )
        status = last_status(sub)
        assert status is not None
        assert status.state == "online"
        assert [s.bin for s in status.sensors] == list(BINS)
        assert all(s.ok for s in status.sensors)
    finally:
        assert run.stop() == 0
        sub.close()
    assert last_status(sub) is not None


def test_one_batch_per_tick_carries_every_changed_bin_and_scans_go_to_their_topic(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    scanner = SimulatedScanner(workdir=tmp_path)
    scanner.start()
    # a tick longer than the test: the test calls tick() itself, so batch boundaries are known
    settings = edge_settings(
        tmp_path,
        mosquitto,
        scales,
        tick_s=60.0,
        scanners=[ScannerSettings(port=scanner.port, id="S1")],
    )
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    run = RunningAgent(settings)
    try:
        sub.wait_for(
            lambda: run.agent.stats["readings"] >= 3, what="first reading of each scale"
        )
        run.agent.tick()
        sub.wait_for(lambda: sub.snapshot("/readings"), what="readings batch")
        time.sleep(0.5)
        batches = sub.snapshot("/readings")
        assert len(batches) == 1
        assert {r["bin"] for r in batches[0].doc["readings"]} == set(BINS)
        scanner.scan("4006381333931")
        scanner.scan("KANBAN-0042")
        sub.wait_for(lambda: run.agent.stats["scans"] == 2, what="scans read")
        run.agent.tick()
        sub.wait_for(lambda: sub.snapshot("/scans"), what="scans batch")
        scans = sub.snapshot("/scans")
        assert len(scans) == 1
        assert [s["code"] for s in scans[0].doc["scans"]] == [
            "4006381333931",
            "KANBAN-0042",
        ]
        assert scans[0].doc["scans"][0]["scanner"] == "S1"
        assert sub.seqs() == [1, 2]
    finally:
        run.stop()
        sub.close()
        scanner.stop()


def test_faulty_port_shows_on_status_recovers_and_the_others_keep_publishing(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    run = RunningAgent(edge_settings(tmp_path, mosquitto, scales))
    try:
        sub.wait_for(lambda: all(readings(sub, b) for b in BINS), what="first readings")
        # garbage and error frames on B2
        for _ in range(5):
            scales["B2"].inject_garbage(64)
        sub.wait_for(
            lambda: (s := sensor(sub, "B2")) is not None and not s.ok, what="B2 fault"
        )
        assert sensor(sub, "B2").fault in ("garbage", "scale_error")
        sub.wait_for(lambda: sensor(sub, "B2").ok, what="B2 recovered")
        scales["B2"].error_frames(5)
        sub.wait_for(
            lambda: sensor(sub, "B2").fault == "scale_error", what="B2 scale error"
        )
        sub.wait_for(lambda: sensor(sub, "B2").ok, what="B2 recovered again")
        # unplug B3 (SICS): port_error or no_data, while B1 keeps publishing
        scales["B3"].unplug()
        sub.wait_for(lambda: not sensor(sub, "B3").ok, what="B3 fault")
        assert sensor(sub, "B3").fault in ("port_error", "no_data")
        n = len(readings(sub, "B1"))
        scales["B1"].pick(2)
        sub.wait_for(
            lambda: len(readings(sub, "B1")) > n,
            what="B1 reading while B3 is unplugged",
        )
        assert sensor(sub, "B1").ok
        scales["B3"].replug()
        sub.wait_for(lambda: sensor(sub, "B3").ok, what="B3 recovered after replug")
        n3 = len(readings(sub, "B3"))
        scales["B3"].pick(4)
        sub.wait_for(
            lambda: len(readings(sub, "B3")) > n3, what="B3 reading after replug"
        )
        assert run.alive
    finally:
        assert run.stop() == 0
        sub.close()


def test_retained_config_renames_a_bin_and_changes_thresholds_without_restart(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/#"])
    run = RunningAgent(edge_settings(tmp_path, mosquitto, scales))
    try:
        sub.wait_for(lambda: readings(sub, "B1"), what="first reading")
        config = p.AgentConfig(
            bins=(p.BinMapping(scales["B1"].port, "B1-left"),), step_g=30.0
        )
        publish_retained(
            mosquitto.port,
            p.agent_topic(SITE, AGENT, "config"),
            p.encode_config(config),
        )
        sub.wait_for(
            lambda: sensor(sub, "B1-left") is not None, what="renamed bin on status"
        )
        assert sensor(sub, "B1") is None
        time.sleep(2.0)  # the reader picks the new settings up and re-settles
        ref = readings(sub, "B1")[-1]
        scales["B1"].pick(
            1
        )  # 12.5 g is below the new 30 g step: no change is published
        time.sleep(3.0)
        assert changes([ref, *readings(sub, "B1-left")]) == []
        scales["B1"].pick(
            3
        )  # 50 g below the last published weight: published, under the new name
        sub.wait_for(
            lambda: changes([ref, *readings(sub, "B1-left")]),
            what="reading on the renamed bin",
        )
        assert changes([ref, *readings(sub, "B1-left")])[0].grams == pytest.approx(
            ref.grams - 4 * UNIT_G, abs=1.0
        )
        assert run.agent.stats["configs_applied"] == 1
        # a bad config is ignored; the agent goes on
        publish_retained(
            mosquitto.port, p.agent_topic(SITE, AGENT, "config"), b'{"bins": 5}'
        )
        sub.wait_for(
            lambda: run.agent.publisher.stats["config_rejected"] == 1,
            what="rejected config",
        )
        assert run.alive
    finally:
        run.stop()
        sub.close()


def picker(
    scales: dict[str, SimulatedScale], stop: threading.Event, every_s: float = 1.5
) -> threading.Thread:
    """Keeps picking a part from one bin after the other until stopped (a running line)."""

    def loop() -> None:
        i = 0
        while not stop.wait(every_s):
            scales[BINS[i % 2]].pick(1)  # B1 and B2 (stream); B3 stays quiet
            i += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


@pytest.mark.slow
def test_broker_outage_of_30_s_loses_no_batch_and_keeps_order(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    sub = Collector(
        mosquitto.port,
        [f"jit/v1/{SITE}/{AGENT}/+"],
        client_id="outage-sub",
        persistent=True,
    )
    run = RunningAgent(
        edge_settings(tmp_path, mosquitto, scales, keepalive_s=OUTAGE_KEEPALIVE_S)
    )
    stop_picking = threading.Event()
    try:
        sub.wait_for(lambda: all(readings(sub, b) for b in BINS), what="first readings")
        picker(scales, stop_picking)
        time.sleep(2.0)
        mosquitto.stop()
        seq_at_outage = run.agent.outbox.last_seq
        time.sleep(OUTAGE_S)
        assert run.agent.outbox.last_seq >= seq_at_outage + 10, (
            "the agent kept batching during the outage"
        )
        assert run.agent.outbox.depth > 0
        mosquitto.start()
        time.sleep(3.0)
        stop_picking.set()
        time.sleep(2 * TICK_S)
        last = run.agent.outbox.last_seq
        sub.wait_seqs(last)
        sub.wait_for(lambda: run.agent.outbox.depth == 0, what="outbox drained")
        assert_complete_in_order(sub.seqs(), range(1, last + 1), max_duplicates=5)
        assert_same_payload_per_seq(sub)
        assert sub.snapshot("/status")[-1].doc["state"] == "online"
    finally:
        stop_picking.set()
        run.stop()
        sub.close()


def assert_same_payload_per_seq(sub: Collector) -> None:
    """A duplicate is a re-send of the same batch, never a new batch reusing a seq."""
    by_seq: dict[int, bytes] = {}
    for m in sub.snapshot():
        if m.topic.endswith(("/readings", "/scans")):
            seq = m.doc["seq"]
            assert by_seq.setdefault(seq, m.payload) == m.payload, f"seq {seq} reused"


def write_config(
    tmp_path: Path, broker: Mosquitto, scales: dict[str, SimulatedScale]
) -> Path:
    lines = [
        f'site = "{SITE}"',
        f'agent = "{AGENT}"',
        f'mqtt_url = "{broker.url}"',
        "mqtt_reconnect_max_s = 1.0",
        f'outbox_path = "{tmp_path / "outbox.db"}"',
        f"tick_s = {TICK_S}",
        "",
        "[signal]",
        f"no_data_timeout_s = {NO_DATA_S}",
        f"keepalive_s = {OUTAGE_KEEPALIVE_S}",
    ]
    for b, s in scales.items():
        lines += [
            "",
            "[[scales]]",
            f'port = "{s.port}"',
            f'bin = "{b}"',
            f'protocol = "{s.protocol}"',
        ]
    path = tmp_path / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_edge_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jitstock.edge.cli", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def queued_on_disk(path: Path) -> int:
    """Batches waiting in an outbox file (read with a second connection, as after a crash)."""
    from jitstock.edge.outbox import Outbox

    with Outbox(path) as box:
        return box.depth


def queued_while_running(path: Path) -> int:
    """Batches waiting in the outbox of a running agent: a read-only look that takes
    neither its lock file (the agent owns it) nor a write."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        (n,) = db.execute("SELECT COUNT(*) FROM batches").fetchone()
        return int(n)
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_leaves_offline_will_and_restart_resends_everything_in_order(
    tmp_path: Path, mosquitto: Mosquitto, scales: dict[str, SimulatedScale]
) -> None:
    config = write_config(tmp_path, mosquitto, scales)
    log = tmp_path / "edge.log"
    sub = Collector(
        mosquitto.port,
        [f"jit/v1/{SITE}/{AGENT}/+"],
        client_id="kill-sub",
        persistent=True,
    )
    stop_picking = threading.Event()
    proc = start_edge_process(config, log)
    try:
        sub.wait_for(
            lambda: all(readings(sub, b) for b in BINS),
            what=f"first readings; log: {log}",
        )
        picker(scales, stop_picking, every_s=0.7)
        sub.wait_for(lambda: len(sub.seqs()) >= 10, what="traffic before the kill")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        # the broker publishes the last will: retained status says offline
        sub.wait_for(
            lambda: last_status(sub).state == "offline", what="offline via last will"
        )
        time.sleep(1.0)  # the line keeps running while the Pi reboots
        proc = start_edge_process(config, log)
        sub.wait_for(lambda: last_status(sub).state == "online", what="online again")
        # now the worst case: batches queued on disk (broker away) when the agent dies
        mosquitto.stop()
        time.sleep(4.0)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert queued_on_disk(tmp_path / "outbox.db") > 0
        mosquitto.start()
        proc = start_edge_process(config, log)
        # up and caught up before the SIGTERM below: its disk queue replayed (a fixed
        # sleep here sent the signal before a slow start had installed its handler)
        sub.wait_for(
            lambda: queued_while_running(tmp_path / "outbox.db") == 0,
            what=f"the disk queue replayed after the restart; log: {log}",
        )
        stop_picking.set()
        time.sleep(1.0)
        # SIGTERM: clean shutdown, exit code 0, retained offline
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
        sub.wait_for(
            lambda: last_status(sub).state == "offline", what="offline after SIGTERM"
        )
        assert queued_on_disk(tmp_path / "outbox.db") == 0
        seqs = sub.seqs()
        assert_complete_in_order(seqs, range(1, max(seqs) + 1), max_duplicates=10)
        assert_same_payload_per_seq(sub)
    finally:
        stop_picking.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
