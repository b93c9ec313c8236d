"""One owner per outbox and port: a second `jitstock-edge` on the same config is refused
and the first one keeps publishing contiguous, never-reused seqs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.edge_process import (
    AGENT,
    SITE,
    assert_same_payload_per_seq,
    readings,
    run_edge,
    start_edge,
    stop,
    toml_config,
)
from tests.edge.mqtt_support import Collector, assert_complete_in_order
from tests.services import Mosquitto
from tests.waits import WAIT_S


@pytest.fixture
def scale(tmp_path: Path) -> Iterator[SimulatedScale]:
    with SimulatedScale("B1", "stream", workdir=tmp_path) as sim:
        yield sim


def test_second_instance_exits_2_naming_the_first_which_keeps_publishing(
    tmp_path: Path, mosquitto: Mosquitto, scale: SimulatedScale
) -> None:
    config = toml_config(
        tmp_path,
        mosquitto.url,
        scales=[{"port": scale.port, "bin": "B1"}],
        signal={"keepalive_s": 0.5},  # a steady flow of batches to count
    )
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
    first = start_edge(config, tmp_path / "first.log")
    try:
        sub.wait_for(lambda: len(sub.seqs()) >= 3, what="first agent publishing")
        second = run_edge(config)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert f"pid {first.pid}" in lines[0]
        assert str(tmp_path / "outbox.db") in lines[0]
        # the port is the first agent's too: an exclusive open elsewhere is refused
        with pytest.raises(serial.SerialException):
            serial.Serial(scale.port, exclusive=True, timeout=0.1)
        before = max(sub.seqs())
        sub.wait_for(lambda: max(sub.seqs()) >= before + 5, what="first keeps going")
        assert first.poll() is None
        scale.pick(2)
        sub.wait_for(
            lambda: any(abs(r.grams - readings(sub, "B1")[0].grams) > 20 for r in readings(sub, "B1")),
            what="the pick, published by the first agent",
        )  # fmt: skip
        time.sleep(0.5)
        seqs = sub.seqs()
        assert_complete_in_order(seqs, range(1, max(seqs) + 1), max_duplicates=0)
        assert_same_payload_per_seq(sub)
        connects = (tmp_path / "first.log").read_text().count("connected to")
        assert connects == 1, (
            "the second instance never knocked the first off the broker"
        )
    finally:
        stop(first)
        sub.close()


def test_a_killed_owner_leaves_no_stale_lock(
    tmp_path: Path, mosquitto: Mosquitto, scale: SimulatedScale
) -> None:
    config = toml_config(
        tmp_path, mosquitto.url, scales=[{"port": scale.port, "bin": "B1"}]
    )
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
    proc = start_edge(config, tmp_path / "a.log")
    try:
        sub.wait_for(lambda: sub.seqs(), what="first batch")
        proc.kill()
        proc.wait(WAIT_S)
        proc = start_edge(config, tmp_path / "b.log")
        last = max(sub.seqs())
        sub.wait_for(
            lambda: max(sub.seqs()) > last, what="the restarted agent publishing"
        )
        assert proc.poll() is None
    finally:
        stop(proc)
        sub.close()
