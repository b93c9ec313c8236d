"""Live config is layered on the file: each retained config applies over the file's
values, never over an earlier one, and an empty retained config restores the file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jitstock import protocol as p
from jitstock.firmware_sim.modbus import SimulatedModbusBus
from jitstock.firmware_sim.scale import SimulatedScale
from tests.edge.edge_process import (
    AGENT,
    SITE,
    readings,
    start_edge,
    stop,
    toml_config,
)
from tests.edge.mqtt_support import Collector, publish_retained
from tests.services import Mosquitto

# The file's keep-alive and the one a retained config sets: far enough apart that a
# gap between two keep-alives says which one is in force.
FILE_KEEPALIVE_S = 0.5
CONFIG_KEEPALIVE_S = 3.0


@pytest.fixture
def scale(tmp_path: Path) -> Iterator[SimulatedScale]:
    with SimulatedScale("B1", "stream", unit_weight_g=12.5, workdir=tmp_path) as sim:
        yield sim


def keepalive_gaps(sub: Collector, after: int) -> list[float]:
    """Seconds between consecutive readings of B1 (a quiet bin: keep-alives) from index ``after``."""
    ts = [r.ts_ms for r in readings(sub, "B1")[after:]]
    return [(b - a) / 1000 for a, b in zip(ts, ts[1:], strict=False)]


def applied(log: Path, n: int) -> bool:
    return log.read_text().count("applied config") >= n


def test_keepalive_3_then_step_50_then_empty_ends_with_the_files_values(
    tmp_path: Path, mosquitto: Mosquitto, scale: SimulatedScale
) -> None:
    config = toml_config(
        tmp_path,
        mosquitto.url,
        scales=[{"port": scale.port, "bin": "B1"}],
        signal={"keepalive_s": FILE_KEEPALIVE_S, "step_g": 2.0},
    )
    log = tmp_path / "edge.log"
    topic = p.agent_topic(SITE, AGENT, "config")
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
    proc = start_edge(config, log)
    try:
        sub.wait_for(lambda: len(readings(sub, "B1")) >= 3, what="file keep-alives")

        # 1. {keepalive 3}: keep-alives slow down
        publish_retained(mosquitto.port, topic, b'{"keepalive_s": 3}')
        sub.wait_for(lambda: applied(log, 1), what="config 1 applied")
        mark = len(readings(sub, "B1"))
        sub.wait_for(
            lambda: any(
                g >= CONFIG_KEEPALIVE_S * 0.9 for g in keepalive_gaps(sub, mark)
            ),
            what="a 3 s keep-alive gap",
        )

        # 2. {step 50} replaces it: keep-alive back to the file's, step 50 g
        publish_retained(mosquitto.port, topic, b'{"step_g": 50}')
        sub.wait_for(lambda: applied(log, 2), what="config 2 applied")
        mark = len(readings(sub, "B1"))
        sub.wait_for(
            lambda: (
                sum(g < CONFIG_KEEPALIVE_S / 2 for g in keepalive_gaps(sub, mark)) >= 3
            ),
            what="keep-alives at the file's pace again under {step_g: 50}",
        )
        before = readings(sub, "B1")[-1].grams
        scale.pick(3)  # 37.5 g: below the 50 g step, so only keep-alives carry it
        sub.wait_for(
            lambda: abs(readings(sub, "B1")[-1].grams - (before - 37.5)) < 2.0,
            what="the new weight, carried by a keep-alive",
        )

        # 3. empty retained config: the file's step (2 g) and keep-alive again
        publish_retained(mosquitto.port, topic, b"")
        sub.wait_for(lambda: applied(log, 3), what="empty config restores the file")
        assert "back to the file's values" in log.read_text()
        mark = len(readings(sub, "B1"))
        sub.wait_for(
            lambda: (
                sum(g < CONFIG_KEEPALIVE_S / 2 for g in keepalive_gaps(sub, mark)) >= 3
            ),
            what="keep-alives at the file's pace after the empty config",
        )
        lines = [ln for ln in log.read_text().splitlines() if "applied config" in ln]
        assert f"keepalive_s={FILE_KEEPALIVE_S}" in lines[-1]
        assert "step_g=2.0" in lines[-1]
        assert "keepalive_s=3.0" in lines[0]
        assert "step_g=2.0" in lines[0]
        assert f"keepalive_s={FILE_KEEPALIVE_S}" in lines[1]
        assert "step_g=50.0" in lines[1]
    finally:
        stop(proc)
        sub.close()


def test_config_mappings_are_layered_on_the_file_too(
    tmp_path: Path, mosquitto: Mosquitto, scale: SimulatedScale
) -> None:
    """A rename from one config is undone when the next config no longer says it; a
    config the agent cannot apply (channel 1) is one log line, no traceback."""
    config = toml_config(
        tmp_path, mosquitto.url, scales=[{"port": scale.port, "bin": "B1"}]
    )
    log = tmp_path / "edge.log"
    topic = p.agent_topic(SITE, AGENT, "config")
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
    proc = start_edge(config, log)

    def sensors() -> list[str]:
        msgs = sub.snapshot("/status")
        return (
            [s.bin for s in p.decode_status(msgs[-1].payload).sensors] if msgs else []
        )

    try:
        sub.wait_for(lambda: sensors() == ["B1"], what="status with B1")
        rename = p.AgentConfig(bins=(p.BinMapping(scale.port, "B1-left"),))
        publish_retained(mosquitto.port, topic, p.encode_config(rename))
        sub.wait_for(lambda: sensors() == ["B1-left"], what="renamed")
        publish_retained(mosquitto.port, topic, b'{"keepalive_s": 30}')
        sub.wait_for(lambda: sensors() == ["B1"], what="the file's bin name again")
        channel = (
            b'{"bins": [{"port": "%s", "bin": "X", "channel": 1}]}'
            % scale.port.encode()
        )
        publish_retained(mosquitto.port, topic, channel)
        sub.wait_for(
            lambda: "ignoring config" in log.read_text(), what="refusal logged"
        )
        text = log.read_text()
        assert "Traceback" not in text
        assert "channel 1" in text
        assert sensors() == ["B1"]
        assert proc.poll() is None
    finally:
        stop(proc)
        sub.close()


def test_a_retained_config_reaches_modbus_indicators(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Found from the outside: a config mapping a Modbus indicator's port (the form
    docs/protocol.md gave) missed its reader, which is keyed ``{port}#{unit_id}``: the
    indicator kept its bin and the agent opened the RS-485 port a second time as a
    stream scale (`port_error` for the new bin). Now ``{port}#{unit_id}`` names one
    indicator, a bare port names the only one on it, and a bare port of a bus with
    several is refused (the previous config stays)."""
    two = SimulatedModbusBus("rtu", workdir=tmp_path, name="rs485-a")
    one = SimulatedModbusBus("rtu", workdir=tmp_path, name="rs485-b")
    for bus, unit, bin_ in ((two, 1, "B1"), (two, 2, "B2"), (one, 5, "B3")):
        bus.add_unit(unit, bin_, count=40 + unit, unit_weight_g=10.0, tare_g=500.0)
    two.start()
    one.start()
    modbus = {"protocol": "modbus", "poll_interval_s": 0.1, "timeout_s": 0.3}
    registers = {"weight_register": 0, "data_type": "int32", "factor": 0.1}
    config = toml_config(
        tmp_path,
        mosquitto.url,
        scales=[
            {**modbus, **registers, "port": two.port, "bin": "B1", "unit_id": 1},
            {**modbus, **registers, "port": two.port, "bin": "B2", "unit_id": 2},
            {**modbus, **registers, "port": one.port, "bin": "B3", "unit_id": 5},
        ],
        signal={"stability_window_s": 0.3, "keepalive_s": 0.5},
    )
    log = tmp_path / "edge.log"
    topic = p.agent_topic(SITE, AGENT, "config")
    sub = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/+"])
    proc = start_edge(config, log)

    def sensors() -> list[tuple[str, bool]]:
        msgs = sub.snapshot("/status")
        if not msgs:
            return []
        return [(s.bin, s.ok) for s in p.decode_status(msgs[-1].payload).sensors]

    try:
        sub.wait_for(
            lambda: sensors() == [("B1", True), ("B2", True), ("B3", True)],
            what="three indicators weighing",
        )
        remap = p.AgentConfig(
            bins=(
                p.BinMapping(f"{two.port}#1", "B1-new"),  # one of two on the bus
                p.BinMapping(one.port, "B3-new"),  # the only one on its bus
            )
        )
        publish_retained(mosquitto.port, topic, p.encode_config(remap))
        sub.wait_for(
            lambda: sensors() == [("B1-new", True), ("B2", True), ("B3-new", True)],
            what="both indicators re-mapped, none opened twice",
        )
        for bin_, grams in (("B1-new", 500 + 41 * 10.0), ("B3-new", 500 + 45 * 10.0)):
            sub.wait_for(
                lambda b=bin_, g=grams: any(
                    abs(r.grams - g) < 1 for r in readings(sub, b)
                ),
                what=f"{bin_} read from its indicator",
            )
        # a bare port of a bus with two indicators names neither: refused, one line
        both = p.AgentConfig(bins=(p.BinMapping(two.port, "B9"),))
        publish_retained(mosquitto.port, topic, p.encode_config(both))
        sub.wait_for(
            lambda: "a Modbus bus with 2 indicators" in log.read_text(),
            what="refusal logged",
        )
        # a unit id the file does not have: refused too (the log line is rate-limited,
        # so a valid config after it shows it was handled: configs apply in order)
        unknown = p.AgentConfig(bins=(p.BinMapping(f"{two.port}#9", "B9"),))
        publish_retained(mosquitto.port, topic, p.encode_config(unknown))
        last = p.AgentConfig(bins=(p.BinMapping(f"{two.port}#2", "B2-new"),))
        publish_retained(mosquitto.port, topic, p.encode_config(last))
        sub.wait_for(
            lambda: sensors() == [("B1", True), ("B2-new", True), ("B3", True)],
            what="the last config applied over the file",
        )
        text = log.read_text()
        assert "Traceback" not in text
        assert "cannot open" not in text  # no second reader on a Modbus port
        assert {b for b, _ in sensors()} == {"B1", "B2-new", "B3"}
        assert proc.poll() is None
    finally:
        stop(proc)
        sub.close()
        two.stop()
        one.stop()
