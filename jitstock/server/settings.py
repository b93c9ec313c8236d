"""Server configuration: one pydantic-settings class, `JITSTOCK_` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "secret", "password", "admin"}


class ServerSettings(BaseSettings):
    """Everything `jitstock server` needs; built once in the entry point and passed down."""

    model_config = SettingsConfigDict(env_prefix="JITSTOCK_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path(".")

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_user: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id: str = "jitstock-server"
    mqtt_tls_ca: Path | None = None
    # MQTT 5 gives us Receive Maximum (back-pressure); the embedded demo broker speaks only 3.1.1.
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    # Unacknowledged messages the broker may have in flight to us (MQTT 5 Receive Maximum):
    # the back-pressure window; beyond it the broker queues instead of us buffering in RAM.
    mqtt_receive_maximum: int = Field(default=2000, ge=1, le=65535)

    influx_url: str | None = None
    influx_db: str = "jit"
    influx_token: str | None = None
    influx_user: str | None = None
    influx_password: str | None = None

    db_url: str = "sqlite:///jitstock.db"
    tsdb_path: Path | None = (
        None  # SQLite time series file when no InfluxDB URL; default data_dir/jitstock-ts.db
    )

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    auth: Literal["on", "off"] = "on"
    bootstrap_admin_key: str | None = None

    # Ingest flush: at most this many messages or this much waiting per durable commit.
    ingest_flush_max_msgs: int = Field(default=2000, ge=1)
    ingest_flush_max_ms: float = Field(default=20.0, gt=0)

    # Webhook dispatch
    webhook_timeout_s: float = 5.0
    # 40 attempts with a 5-minute cap keep trying for about three hours of supplier outage, then alert
    webhook_max_attempts: int = 40
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_cap_s: float = 300.0

    def check_production(self) -> None:
        """Refuse placeholder secrets and open auth outside development."""
        if self.environment != "production":
            return
        if self.auth == "off":
            raise ValueError(
                "JITSTOCK_AUTH=off is for the demo only; production needs API keys"
            )
        for name in ("bootstrap_admin_key", "influx_password", "mqtt_password"):
            value = getattr(self, name)
            if value is not None and value.lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"JITSTOCK_{name.upper()} is a placeholder; set a real secret"
                )

    @property
    def tsdb_file(self) -> Path:
        """Where the embedded time series store lives."""
        return self.tsdb_path or self.data_dir / "jitstock-ts.db"

    @property
    def spool_file(self) -> Path:
        """Where points wait while InfluxDB is unreachable."""
        return self.data_dir / "influx-spool.db"
