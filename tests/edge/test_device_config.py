"""Config of the issue 17 devices: Modbus indicators sharing a bus, HID scanners, and slips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jitstock.edge.registers import ModbusSpec, decode_registers
from jitstock.edge.settings import ConfigError, EdgeSettings, load_settings
from tests.edge.edge_process import run_edge, toml_config
from tests.edge.test_config_errors import refusal

RTU = {"protocol": "modbus", "port": "/dev/ttyUSB0", "weight_register": 0}


def settings(tmp_path: Path, **kw: Any) -> EdgeSettings:
    return load_settings(
        None, site="plant1", agent="pi-1", outbox_path=tmp_path / "o.db", **kw
    )


def refused(tmp_path: Path, **kw: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        settings(tmp_path, **kw)
    return str(exc.value)


def test_indicators_share_a_bus_by_unit_id(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        scales=[
            {**RTU, "bin": "A-01", "unit_id": 1},
            {**RTU, "bin": "A-02", "unit_id": 2, "data_type": "float32"},
            {**RTU, "port": "tcp://10.0.0.5", "bin": "A-03", "unit_id": 1},
            {**RTU, "port": "tcp://10.0.0.5:1502", "bin": "A-04", "unit_id": 1},
            {**RTU, "port": "tcp://10.0.0.5:502", "bin": "A-05", "unit_id": 2},
        ],
    )
    assert [x.key for x in s.scales] == [
        "/dev/ttyUSB0#1",
        "/dev/ttyUSB0#2",
        "tcp://10.0.0.5#1",
        "tcp://10.0.0.5:1502#1",
        "tcp://10.0.0.5:502#2",
    ]
    spec = s.scales[1].port_config().modbus
    assert spec == ModbusSpec(unit_id=2, weight_register=0, data_type="float32")


@pytest.mark.parametrize(
    ("scales", "expected"),
    [
        ([{**RTU, "bin": "A-01"}, {**RTU, "bin": "A-02"}], "scales[1].unit_id: unit 1 on /dev/ttyUSB0 is already listed as scales[0]"),
        ([{**RTU, "bin": "A-01"}, {"port": "/dev/ttyUSB0", "bin": "A-02"}], 'only protocol = "modbus" scales share a port'),
        ([{"port": "/dev/ttyUSB0", "bin": "A-01"}, {**RTU, "bin": "A-02"}], 'only protocol = "modbus" scales share a port'),
        ([{**RTU, "bin": "A-01"}, {**RTU, "bin": "A-02", "unit_id": 2, "baudrate": 19200}], "is one bus"),
        ([{"port": "/dev/ttyUSB0", "bin": "A-01", "unit_id": 3}], 'unit_id: only a protocol = "modbus" scale has it'),
        ([{**RTU, "bin": "A-01", "weight_register": None}], "weight_register"),
        ([{"protocol": "modbus", "port": "/dev/ttyUSB0", "bin": "A-01"}], "weight_register: a protocol"),
        ([{**RTU, "bin": "A-01", "weight_register": 2**63}], "weight_register"),
        ([{**RTU, "bin": "A-01", "weight_register": 65536}], "weight_register"),
        ([{**RTU, "bin": "A-01", "unit_id": 0}], "unit_id"),
        ([{**RTU, "bin": "A-01", "unit_id": 248}], "unit_id"),
        ([{**RTU, "bin": "A-01", "factor": float("nan")}], "factor"),
        ([{**RTU, "bin": "A-01", "factor": float("inf")}], "factor"),
        ([{**RTU, "bin": "A-01", "factor": 0}], "factor: 0"),
        ([{**RTU, "bin": "A-01", "data_type": "int64"}], "data_type"),
        ([{**RTU, "bin": "A-01", "stable_bit": 3}], "status_register"),
        ([{**RTU, "bin": "A-01", "status_register": 4}], "status_register"),
        ([{**RTU, "bin": "A-01", "status_register": 4, "stable_bit": 16}], "stable_bit"),
        ([{**RTU, "bin": "A-01", "timeout_s": 5e-324, "poll_interval_s": 0}], "poll_interval_s"),
        ([{**RTU, "bin": "A-01", "port": "tcp://"}], "tcp://host"),
        ([{**RTU, "bin": "A-01", "port": "tcp://h:502", "parity": "E"}], "Modbus TCP has no serial"),
        ([{**RTU, "bin": "A-01", "register": 3}], "register: unknown key"),
        ([{**RTU, "port": "tcp://gw", "bin": "A-01"}, {**RTU, "port": "tcp://gw:502", "bin": "A-02"}], "unit 1 on tcp://gw:502 is already listed"),
        # found trying it from the outside: each of these used to start and fail later
        ([{**RTU, "bin": "A-01", "port": "tcp://10.0.0.5:0"}], "TCP port must be 1..65535"),
        ([{**RTU, "bin": "A-01", "port": "tcp://10.0.0.5:99999"}], "TCP port must be 1..65535"),
        ([{**RTU, "bin": "A-01", "port": "tcp://10.0.0.5:"}], "TCP port must be 1..65535"),
        ([{**RTU, "bin": "A-01", "weight_register": 65535}], "weight_register: a int32 at 65535 needs 2 registers"),
        ([{**RTU, "bin": "A-01", "baudrate": 2**63}], "baudrate"),
        ([{"port": "/dev/ttyUSB0", "bin": "A-01", "baudrate": 2**63 - 1}], "baudrate"),
        ([{**RTU, "bin": "A-01", "step_g": float("inf")}], "step_g"),
        ([{**RTU, "bin": "A-01", "division_g": float("nan")}], "division_g"),
        # wrong types are slips, not values: `true` was read as register 1
        ([{**RTU, "bin": "A-01", "weight_register": True}], "weight_register: Input should be a valid integer (got True)"),
        ([{**RTU, "bin": "A-01", "unit_id": "1"}], "unit_id: Input should be a valid integer"),
        ([{**RTU, "bin": "A-01", "factor": "0.1"}], "factor: Input should be a valid number"),
    ],
)  # fmt: skip
def test_modbus_slips_are_refused(
    tmp_path: Path, scales: list[dict[str, Any]], expected: str
) -> None:
    scales = [{k: v for k, v in s.items() if v is not None} for s in scales]
    assert expected in refused(tmp_path, scales=scales)


def test_hid_scanner_config(tmp_path: Path) -> None:
    port = "/dev/input/by-id/usb-Scanner-event-kbd"
    s = settings(
        tmp_path,
        scanners=[{"port": port, "id": "gun-1", "kind": "hid", "layout": "de"}],
    )
    assert (s.scanners[0].kind, s.scanners[0].layout) == ("hid", "de")
    assert "layout" in refused(
        tmp_path, scanners=[{"port": port, "id": "g", "kind": "hid", "layout": "fr"}]
    )
    assert "only a HID scanner" in refused(
        tmp_path, scanners=[{"port": "/dev/ttyACM0", "id": "g", "layout": "de"}]
    )
    assert "kind" in refused(
        tmp_path, scanners=[{"port": port, "id": "g", "kind": "bluetooth"}]
    )
    assert "is also a bin" in refused(
        tmp_path,
        scales=[{"port": "/dev/ttyUSB0", "bin": "A-01"}],
        scanners=[{"port": port, "id": "A-01", "kind": "hid"}],
    )


def test_duplicate_unit_id_refusal_is_one_line_from_the_cli(tmp_path: Path) -> None:
    config = toml_config(
        tmp_path,
        "mqtt://127.0.0.1:1",
        scales=[
            {**RTU, "bin": "A-01", "unit_id": 4},
            {**RTU, "bin": "A-02", "unit_id": 4},
        ],
    )
    line = refusal(run_edge(config))
    assert "scales[1].unit_id: unit 4 on /dev/ttyUSB0" in line


@pytest.mark.parametrize(
    ("registers", "spec", "grams"),
    [
        ([0x0001, 0x86A0], ModbusSpec(data_type="int32", factor=0.1), 10000.0),
        ([0x86A0, 0x0001], ModbusSpec(data_type="int32", word_order="little", factor=0.1), 10000.0),
        ([0xFFFF], ModbusSpec(data_type="int16"), -1.0),
        ([0xFFFF], ModbusSpec(data_type="uint16", factor=2.0), 131070.0),
        ([0x4479, 0x8000], ModbusSpec(data_type="float32"), 998.0),
    ],
)  # fmt: skip
def test_register_decoding(
    registers: list[int], spec: ModbusSpec, grams: float
) -> None:
    assert decode_registers(registers, spec) == pytest.approx(grams)


def test_the_last_register_holds_a_16_bit_weight(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        scales=[{**RTU, "bin": "A-01", "weight_register": 65535, "data_type": "int16"}],
    )
    assert s.scales[0].modbus_spec() == ModbusSpec(
        weight_register=65535, data_type="int16"
    )


@pytest.mark.parametrize(
    ("signal", "expected"),
    [
        ({"step_g": float("nan")}, "signal: step_g: must be a finite number"),
        ({"stability_window_s": float("inf")}, "stability_window_s: must be a finite"),
        ({"max_grams": float("inf")}, "max_grams: must be a finite"),
        ({"keepalive_s": 0}, "keepalive_s: must be greater than 0"),
        ({"median_window": 2**63}, "median_window: at most"),
        ({"step_g": -1}, "step_g: must not be negative"),
        ({"min_grams": 10, "max_grams": 5}, "min_grams: 10"),
    ],
)  # fmt: skip
def test_signal_values_that_would_switch_a_check_off_are_refused(
    tmp_path: Path, signal: dict[str, Any], expected: str
) -> None:
    """`[signal] step_g = nan` used to start: no change was ever "more than" NaN."""
    assert expected in refused(tmp_path, signal=signal)


def test_a_factor_that_overflows_says_so() -> None:
    with pytest.raises(ValueError, match="times factor 1e.308 overflows"):
        decode_registers([0, 34196], ModbusSpec(factor=1e308))


@pytest.mark.parametrize("registers", [[0x7FC0, 0x0000], [0x7F80, 0x0000]])
def test_nan_and_infinite_floats_are_refused(registers: list[int]) -> None:
    with pytest.raises(ValueError, match="finite"):
        decode_registers(registers, ModbusSpec(data_type="float32"))


def test_example_config_and_help_show_each_device_kind() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    s = load_settings(root / "deploy" / "edge.example.toml")
    kinds = {
        (x.protocol, "tcp" if x.port.startswith("tcp://") else "serial")
        for x in s.scales
    }
    assert kinds == {
        ("stream", "serial"),
        ("sics", "serial"),
        ("modbus", "serial"),
        ("modbus", "tcp"),
    }
    rtu = [x for x in s.scales if x.protocol == "modbus" and x.port.startswith("/")]
    assert len({x.port for x in rtu}) == 1 < len(rtu)  # several units on one bus
    assert {x.kind for x in s.scanners} == {"serial", "hid"}
    out = subprocess.run(
        [sys.executable, "-m", "jitstock.edge.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for shown in (
        'protocol = "stream"',
        'protocol = "sics"',
        "Modbus RTU",
        "Modbus TCP",
        "serial barcode scanner",
        'kind = "hid"',
        "check-port",
    ):
        assert shown in out, shown


def test_every_toml_example_in_connect_devices_is_a_valid_config(
    tmp_path: Path,
) -> None:
    import re

    doc = (
        Path(__file__).resolve().parents[2] / "docs" / "connect-devices.md"
    ).read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert (
        len(blocks) == 6
    )  # stream, sics, Modbus RTU (two units), Modbus TCP, serial, HID
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(
            f'site = "plant1"\nagent = "pi-1"\noutbox_path = "{tmp_path}/o.db"\n{block}'
        )
        s = load_settings(path)
        assert s.scales or s.scanners
