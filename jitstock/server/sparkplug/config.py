"""Building the bridge from the server's settings: off unless JITSTOCK_SPARKPLUG_GROUPS is set."""

from __future__ import annotations

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.db.session import SessionFactory
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import MqttConnection
from jitstock.server.registry import BinRegistry
from jitstock.server.settings import ServerSettings, SettingRefused
from jitstock.server.sparkplug.bridge import SparkplugBridge
from jitstock.server.sparkplug.feed import Submit
from jitstock.server.sparkplug.topics import MAX_ID_LEN, subscriptions

# A live edge node's agents are reported online at least this often (and four times
# within JITSTOCK_ALERT_AGENT_SILENT_S, so a silent but live gateway never looks gone).
MAX_HEARTBEAT_S = 30.0
# MQTT topic characters a Sparkplug id may not hold (level separator and wildcards).
FORBIDDEN_ID_CHARS = frozenset("/+#")


def sparkplug_groups(value: str | None) -> tuple[str, ...]:
    """The group ids of JITSTOCK_SPARKPLUG_GROUPS; SettingRefused names a bad one."""
    if value is None or not value.strip():
        return ()
    groups = tuple(g.strip() for g in value.split(","))
    for g in groups:
        if not 0 < len(g) <= MAX_ID_LEN or FORBIDDEN_ID_CHARS & set(g):
            raise SettingRefused(
                f"JITSTOCK_SPARKPLUG_GROUPS: group id {g!r} must be 1-{MAX_ID_LEN} "
                "characters without '/', '+' or '#' (comma-separated ids)"
            )
    return tuple(dict.fromkeys(groups))


def build_bridge(
    settings: ServerSettings,
    *,
    registry: BinRegistry,
    metrics: Metrics,
    session_factory: SessionFactory,
    submit: Submit,
    clock: Clock = REAL_CLOCK,
) -> SparkplugBridge | None:
    """The bridge with its own MQTT session, or None when Sparkplug ingest is off."""
    groups = sparkplug_groups(settings.sparkplug_groups)
    if not groups:
        return None
    connection = MqttConnection(
        settings.mqtt_url,
        f"{settings.mqtt_client_id}-sparkplug",
        subscriptions(groups),
        username=settings.mqtt_user,
        password=settings.mqtt_password,
        tls_ca=settings.mqtt_tls_ca,
        protocol=settings.mqtt_protocol,
    )
    return SparkplugBridge(
        connection=connection,
        groups=groups,
        registry=registry,
        metrics=metrics,
        session_factory=session_factory,
        submit=submit,
        clock=clock,
        rebirth_interval_s=settings.sparkplug_rebirth_interval_s,
        heartbeat_s=min(MAX_HEARTBEAT_S, settings.alert_agent_silent_s / 4),
    )
