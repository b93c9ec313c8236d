"""Status and last will through the CLI: no empty `online` at start-up, the will is the
last status (sensors and ts_ms) as `offline`, and a moving MT-SICS load is not stable."""

from __future__ import annotations

import signal
from pathlib import Path

from jitstock import protocol as p
from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.edge_process import (
    AGENT,
    SITE,
    readings,
    start_edge,
    statuses,
    stop,
    toml_config,
)
from tests.edge.mqtt_support import Collector
from tests.services import Mosquitto
from tests.waits import WAIT_S


def test_last_will_carries_the_current_sensors_and_the_time_of_the_last_status(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    with (
        SimulatedScale("B1", "stream", workdir=tmp_path) as b1,
        SimulatedScale("B2", "stream", workdir=tmp_path) as b2,
    ):
        config = toml_config(
            tmp_path,
            mosquitto.url,
            scales=[{"port": b1.port, "bin": "B1"}, {"port": b2.port, "bin": "B2"}],
        )
        sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
        proc = start_edge(config, tmp_path / "edge.log")
        try:

            def last() -> p.Status | None:
                got = statuses(sub)
                return got[-1] if got else None

            sub.wait_for(
                lambda: (s := last()) is not None and all(x.ok for x in s.sensors),
                what="online with both bins ok",
            )
            b2.unplug()  # a fault after connect: the will must learn it
            sub.wait_for(
                lambda: (
                    (s := last()) is not None
                    and [x.fault for x in s.sensors] == [None, "port_error"]
                ),
                what="status with B2's fault",
            )
            online = last()
            assert online is not None
            assert online.state == "online"
            proc.send_signal(signal.SIGKILL)
            proc.wait(WAIT_S)
            sub.wait_for(lambda: last().state == "offline", what="last will")
            will = last()
            assert will.sensors == online.sensors
            assert will.ts_ms == online.ts_ms
            # never an `online` without its sensors
            assert all(s.sensors for s in statuses(sub) if s.state == "online")
        finally:
            stop(proc)
            sub.close()


def test_a_moving_sics_load_keeps_alive_as_not_stable(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    with SimulatedScale(
        "S1", "sics", workdir=tmp_path, sics_stable_timeout_s=0.5
    ) as scale:
        config = toml_config(
            tmp_path,
            mosquitto.url,
            scales=[{"port": scale.port, "bin": "S1", "protocol": "sics"}],
            signal={"keepalive_s": 0.5},
        )
        sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
        proc = start_edge(config, tmp_path / "edge.log")
        try:
            sub.wait_for(
                lambda: any(r.stable for r in readings(sub, "S1")), what="stable weight"
            )
            scale.sway(True)  # the load never settles
            mark = len(readings(sub, "S1"))
            sub.wait_for(
                lambda: sum(not r.stable for r in readings(sub, "S1")[mark:]) >= 3,
                what="keep-alives flagged not stable",
            )
            scale.sway(False)
            mark = len(readings(sub, "S1"))
            sub.wait_for(
                lambda: any(r.stable for r in readings(sub, "S1")[mark:]),
                what="stable again once settled",
            )
        finally:
            stop(proc)
            sub.close()
