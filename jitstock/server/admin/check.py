"""`jitstock admin check`: can this server run here?  One line per part, each
green or red, so a plant sees at once which of configuration, database, broker
and history store is wrong and what to do about it.
"""

from __future__ import annotations

import os
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from jitstock.clock import Clock
from jitstock.server.admin.accounts import live_admin_keys
from jitstock.server.admin.schema import SchemaRefused, check_schema
from jitstock.server.db.migrate import head_revision
from jitstock.server.db.session import (
    make_engine,
    make_session_factory,
    normalise_url,
    transaction,
)
from jitstock.server.mqtt import parse_mqtt_url
from jitstock.server.provisioning.dynsec import DynsecCommandFailed, DynsecUnavailable
from jitstock.server.provisioning.provisioner import Provisioner
from jitstock.server.settings import ServerSettings

# Each probe gives up after this long: a reachable service answers in milliseconds,
# an unreachable one (a firewall dropping packets) would otherwise hang the check.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One part's verdict and the one line a person reads."""

    part: str
    ok: bool
    message: str

    def render(self) -> str:
        """`ok    database    ...` / `FAIL  broker      ...`."""
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.part:<13} {self.message}"


def run_checks(settings: ServerSettings, clock: Clock) -> list[CheckLine]:
    """Every check, in the order a plant would fix them; none raises."""
    checks: list[Callable[[ServerSettings, Clock], CheckLine]] = [
        check_data_dir,
        check_database,
        check_broker,
        check_history,
        check_provisioning,
    ]
    if settings.cluster:
        checks.insert(0, check_cluster)
    out = []
    for check in checks:
        try:
            out.append(check(settings, clock))
        except Exception as exc:  # a probe's bug must not hide the other lines
            out.append(
                CheckLine(check.__name__.removeprefix("check_"), False, repr(exc))
            )
    return out


def check_cluster(settings: ServerSettings, _clock: Clock) -> CheckLine:
    """JITSTOCK_CLUSTER=true: the settings `jitstock server` needs for a node."""
    from jitstock.server.cluster.node import check_settings
    from jitstock.server.settings import SettingRefused

    try:
        check_settings(settings)
    except SettingRefused as exc:
        return CheckLine("cluster", False, str(exc))
    return CheckLine(
        "cluster",
        True,
        f"node {settings.cluster_node} of group {settings.cluster_group} "
        "(MQTT 5, PostgreSQL, InfluxDB)",
    )


def _writable_dir(path: os.PathLike[str] | str) -> str | None:
    if not os.path.isdir(path):
        return f"{path} does not exist"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"{path} is not writable by this user"
    return None


def check_data_dir(settings: ServerSettings, _clock: Clock) -> CheckLine:
    """The data directory exists and is writable (spool, link key, embedded history)."""
    problem = _writable_dir(settings.data_dir)
    if problem:
        return CheckLine("configuration", False, f"JITSTOCK_DATA_DIR: {problem}")
    return CheckLine(
        "configuration",
        True,
        f"{settings.environment}, data dir {settings.data_dir.resolve()}, "
        f"auth {settings.auth}",
    )


def check_database(settings: ServerSettings, clock: Clock) -> CheckLine:
    """Reachable, at this release's head revision, with a live admin key."""
    where = make_url(normalise_url(settings.db_url)).render_as_string(
        hide_password=True
    )
    try:
        engine = make_engine(settings.db_url)
    except (ValueError, SQLAlchemyError) as exc:
        return CheckLine("database", False, f"{where}: {exc}")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = check_schema(settings.db_url)
        head = head_revision()
        if revision != head:
            return CheckLine(
                "database",
                False,
                f"{where} is at revision {revision or 'none (empty)'}, this release "
                f"needs {head}: run `jitstock admin init`",
            )
        with transaction(make_session_factory(engine), readonly=True) as s:
            admins = len(live_admin_keys(s, clock.time_ms()))
    except SchemaRefused as exc:
        return CheckLine("database", False, f"{where}: {exc}")
    except SQLAlchemyError as exc:
        reason = str(exc.orig if hasattr(exc, "orig") else exc).strip().splitlines()
        return CheckLine("database", False, f"{where} unreachable: {reason[0]}")
    finally:
        engine.dispose()
    if not admins:
        return CheckLine(
            "database", False, f"{where}: no live admin key: run `jitstock admin init`"
        )
    return CheckLine(
        "database", True, f"{where} at revision {head}, {admins} admin key(s)"
    )


def check_broker(settings: ServerSettings, _clock: Clock) -> CheckLine:
    """The broker accepts a connection with the server's credentials (a throw-away client id,
    so a running server keeps its session)."""
    try:
        address = parse_mqtt_url(settings.mqtt_url)
    except ValueError as exc:
        return CheckLine("broker", False, str(exc))
    # from the parts, never the raw URL: a user:password@ in it must not reach a terminal log
    where = f"{'mqtts' if address.tls else 'mqtt'}://{address.host}:{address.port}"
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{settings.mqtt_client_id}-check-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    if settings.mqtt_user is not None:
        client.username_pw_set(settings.mqtt_user, settings.mqtt_password)
    if address.tls:
        ca = str(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None
        try:
            client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError) as exc:
            return CheckLine("broker", False, f"JITSTOCK_MQTT_TLS_CA: {exc}")
    answered = threading.Event()
    verdict: list[str] = []

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            verdict.append(f"refused the connection: {reason}")
        answered.set()

    client.on_connect = on_connect
    try:
        client.connect(address.host, address.port, keepalive=30)
    except (OSError, ssl.SSLError) as exc:
        return CheckLine("broker", False, f"{where} unreachable: {exc}")
    client.loop_start()
    try:
        if not answered.wait(PROBE_TIMEOUT_S):
            return CheckLine(
                "broker", False, f"{where}: no answer in {PROBE_TIMEOUT_S:.0f} s"
            )
    finally:
        client.disconnect()
        client.loop_stop()
    if verdict:
        return CheckLine("broker", False, f"{where} {verdict[0]}")
    user = f" as {settings.mqtt_user}" if settings.mqtt_user else " (anonymous)"
    return CheckLine(
        "broker", True, f"{where} accepts MQTT {settings.mqtt_protocol}{user}"
    )


def check_history(settings: ServerSettings, _clock: Clock) -> CheckLine:
    """InfluxDB answers and accepts the credentials; or the embedded store's place is writable."""
    if not settings.influx_url:
        problem = _writable_dir(settings.tsdb_file.parent)
        if problem:
            return CheckLine("history", False, f"embedded store: {problem}")
        return CheckLine(
            "history",
            True,
            f"embedded SQLite store {settings.tsdb_file} (no JITSTOCK_INFLUX_URL)",
        )
    url = settings.influx_url
    parts = httpx.URL(url)
    shown = f"{parts.scheme}://{parts.host}:{parts.port or 8086}"  # no userinfo
    headers = (
        {"Authorization": f"Token {settings.influx_token}"}
        if settings.influx_token
        else {}
    )
    auth = (
        (settings.influx_user, settings.influx_password or "")
        if settings.influx_user and not settings.influx_token
        else None
    )
    try:
        with httpx.Client(
            base_url=url, headers=headers, auth=auth, timeout=PROBE_TIMEOUT_S
        ) as http:
            ping = http.get("/ping")
            version = ping.headers.get("X-Influxdb-Version", "?")
            r = http.post("/query", data={"q": "SHOW DATABASES"})
    except httpx.HTTPError as exc:
        return CheckLine("history", False, f"InfluxDB at {shown} unreachable: {exc}")
    if r.status_code in (401, 403):
        return CheckLine(
            "history",
            False,
            f"InfluxDB at {shown} refused the credentials (JITSTOCK_INFLUX_USER/"
            "PASSWORD or JITSTOCK_INFLUX_TOKEN)",
        )
    if r.status_code >= 400 or ping.status_code != 204:
        return CheckLine(
            "history",
            False,
            f"InfluxDB at {shown} answered {r.status_code}: {r.text[:200]}",
        )
    try:
        series = r.json()["results"][0].get("series", [])
        names = {row[0] for s in series for row in s.get("values", [])}
    except (ValueError, KeyError, IndexError, TypeError):
        names = set()
    db = settings.influx_db
    state = "exists" if db in names else "will be created by the server"
    return CheckLine(
        "history", True, f"InfluxDB {version} at {shown}, database {db!r} {state}"
    )


def check_provisioning(settings: ServerSettings, _clock: Clock) -> CheckLine:
    """With JITSTOCK_MQTT_DYNSEC_USER set, the broker's Dynamic Security plugin answers its
    admin client (one read-only command); unset, agents' logins come from the password file."""
    provisioner = Provisioner.from_settings(settings)
    if provisioner is None:
        return CheckLine(
            "provisioning",
            True,
            "off (no JITSTOCK_MQTT_DYNSEC_USER): agents' MQTT logins are made in the "
            "broker's password file",
        )
    client = provisioner.client
    where = f"{client.address.host}:{client.address.port}"
    try:
        with client.session() as session:
            session.run({"command": "getDefaultACLAccess"})[0].check()
    except (DynsecUnavailable, DynsecCommandFailed) as exc:
        return CheckLine("provisioning", False, str(exc))
    return CheckLine(
        "provisioning",
        True,
        f"Dynamic Security at {where} answers admin client "
        f"{settings.mqtt_dynsec_user!r}: POST /api/v1/agents provisions agents",
    )
