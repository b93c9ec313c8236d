"""Server configuration: one pydantic-settings class, `JITSTOCK_` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"changeme", "secret", "password", "admin"}
# A production admin key must be long and random-looking: secrets.token_urlsafe(32) gives
# 43 characters with ~25 distinct; a typed word or a repeated pattern has far fewer.
MIN_ADMIN_KEY_CHARS = 32
MIN_ADMIN_KEY_DISTINCT = 12


class SettingRefused(ValueError):
    """A setting the server will not run with; the message names it and says what to do."""


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
    # Device provisioning (issue 16, docs/provisioning.md): the server's Mosquitto Dynamic
    # Security admin client.  Set, POST /api/v1/agents creates each agent's MQTT client.
    mqtt_dynsec_user: str | None = None
    mqtt_dynsec_password: str | None = None
    # How long one dynsec request may take (connect, subscribe, answer) before a 503.
    mqtt_dynsec_timeout_s: float = Field(default=5.0, gt=0, le=120)
    # The broker URL written into a provisioned agent's edge.toml; unset: mqtt_url
    # (the server may reach the broker on 127.0.0.1 while the Pis need its LAN name).
    mqtt_agent_url: str | None = None

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
    http_port: int = Field(default=8000, ge=0, le=65535)
    auth: Literal["on", "off"] = "on"
    bootstrap_admin_key: str | None = None
    # Dashboard sign-ins expire after this long (a 12 h shift with margin); machine keys never do.
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, le=30 * 86400.0)

    # Ingest flush: at most this many messages or this much waiting per durable commit.
    # The wait ends as soon as a message changes something (ingest_worker._drain): only
    # agents re-sending unchanged readings wait it out, so it buys CPU (fewer flushes:
    # 20 ms against 5 ms, 12.9 against 17.8 µs per reading on issue 12's load), not latency.
    ingest_flush_max_msgs: int = Field(default=500, ge=1)
    ingest_flush_max_ms: float = Field(default=20.0, gt=0)

    # Webhook dispatch
    webhook_timeout_s: float = 5.0
    # 40 attempts with a 5-minute cap keep trying for about three hours of supplier outage, then alert
    webhook_max_attempts: int = 40
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_cap_s: float = 300.0
    # Where webhook POSTs are made: "process" (a child process, out of ingest's GIL) or
    # "thread" (the dispatcher's sender threads, in the server process)
    webhook_sender: Literal["process", "thread"] = "process"

    # Replenishment (jitstock.server.replenish): a full recalculation hourly is plenty for
    # daily demand; the cheap demand-shift / new-delivery check runs more often.
    replenish_interval_s: float = Field(default=3600.0, gt=0)
    replenish_check_s: float = Field(default=300.0, gt=0)
    replenish_history_days: int = Field(default=180, ge=7)
    abc_window_days: int = Field(default=90, ge=7)
    service_level_a: float = Field(default=0.99, gt=0.5, lt=1)
    service_level_b: float = Field(default=0.97, gt=0.5, lt=1)
    service_level_c: float = Field(default=0.95, gt=0.5, lt=1)
    # no part's fill target allocated within its class goes below this (replenish/allocate.py)
    replenish_fill_floor: float = Field(default=0.90, gt=0.5, lt=1)
    # the class allocation prices a unit-day on backorder at this many unit-days of stock,
    # each at the part's value (replenish/allocate.py); 0 = least stock value alone
    replenish_backorder_weight: float = Field(
        default=30.0, ge=0, le=10_000, allow_inf_nan=False
    )
    default_lead_time_s: float = Field(default=3 * 86400.0, gt=0)

    # Supplier loop (jitstock.server.supplier): deadlines are minutes to hours, so the
    # escalation check runs twice a minute; supplier events poll like the dispatcher.
    escalation_interval_s: float = Field(default=30.0, gt=0)
    supplier_events_poll_s: float = Field(default=1.0, gt=0)

    # Dashboard alerts (jitstock.server.alerts): full re-check period, heartbeat and ack deadlines,
    # and optional notifications (a JSON webhook and/or e-mail through SMTP).
    alert_check_s: float = Field(default=15.0, gt=0)
    alert_agent_silent_s: float = Field(default=120.0, gt=0)
    alert_ack_deadline_s: float = Field(default=900.0, gt=0)
    alert_webhook_url: str | None = None
    alert_smtp_host: str | None = None
    alert_smtp_port: int = 25
    alert_smtp_from: str = "jitstock@localhost"
    alert_email_to: str | None = None  # comma-separated addresses
    # Standard Webhooks secret ('whsec_…') the alert webhook is signed with; unset: unsigned
    alert_webhook_secret: str | None = None
    # the alert mail relay's login and STARTTLS (an Office 365 or Gmail relay needs both)
    alert_smtp_user: str | None = None
    alert_smtp_password: str | None = None
    alert_smtp_starttls: bool = False

    # Orders by e-mail (suppliers whose order_channel is 'email'; issue 13): the mail
    # relay, and the signed one-click links in each purchase order.
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "jitstock@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # Where suppliers reach this server (the links' base); unset: http://<http_host>:<http_port>
    public_url: str | None = None
    # HMAC key of the links; unset: generated once into data_dir/supplier-links.key
    supplier_link_secret: str | None = None
    # Two weeks: a small supplier reads mail late, and one order takes days to ship.
    supplier_link_ttl_s: float = Field(default=14 * 86400.0, gt=0)

    # Sparkplug B ingest (issue 17, docs/sparkplug.md): the Sparkplug group ids to follow,
    # comma-separated; unset, no Sparkplug subscription at all.
    sparkplug_groups: str | None = None
    # At most one rebirth request (NCMD) per edge node this often: a gateway that keeps
    # losing messages is not flooded with commands.
    sparkplug_rebirth_interval_s: float = Field(default=10.0, gt=0, le=3600)

    # Cluster (issue 16, docs/cluster.md): several nodes on one PostgreSQL and one MQTT 5
    # broker.  Each node needs its own id (its MQTT client id and session).
    cluster: bool = False
    cluster_node: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,40}$")
    cluster_group: str = Field(default="jitstock", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    # A missing seq is waited for this long before the leader counts it as a gap and passes
    # over it (a later arrival is then refused as a duplicate).  A batch may sit on another
    # node, or in a dead node's broker session until that node is back (Mosquitto queues a
    # shared subscription's share for an offline member): longer than any node outage.
    cluster_gap_wait_s: float = Field(default=3600.0, gt=0, le=7 * 86400)

    def check_production(self) -> None:
        """Refuse placeholder secrets, weak admin keys and open auth in production (SettingRefused)."""
        if self.environment != "production":
            return
        if self.auth == "off":
            raise SettingRefused(
                "JITSTOCK_AUTH=off is for the demo only; production needs API keys"
            )
        for name in (
            "bootstrap_admin_key",
            "influx_password",
            "mqtt_password",
            "mqtt_dynsec_password",
            "smtp_password",
            "alert_smtp_password",
            "alert_webhook_secret",
            "supplier_link_secret",
        ):
            value = getattr(self, name)
            if value is not None and value.lower() in PLACEHOLDER_SECRETS:
                raise SettingRefused(
                    f"JITSTOCK_{name.upper()} is a placeholder; set a real secret"
                )
        key = self.bootstrap_admin_key
        if key is not None and (
            len(key) < MIN_ADMIN_KEY_CHARS or len(set(key)) < MIN_ADMIN_KEY_DISTINCT
        ):
            raise SettingRefused(
                f"JITSTOCK_BOOTSTRAP_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} "
                "random characters in production (it has "
                f"{len(key)}, {len(set(key))} distinct); generate one with: "
                'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
            )

    @property
    def agent_silent_ms(self) -> int:
        """How long an agent may be silent before tiles, levels and alerts call it offline."""
        return int(self.alert_agent_silent_s * 1000)

    @property
    def tsdb_file(self) -> Path:
        """Where the embedded time series store lives."""
        return self.tsdb_path or self.data_dir / "jitstock-ts.db"

    @property
    def link_base_url(self) -> str:
        """The base URL of the links in order e-mails."""
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip(
            "/"
        )

    @property
    def spool_file(self) -> Path:
        """Where points wait while InfluxDB is unreachable."""
        return self.data_dir / "influx-spool.db"
