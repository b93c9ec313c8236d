"""Edge agent settings: a TOML or YAML file (``--config``) overridden by ``JITSTOCK_*`` variables.

Precedence, highest first: keyword arguments, environment (``JITSTOCK_SITE``,
``JITSTOCK_MQTT_PASSWORD``, nested with ``__`` as in ``JITSTOCK_SIGNAL__STEP_G``),
then the file, then the defaults below.

Every model is closed (an unknown key is an error, ``[[scales]]`` included), a
port or bin listed twice is refused, the MQTT URL and the TLS files are checked
here, at start-up, so a slip never runs silently. :func:`load_settings` raises
one error, :class:`ConfigError`, whose message is one line naming the file and
the key.
"""

from __future__ import annotations

import math
import ssl
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from jitstock.edge.broker_config import BrokerConfig
from jitstock.edge.keymap import Layout
from jitstock.edge.outbox import DEFAULT_MAX_BATCHES
from jitstock.edge.publisher import DEFAULT_WINDOW, MAX_WINDOW
from jitstock.edge.registers import (
    MAX_REGISTER,
    REGISTERS,
    DataType,
    ModbusSpec,
    Parity,
    RegisterType,
    WordOrder,
    bus_key,
    tcp_address,
)
from jitstock.edge.scale import NetWeight, ScalePortConfig
from jitstock.edge.stability import SignalSettings
from jitstock.protocol import BIN_RE, MAX_PAYLOAD_BYTES, NAME_RE

# Passwords that only ever appear in examples; an agent refuses to start with one.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "changethis", "password", "secret"}
)
# URL schemes of the broker: plain and TLS (tcp/ssl are paho's own spellings).
MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl")
# Smallest payload cap accepted: one reading or one longest scan with its envelope fits.
MIN_PAYLOAD_CAP = 1024
# Fastest serial line accepted (FTDI's high-speed chips): a larger number is a slip, and
# past 2**63 pyserial fails with OverflowError instead of a clear refusal.
MAX_BAUDRATE = 12_000_000


# The [[scales]] keys of a protocol = "modbus" scale (ModbusSpec fields of the same name).
MODBUS_KEYS = (
    "unit_id",
    "weight_register",
    "register_type",
    "data_type",
    "word_order",
    "factor",
    "status_register",
    "stable_bit",
    "motion_bit",
    "parity",
    "stopbits",
    "timeout_s",
)


class ConfigError(ValueError):
    """A configuration the agent refuses; ``str()`` is one line naming the file and key."""


class ScaleSettings(BaseModel):
    """One scale on one serial port (``[[scales]]``); unset thresholds come from ``[signal]``."""

    # strict: TOML and YAML carry real types, so `weight_register = true` or `unit_id = "1"`
    # is a slip to name, not a value to coerce (true was read as register 1)
    model_config = ConfigDict(extra="forbid", strict=True)

    port: str = Field(min_length=1)
    bin: str = Field(pattern=BIN_RE.pattern)
    protocol: Literal["stream", "sics", "modbus"] = "stream"
    baudrate: int = Field(9600, gt=0, le=MAX_BAUDRATE)
    poll_interval_s: float = Field(0.1, gt=0, le=3600)
    # protocol = "modbus" only (edge/modbus.py): port is a serial device (RTU) or tcp://host[:port]
    unit_id: int | None = Field(None, ge=1, le=247)
    weight_register: int | None = Field(None, ge=0, le=65535)
    register_type: RegisterType | None = None
    data_type: DataType | None = None
    word_order: WordOrder | None = None
    factor: float | None = Field(None, allow_inf_nan=False)
    status_register: int | None = Field(None, ge=0, le=65535)
    stable_bit: int | None = Field(None, ge=0, le=15)
    motion_bit: int | None = Field(None, ge=0, le=15)
    parity: Parity | None = None
    stopbits: Literal[1, 2] | None = None
    timeout_s: float | None = Field(None, gt=0, le=30)
    # per-scale thresholds (None: the agent's [signal] value, or the server's config)
    step_g: float | None = Field(None, gt=0, allow_inf_nan=False)
    stability_window_s: float | None = Field(None, gt=0, allow_inf_nan=False)
    stability_spread_g: float | None = Field(None, gt=0, allow_inf_nan=False)
    # the scale's display increment: a one-division flicker is neither motion nor a change
    division_g: float | None = Field(None, gt=0, allow_inf_nan=False)
    # net frames (stream `NT`; MT-SICS answers are always net): refused with fault
    # `net_weight`, or published as net + tare_g. Default: reject for stream, add_tare for sics.
    net_weight: NetWeight | None = None
    tare_g: float = Field(0.0, ge=0, le=2_000_000)

    @model_validator(mode="after")
    def _modbus_keys(self) -> ScaleSettings:
        given = [k for k in MODBUS_KEYS if getattr(self, k) is not None]
        if self.protocol != "modbus":
            if given:
                raise ValueError(f'{given[0]}: only a protocol = "modbus" scale has it')
            return self
        if self.weight_register is None:
            raise ValueError(
                'weight_register: a protocol = "modbus" scale needs the address of its weight register'
            )
        if self.factor == 0:
            raise ValueError("factor: 0 would read every load as 0 g")
        width = REGISTERS[self.data_type or ModbusSpec.data_type]
        if self.weight_register + width - 1 > MAX_REGISTER:
            raise ValueError(
                f"weight_register: a {self.data_type or ModbusSpec.data_type} at "
                f"{self.weight_register} needs {width} registers, past the last "
                f"address {MAX_REGISTER}"
            )
        bits = self.stable_bit is not None or self.motion_bit is not None
        if bits != (self.status_register is not None):
            raise ValueError(
                "status_register: stable_bit or motion_bit needs status_register, "
                "and status_register needs one of them"
            )
        try:
            tcp = tcp_address(self.port)
        except ValueError as exc:
            raise ValueError(f"port: {exc}") from None
        if tcp is not None and (self.parity is not None or self.stopbits is not None):
            raise ValueError("parity: Modbus TCP has no serial line settings")
        return self

    @property
    def key(self) -> str:
        """The scale's name in the agent (and in the server's port mappings)."""
        return self.port_config().key

    def modbus_spec(self) -> ModbusSpec | None:
        """The registers of a Modbus scale (None for the other protocols)."""
        if self.protocol != "modbus":
            return None
        given = {k: v for k in MODBUS_KEYS if (v := getattr(self, k)) is not None}
        return ModbusSpec(**given)

    def port_config(self) -> ScalePortConfig:
        """The reader's view of this scale."""
        return ScalePortConfig(
            port=self.port,
            bin=self.bin,
            protocol=self.protocol,
            baudrate=self.baudrate,
            poll_interval_s=self.poll_interval_s,
            net_weight=self.net_weight,
            tare_g=self.tare_g,
            modbus=self.modbus_spec(),
        )

    def signal_overrides(self) -> dict[str, float]:
        """The thresholds this scale sets itself (they win over [signal] and the server's)."""
        keys = ("step_g", "stability_window_s", "stability_spread_g", "division_g")
        return {k: v for k in keys if (v := getattr(self, k)) is not None}


class ScannerSettings(BaseModel):
    """One barcode scanner: on a serial port, or a USB HID scanner's input device (``kind = "hid"``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    port: str = Field(min_length=1)
    id: str = Field(pattern=BIN_RE.pattern)
    kind: Literal["serial", "hid"] = "serial"
    baudrate: int = Field(9600, gt=0, le=MAX_BAUDRATE)
    # HID only: the keyboard layout the scanner types in (a German scanner swaps Y and Z)
    layout: Layout | None = None

    @model_validator(mode="after")
    def _layout_for_hid(self) -> ScannerSettings:
        if self.layout is not None and self.kind != "hid":
            raise ValueError(
                'layout: only a HID scanner (kind = "hid") has a keyboard layout'
            )
        return self


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
    # Largest batch payload; lowered at run time to fit the broker's MQTT 5 Maximum Packet Size.
    mqtt_max_payload_bytes: int = Field(
        MAX_PAYLOAD_BYTES, ge=MIN_PAYLOAD_CAP, le=MAX_PAYLOAD_BYTES
    )
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
            raise ValueError("is a placeholder; set the agent's real password")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        check_mqtt_url(value)
        return value

    @field_validator("signal", mode="before")
    @classmethod
    def _closed_signal(cls, value: Any) -> Any:
        if isinstance(value, dict):
            known = set(SignalSettings.__dataclass_fields__)
            unknown = sorted(set(value) - known)
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r}")
        return value

    @field_validator("signal")
    @classmethod
    def _sane_signal(cls, value: SignalSettings) -> SignalSettings:
        check_signal(value)
        return value

    @model_validator(mode="after")
    def _one_owner_per_port_and_bin(self) -> EdgeSettings:
        ports: dict[str, str] = {}
        buses: dict[str, tuple[int, dict[int, str]]] = {}  # Modbus port: (first, units)
        for i, scale in enumerate(self.scales):
            where = f"scales[{i}]"
            spec = scale.modbus_spec()
            port = scale.port if spec is None else bus_key(scale.port)
            if spec is not None and port in buses:
                # one RS-485 bus (or TCP gateway), several indicators by unit id
                first, units = buses[port]
                if spec.unit_id in units:
                    raise ValueError(
                        f"{where}.unit_id: unit {spec.unit_id} on {scale.port} is already "
                        f"listed as {units[spec.unit_id]}; give each indicator its own unit id"
                    )
                if _line(self.scales[first]) != _line(scale):
                    raise ValueError(
                        f"{where}.baudrate: {scale.port} is one bus: baudrate, parity, "
                        f"stopbits and timeout_s must be those of scales[{first}]"
                    )
                units[spec.unit_id] = where
                continue
            if port in ports:
                raise ValueError(
                    f"{where}.port: {scale.port} is already listed as {ports[port]} "
                    '(only protocol = "modbus" scales share a port, by unit_id)'
                )
            ports[port] = where
            if spec is not None:
                buses[port] = (i, {spec.unit_id: where})
        for i, scanner in enumerate(self.scanners):
            where = f"scanners[{i}]"
            if scanner.port in ports:
                raise ValueError(
                    f"{where}.port: {scanner.port} is already listed as {ports[scanner.port]}"
                )
            ports[scanner.port] = where
        bins: dict[str, int] = {}
        for i, scale in enumerate(self.scales):
            if scale.bin in bins:
                raise ValueError(
                    f"scales[{i}].bin: bin {scale.bin} is already fed by "
                    f"scales[{bins[scale.bin]}] ({self.scales[bins[scale.bin]].port})"
                )
            bins[scale.bin] = i
        ids: set[str] = set()
        for i, scanner in enumerate(self.scanners):
            if scanner.id in ids:
                raise ValueError(f"scanners[{i}].id: scanner {scanner.id} listed twice")
            if scanner.kind == "hid" and scanner.id in bins:
                # a HID scanner's health is reported under its id, beside the bins
                raise ValueError(
                    f"scanners[{i}].id: {scanner.id} is also a bin; name the scanner apart"
                )
            ids.add(scanner.id)
        return self

    @model_validator(mode="after")
    def _tls_files(self) -> EdgeSettings:
        check_tls_files(self)
        return self

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

    def scale_signal(self, scale: ScaleSettings) -> SignalSettings:
        """The thresholds of one scale: [signal] with the scale's own keys on top."""
        return scale_signal(self.signal, scale.signal_overrides())


def _line(scale: ScaleSettings) -> tuple[object, ...]:
    """What every indicator on one bus must agree on (one client reads them all)."""
    return (scale.baudrate, scale.parity, scale.stopbits, scale.timeout_s)


def scale_signal(base: SignalSettings, overrides: dict[str, float]) -> SignalSettings:
    """``base`` with one scale's own thresholds applied."""
    merged = replace(base)
    for key, value in overrides.items():
        setattr(merged, key, value)
    return merged


# [signal] keys that must be above 0 (a window, a period, a count); the others may be 0.
_POSITIVE_SIGNAL_KEYS = (
    "median_window",
    "stability_window_s",
    "keepalive_s",
    "no_data_timeout_s",
)


# A median over more frames than this lags by minutes at any scale's frame rate.
MAX_MEDIAN_WINDOW = 1000


def check_signal(signal: SignalSettings) -> None:
    """Raise ValueError naming the key unless every [signal] value is a usable number.

    NaN or infinity would switch a check off without a word (``step_g = nan``: no change
    is ever "more than" it, the bin publishes only its keepalive).
    """
    for key in SignalSettings.__dataclass_fields__:
        value = getattr(signal, key)
        if not math.isfinite(value):
            raise ValueError(f"{key}: must be a finite number (got {value!r})")
        if key in _POSITIVE_SIGNAL_KEYS and value <= 0:
            raise ValueError(f"{key}: must be greater than 0 (got {value!r})")
        if key not in _POSITIVE_SIGNAL_KEYS and key not in ("min_grams", "max_grams"):
            if value < 0:
                raise ValueError(f"{key}: must not be negative (got {value!r})")
    if signal.median_window > MAX_MEDIAN_WINDOW:
        raise ValueError(
            f"median_window: at most {MAX_MEDIAN_WINDOW} frames (got {signal.median_window})"
        )
    if signal.min_grams >= signal.max_grams:
        raise ValueError(
            f"min_grams: {signal.min_grams!r} must be below max_grams {signal.max_grams!r}"
        )


def check_mqtt_url(url: str) -> None:
    """Raise ValueError (one line) unless ``url`` is ``mqtt[s]://host[:port]``."""
    parts = urlsplit(url)
    if parts.scheme not in MQTT_SCHEMES or not url.startswith(f"{parts.scheme}://"):
        raise ValueError(f"{url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port (1..65535)") from None
    if port == 0:
        raise ValueError(f"{url!r} has a bad port (1..65535)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r} must be mqtt[s]://host[:port] without a path")


def check_tls_files(settings: EdgeSettings) -> None:
    """Raise ValueError naming the key unless the TLS files exist, are readable and load."""
    for key in ("mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file"):
        path: Path | None = getattr(settings, key)
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as exc:
            raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if (settings.mqtt_cert_file is None) != (settings.mqtt_key_file is None):
        raise ValueError(
            "mqtt_cert_file: a client certificate needs mqtt_key_file too (and vice versa)"
        )
    context = ssl.create_default_context()
    if settings.mqtt_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.mqtt_ca_file))
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"mqtt_ca_file: {settings.mqtt_ca_file} is not a PEM CA certificate ({exc})"
            ) from None
    if settings.mqtt_cert_file is not None and settings.mqtt_key_file is not None:
        try:
            context.load_cert_chain(
                str(settings.mqtt_cert_file), str(settings.mqtt_key_file)
            )
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(
                f"mqtt_cert_file: {settings.mqtt_cert_file} with {settings.mqtt_key_file} "
                f"is not a usable certificate and key ({exc})"
            ) from None


def describe_errors(exc: ValidationError) -> str:
    """One line for a validation error: ``key: problem`` per error, ``;``-separated."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = "".join(
            f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
            for i, p in enumerate(err["loc"])
        )
        kind = err["type"]
        if kind == "extra_forbidden":
            text = "unknown key"
        elif kind == "missing":
            text = "required key missing"
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
            if kind not in ("value_error", "assertion_error") and "input" in err:
                text += f" (got {err['input']!r})"
        parts.append(f"{loc}: {text}" if loc else text)
    return "; ".join(" ".join(p.split()) for p in parts)


def load_settings(
    config_file: str | Path | None = None, **overrides: Any
) -> EdgeSettings:
    """Settings from ``config_file`` (.toml, .yaml or .yml) plus the environment and overrides.

    Raises :class:`ConfigError` with one line naming the file and the key.
    """
    label = "environment" if config_file is None else str(config_file)
    if config_file is None:
        try:
            return EdgeSettings(**overrides)
        except ValidationError as exc:
            raise ConfigError(f"{label}: {describe_errors(exc)}") from None
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        source: dict[str, Any] = {"toml_file": path}
    elif suffix in (".yaml", ".yml"):
        source = {"yaml_file": path}
    else:
        raise ConfigError(
            f"{path}: config file must be .toml, .yaml or .yml, got {path.name}"
        )
    # a subclass carries the file name, so the sources above know what to read
    from_file = type(
        "EdgeSettings",
        (EdgeSettings,),
        {"model_config": SettingsConfigDict(**{**EdgeSettings.model_config, **source})},  # type: ignore[typeddict-item]
    )
    try:
        settings: EdgeSettings = from_file(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except Exception as exc:
        # yaml.YAMLError and friends: say which file, keep it to one line
        if type(exc).__module__.startswith("yaml"):
            first = " ".join(str(exc).split())
            raise ConfigError(f"{path}: malformed YAML: {first}") from None
        raise
    return settings
