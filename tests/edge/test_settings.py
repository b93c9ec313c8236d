"""Edge settings: TOML/YAML file, environment overrides, refusals with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitstock.edge.settings import ConfigError, load_settings

TOML = """
site = "plant1"
agent = "pi-1"
mqtt_url = "mqtts://broker.example:8883"
mqtt_user = "pi-1"
outbox_path = "/tmp/x/outbox.db"
tick_s = 0.5

[signal]
step_g = 5.0

[[scales]]
port = "/dev/ttyUSB0"
bin = "A-01"
protocol = "sics"

[[scales]]
port = "/dev/ttyUSB1"
bin = "A-02"

[[scanners]]
port = "/dev/ttyACM0"
id = "line-3"
"""

YAML = """
site: plant1
agent: pi-2
scales:
  - {port: /dev/ttyUSB0, bin: B-01, baudrate: 19200}
signal:
  keepalive_s: 30
"""


def test_toml_file_with_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(TOML)
    monkeypatch.setenv("JITSTOCK_MQTT_PASSWORD", "s3cr3t-from-env")
    monkeypatch.setenv("JITSTOCK_TICK_S", "2")
    monkeypatch.setenv("JITSTOCK_SIGNAL__KEEPALIVE_S", "15")
    s = load_settings(path)
    assert (s.site, s.agent, s.tick_s) == ("plant1", "pi-1", 2.0)
    assert [(x.port, x.bin, x.protocol) for x in s.scales] == [
        ("/dev/ttyUSB0", "A-01", "sics"),
        ("/dev/ttyUSB1", "A-02", "stream"),
    ]
    assert s.scanners[0].id == "line-3"
    assert s.signal.step_g == 5.0
    assert s.signal.keepalive_s == 15.0
    broker = s.broker()
    assert (broker.host, broker.port, broker.tls) == ("broker.example", 8883, True)
    assert (broker.username, broker.password) == ("pi-1", "s3cr3t-from-env")
    assert "s3cr3t" not in repr(s)


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(YAML)
    s = load_settings(path)
    assert s.agent == "pi-2"
    assert s.scales[0].baudrate == 19200
    assert s.signal.keepalive_s == 30
    assert s.broker().port == 1883


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('site = "plant 1"\nagent = "a"\n', "site"),
        ('site = "p"\nagent = "a"\nmqtt_password = "changeme"\n', "placeholder"),
        ('site = "p"\nagent = "a"\ntypo_field = 1\n', "typo_field"),
        (
            'site = "p"\nagent = "a"\n[[scales]]\nport = "/dev/x"\nbin = "B1"\nprotocol = "modbus"\n',
            "protocol",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_field_named(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_or_unknown_file_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    (tmp_path / "edge.ini").write_text("x")
    with pytest.raises(ConfigError, match="toml"):
        load_settings(tmp_path / "edge.ini")


def test_example_config_in_deploy_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "edge.example.toml"
    s = load_settings(example)
    assert s.scales
    assert s.outbox_path.is_absolute()
