"""ModbusScaleReader against the simulated indicators: readings, unplug/replug of the RTU adapter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitstock.edge.modbus import ModbusBus, ModbusScaleReader
from jitstock.edge.registers import ModbusSpec
from jitstock.edge.scale import ScalePortConfig
from jitstock.edge.stability import SignalSettings
from jitstock.firmware_sim.modbus import SimulatedModbusBus
from tests.edge.conftest import RecordingSink

SIGNAL = SignalSettings(stability_window_s=0.3, no_data_timeout_s=1.5)


@pytest.fixture
def rtu() -> Iterator[SimulatedModbusBus]:
    bus = SimulatedModbusBus("rtu")
    bus.add_unit(3, "B1", unit_weight_g=10.0, count=40, tare_g=200.0, settle_s=0.2)
    bus.start()
    yield bus
    bus.stop()


def reader(
    bus: SimulatedModbusBus, sink: RecordingSink, spec: ModbusSpec
) -> tuple[ModbusScaleReader, ModbusBus]:
    config = ScalePortConfig(
        port=bus.address, bin="B1", protocol="modbus", poll_interval_s=0.1, modbus=spec
    )
    shared = ModbusBus(bus.address, 9600, spec)
    r = ModbusScaleReader(
        config, SIGNAL, sink, shared, backoff_initial_s=0.05, backoff_max_s=0.2
    )
    r.start()
    return r, shared


def test_unplugged_adapter_is_a_port_error_and_replug_recovers(
    rtu: SimulatedModbusBus, sink: RecordingSink
) -> None:
    spec = ModbusSpec(unit_id=3, weight_register=0, factor=0.1, timeout_s=0.3)
    r, shared = reader(rtu, sink, spec)
    try:
        sink.wait_for(
            lambda: any(x.grams == pytest.approx(600, abs=2) for x in sink.readings)
        )
        rtu.unplug()
        sink.wait_for(lambda: sink.health_of("B1")[-1] == (False, "port_error"))
        rtu.replug()
        rtu.units[3].pick(10)
        sink.wait_for(lambda: sink.health_of("B1")[-1] == (True, None))
        sink.wait_for(lambda: sink.readings[-1].grams == pytest.approx(500, abs=2))
        assert r.stats["reopens"] >= 1
    finally:
        r.stop()
        shared.close()


def test_wrong_unit_id_is_a_timeout_not_a_crash(
    rtu: SimulatedModbusBus, sink: RecordingSink
) -> None:
    spec = ModbusSpec(unit_id=4, weight_register=0, timeout_s=0.2)
    r, shared = reader(rtu, sink, spec)
    try:
        sink.wait_for(lambda: sink.health_of("B1") == [(False, "timeout")])
        sink.wait_for(lambda: r.stats["frames_bad_timeout"] >= 3)
        assert sink.readings == []
        assert sink.health_of("B1") == [(False, "timeout")]  # no flapping to no_data
    finally:
        r.stop()
        shared.close()


def test_weight_beyond_the_range_is_out_of_range(
    rtu: SimulatedModbusBus, sink: RecordingSink
) -> None:
    # a wrong factor reads 600 g as 6,000,000 g: over max_grams, refused, never published
    spec = ModbusSpec(unit_id=3, weight_register=0, factor=1000.0, timeout_s=0.3)
    r, shared = reader(rtu, sink, spec)
    try:
        sink.wait_for(lambda: (False, "out_of_range") in sink.health_of("B1"))
        assert sink.readings == []
    finally:
        r.stop()
        shared.close()


def test_a_port_that_does_not_open_is_logged_with_its_reason(
    rtu: SimulatedModbusBus, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    """pymodbus keeps the reason to its own (silenced) log; the installer reads ours."""
    spec = ModbusSpec(unit_id=3, weight_register=0, timeout_s=0.3)
    rtu.unplug()
    r, shared = reader(rtu, sink, spec)
    try:
        sink.wait_for(lambda: sink.health_of("B1")[-1:] == [(False, "port_error")])
        sink.wait_for(
            lambda: any("No such file or directory" in m for m in caplog.messages)
        )
    finally:
        r.stop()
        shared.close()
