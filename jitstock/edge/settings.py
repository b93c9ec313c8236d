"""Edge agent settings: a TOML or YAML file (``--config``) overridden by ``JITSTOCK_*`` variables.

Precedence, highest first: keyword arguments, environment (``JITSTOCK_SITE``,
``JITSTOCK_MQTT_PASSWORD``, nested with ``__`` as in ``JITSTOCK_SIGNAL__STEP_G``),
then the file, then the defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from jitstock.edge.outbox import DEFAULT_MAX_BATCHES
from jitstock.edge.publisher import DEFAULT_WINDOW, MAX_WINDOW, BrokerConfig
from jitstock.edge.scale import ScalePortConfig
from jitstock.edge.stability import SignalSettings
from jitstock.protocol import BIN_RE, NAME_RE

# Passwords that only ever appear in examples; an agent refuses to start with one.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "changethis", "password", "secret"}
)


class ScaleSettings(BaseModel):
    """One scale on one serial port."""

    port: str
    bin: str = Field(pattern=BIN_RE.pattern)
    protocol: Literal["stream", "sics"] = "stream"
    baudrate: int = Field(9600, gt=0)
    poll_interval_s: float = Field(0.1, gt=0)

    def port_config(self) -> ScalePortConfig:
        """The reader's view of this scale."""
        return ScalePortConfig(
            port=self.port,
            bin=self.bin,
            protocol=self.protocol,
            baudrate=self.baudrate,
            poll_interval_s=self.poll_interval_s,
        )


class ScannerSettings(BaseModel):
    """One barcode scanner on one serial port."""

    port: str
    id: str = Field(pattern=BIN_RE.pattern)
    baudrate: int = Field(9600, gt=0)


class EdgeSettings(BaseSettings):
    """Everything one edge agent needs; built in the entry point and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="JITSTOCK_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    site: str = Field(pattern=NAME_RE.pattern)
    agent: str = Field(pattern=NAME_RE.pattern)
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_user: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    # Cap of the reconnect backoff: how late, at worst, the agent notices a broker that came back.
    mqtt_reconnect_max_s: float = Field(10.0, gt=0, le=300)
    outbox_path: Path = Path("/var/lib/jitstock/outbox.db")
    outbox_max_batches: int = Field(DEFAULT_MAX_BATCHES, ge=100)
    inflight_window: int = Field(DEFAULT_WINDOW, ge=1, le=MAX_WINDOW)
    tick_s: float = Field(1.0, gt=0, le=60)
    scales: list[ScaleSettings] = Field(default_factory=list)
    scanners: list[ScannerSettings] = Field(default_factory=list)
    signal: SignalSettings = Field(default_factory=SignalSettings)

    @field_validator("mqtt_password")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and value.get_secret_value().lower() in PLACEHOLDER_SECRETS
        ):
            raise ValueError(
                "mqtt_password is a placeholder; set the agent's real password"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the file; the file beats the defaults."""
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls),
            YamlConfigSettingsSource(settings_cls),
        )

    def broker(self) -> BrokerConfig:
        """Connection parameters for the publisher."""
        return BrokerConfig.from_url(
            self.mqtt_url,
            username=self.mqtt_user,
            password=None
            if self.mqtt_password is None
            else self.mqtt_password.get_secret_value(),
            tls=self.mqtt_tls,
            ca_file=None if self.mqtt_ca_file is None else str(self.mqtt_ca_file),
            cert_file=None if self.mqtt_cert_file is None else str(self.mqtt_cert_file),
            key_file=None if self.mqtt_key_file is None else str(self.mqtt_key_file),
            tls_insecure=self.mqtt_tls_insecure,
        )


def load_settings(
    config_file: str | Path | None = None, **overrides: Any
) -> EdgeSettings:
    """Settings from ``config_file`` (.toml, .yaml or .yml) plus the environment and overrides."""
    if config_file is None:
        return EdgeSettings(**overrides)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        source: dict[str, Any] = {"toml_file": path}
    elif suffix in (".yaml", ".yml"):
        source = {"yaml_file": path}
    else:
        raise ValueError(f"config file must be .toml, .yaml or .yml, got {path.name}")
    # a subclass carries the file name, so the sources above know what to read
    from_file = type(
        "EdgeSettings",
        (EdgeSettings,),
        {"model_config": SettingsConfigDict(**{**EdgeSettings.model_config, **source})},  # type: ignore[typeddict-item]
    )
    settings: EdgeSettings = from_file(**overrides)
    return settings
