"""Composition root of the server process: builds every part and wires them.

Nothing else constructs infrastructure; each part receives what it needs, so a
test can build a ServerApp on real services with its own settings.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server.alert_rules import AlertSpec
from jitstock.server.alerts import AlertMonitor
from jitstock.server.api import create_api
from jitstock.server.cluster import node as cluster
from jitstock.server.cluster.ingest import ClusterIngest
from jitstock.server.cluster.state import ClusterState
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.deadletters import DeadLetterInfo, DeadLetterStore
from jitstock.server.dispatch import Dispatcher
from jitstock.server.flush import Flush
from jitstock.server.ingest import SUBSCRIPTIONS, Ingest
from jitstock.server.live import LiveHub
from jitstock.server.metrics import Metrics
from jitstock.server.mqtt import MqttConnection
from jitstock.server.notify import Notifier, NotifyConfig, NotifySettingRefused
from jitstock.server.registry import BinRegistry
from jitstock.server.replenish.bin_policy import Params as ReplenishParams
from jitstock.server.replenish.recalc import Recalculator
from jitstock.server.sender import ProcessClient
from jitstock.server.settings import ServerSettings, SettingRefused
from jitstock.server.sparkplug.config import build_bridge
from jitstock.server.state import SqlState
from jitstock.server.supplier.email_channel import EmailChannel, SmtpConfig
from jitstock.server.supplier.escalation import Escalator
from jitstock.server.supplier.events import EventSender
from jitstock.server.supplier.links import LinkSigner, link_secret
from jitstock.server.tsdb import open_store

log = logging.getLogger(__name__)

# Bins changed by another server process (or by hand in the DB) are picked up this often.
REGISTRY_REFRESH_S = 10.0
# A supplier event published on an MQTT order topic waits this long for its PUBACK
# (the event sender's claim lease is far longer); without one it is retried.
EVENT_PUBACK_TIMEOUT_S = 10.0
# uvicorn waits this long for open responses (event streams never end by themselves)
# before it closes them: a stop must end the process within seconds (systemd, issue 12).
GRACEFUL_SHUTDOWN_S = 1


class ServerApp:
    """Everything one `jitstock server` process runs."""

    def __init__(self, settings: ServerSettings, clock: Clock = REAL_CLOCK) -> None:
        settings.check_production()
        cluster.check_settings(settings)
        # a second node with this JITSTOCK_CLUSTER_NODE is refused (held until exit)
        self._node_name = (
            cluster.claim_node_name(settings) if settings.cluster else None
        )
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.clock = clock
        self.metrics = Metrics()
        upgrade(settings.db_url)
        self.engine = make_engine(settings.db_url)
        self.session_factory = make_session_factory(self.engine)
        self.tsdb = open_store(
            influx_url=settings.influx_url,
            influx_db=settings.influx_db,
            token=settings.influx_token,
            user=settings.influx_user,
            password=settings.influx_password,
            sqlite_path=settings.tsdb_file,
            spool_path=settings.spool_file,
        )
        self.registry = BinRegistry()
        self.state = (ClusterState if settings.cluster else SqlState)(
            self.session_factory, self.registry
        )
        self.registry.set_loader(self.state.load_registry)
        self.registry.reload()
        self.mqtt = MqttConnection(
            settings.mqtt_url,
            cluster.client_id(settings),
            cluster.subscriptions(settings, SUBSCRIPTIONS),
            username=settings.mqtt_user,
            password=settings.mqtt_password,
            tls_ca=settings.mqtt_tls_ca,
            receive_maximum=settings.mqtt_receive_maximum,
            protocol=settings.mqtt_protocol,
        )
        self.http = httpx.Client(timeout=settings.webhook_timeout_s)
        # dashboard (issue 6): alerts and the live push to open pages
        try:
            self.notifier = Notifier(
                _notify_config(settings), self.http, self.metrics.registry
            )
        except NotifySettingRefused as exc:
            raise SettingRefused(str(exc)) from exc
        self.live = LiveHub(
            self.session_factory,
            clock=clock,
            agent_silent_s=settings.alert_agent_silent_s,
        )
        self.alerts = AlertMonitor(
            self.session_factory,
            self.metrics,
            clock=clock,
            notifier=self.notifier,
            check_s=settings.alert_check_s,
            agent_silent_s=settings.alert_agent_silent_s,
            ack_deadline_s=settings.alert_ack_deadline_s,
            on_change=self._alerts_changed,
        )
        # webhook POSTs from a child process by default: out of ingest's GIL (issue 12)
        self.webhook_client: ProcessClient | None = (
            ProcessClient(settings.webhook_timeout_s)
            if settings.webhook_sender == "process"
            else None
        )
        # suppliers without an API (issue 13): orders by e-mail, answered by signed links
        self.supplier_links = LinkSigner(
            link_secret(settings.supplier_link_secret, settings.data_dir),
            settings.supplier_link_ttl_s,
        )
        self.order_email = EmailChannel(
            SmtpConfig.from_settings(settings),
            self.supplier_links,
            settings.link_base_url,
            clock=clock,
        )
        self.dispatcher = Dispatcher(
            self.session_factory,
            self.webhook_client or self.http,
            clock=clock,
            publish_mqtt=self._publish_order,
            metrics=self.metrics,
            alert=self.alerts.hook,
            on_attempt=self.alerts.on_attempt,
            max_attempts=settings.webhook_max_attempts,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_cap_s=settings.webhook_backoff_cap_s,
            email=self.order_email,
        )
        # the first attempt of an order ingest decides is claimed in the deciding flush
        self.state.handoff = self.dispatcher
        self.order_listeners: list[Callable[[list[str]], None]] = []
        self.dead_letters = DeadLetterStore(self.session_factory, clock=clock)
        self.ingest = (ClusterIngest if settings.cluster else Ingest)(
            self.tsdb,
            self.state,
            self.registry,
            self.metrics,
            connection=self.mqtt,
            clock=clock,
            flush_max_msgs=settings.ingest_flush_max_msgs,
            flush_max_ms=settings.ingest_flush_max_ms,
            on_flush=[self._after_flush, self._dashboard_flush],
            dead_letters=self.dead_letters,
            on_dead_letter=[self._dead_letter_alert],
        )
        # Sparkplug B gateways (issue 17): off unless JITSTOCK_SPARKPLUG_GROUPS is set; what
        # they report goes through ingest like an agent's batch (docs/sparkplug.md)
        self.sparkplug = build_bridge(
            settings,
            registry=self.registry,
            metrics=self.metrics,
            session_factory=self.session_factory,
            submit=self.ingest.replay,
            clock=clock,
        )
        self.replenish = Recalculator(
            self.session_factory,
            ReplenishParams.from_settings(settings),
            clock,
            interval_s=settings.replenish_interval_s,
            check_s=settings.replenish_check_s,
            on_change=self._policy_changed,
        )
        self.supplier_events = EventSender(
            self.session_factory,
            self.http,
            clock=clock,
            idle_poll_s=settings.supplier_events_poll_s,
            backoff_base_s=settings.webhook_backoff_base_s,
            backoff_cap_s=settings.webhook_backoff_cap_s,
            publish_mqtt=self._publish_event,
        )
        self.escalator = Escalator(
            self.session_factory,
            clock=clock,
            interval_s=settings.escalation_interval_s,
            on_orders=self._escalated,
            alert=self.alerts.hook,
        )
        # cluster mode (issue 16, docs/cluster.md): these run on the leader node only
        self._once_parts: list[cluster.Part] = [
            self.replenish,
            self.supplier_events,
            self.escalator,
            self.alerts,
        ]
        self.cluster = (
            cluster.ClusterNode(
                settings,
                self.engine,
                leader_parts=self._once_parts,
                reload_registry=self.registry.reload,
                wake_dispatcher=self.dispatcher.wake,
                clock=clock,
            )
            if settings.cluster
            else None
        )
        self.api = create_api(self)
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopped = False
        self._refresher = threading.Thread(
            target=self._refresh_loop, name="registry-refresh", daemon=True
        )
        self._uvicorn: uvicorn.Server | None = None

    def _dashboard_flush(self, flush: Flush, _orders: list[str]) -> None:
        # marks only (ids per flush, never per reading): alerts and live pages do the work
        agents = [agent for _site, agent, _status in flush.statuses]
        self.live.mark(flush.changed_bins, agents)
        # Alerts re-check only bins whose alert state can have changed: a count that moved
        # to or below the reorder point (stockout and safety stock lie below it), a bin with
        # an open alert whose count moved (to resolve it), a bin whose weight went below
        # its tare or came back, and the bins of agents that reported sensor health.  A
        # re-sent unchanged reading changes nothing; everything else is caught by the full
        # pass every alert_check_s.
        snap = self.registry.snapshot
        watch = self.alerts.alerting_bins
        changed = set(flush.count_changed)
        bins = [
            b
            for b, count, _ in flush.counts
            if b in changed
            and (b in watch or count <= snap.reorder_point[snap.index[b]])
        ]
        # a weight that went below the bin's tare or came back: a scale fault starts or ends
        bins += [b for b, _grams, _below in flush.tare_changed]
        if agents:
            reporting = set(agents)
            bins += [c.bin_id for c in snap.cals if c.agent_id in reporting]
        self.alerts.mark(bins, agents)

    def _dead_letter_alert(self, info: DeadLetterInfo) -> None:
        # one open alert per agent (or per unparsable source) until acknowledged
        entity = f"agent:{info.agent_id}" if info.agent_id else "ingest"
        self.alerts.report(
            AlertSpec(
                "dead_letter",
                entity,
                f"MQTT message on {info.topic} could not be applied ({info.reason}: "
                f"{info.error}); dead letter {info.id}, see /api/v1/dead-letters",
                "critical",
                agent_id=info.agent_id,
                detail={"dead_letter": info.id, "reason": info.reason},
            )
        )

    def _after_flush(self, flush: Flush, orders: list[str]) -> None:
        if orders:
            # the state writer handed what it claimed to the senders; the rest needs a look
            if len(flush.claimed) < len(orders):
                self.dispatcher.wake()
            for listener in self.order_listeners:
                listener(orders)

    def _alerts_changed(self, changes: list[dict[str, Any]]) -> None:
        self.live.publish("alerts", changes)
        # an agent gone silent (no last will) or back: its tiles change with no flush to say so
        agents = [
            c["agent_id"]
            for c in changes
            if c["kind"] == "agent_offline" and c["agent_id"] is not None
        ]
        self.live.mark([], agents)

    def _policy_changed(self, _bins: list[str], orders: list[str]) -> None:
        # new reorder points must reach ingest's snapshot; orders they caused must go out
        self.registry.reload()
        if orders:
            self.dispatcher.wake()

    def _escalated(self, orders: list[str]) -> None:
        # bridging orders go out now; the first orders' cancellations are events
        self.dispatcher.wake()
        self.supplier_events.wake()
        for listener in self.order_listeners:
            listener(orders)

    def _publish_order(self, site: str, supplier: str, payload: bytes) -> None:
        # order.created counts as delivered once the broker has it (PUBACK), as the
        # lifecycle events do: paho's queue is memory, lost with the process.  Called
        # from a dispatcher thread, never the ingest thread that committed the order.
        self.mqtt.publish_acked(
            protocol.orders_topic(site, supplier), payload, EVENT_PUBACK_TIMEOUT_S
        )

    def _publish_event(self, site: str, supplier: str, payload: bytes) -> None:
        # a lifecycle event counts as delivered once the broker has it (PUBACK)
        self.mqtt.publish_acked(
            protocol.orders_topic(site, supplier), payload, EVENT_PUBACK_TIMEOUT_S
        )

    def mqtt_connected(self) -> bool:
        """Whether the broker connection is up (for /healthz)."""
        return self.mqtt.connected.is_set()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(REGISTRY_REFRESH_S):
            try:
                self.registry.reload()
            except Exception:
                log.exception("registry refresh failed")

    def start(self) -> None:
        """Start the background parts: MQTT, ingest, dispatcher."""
        self.mqtt.start()
        self.ingest.start()
        if self.sparkplug is not None:
            self.sparkplug.start()
        if self.webhook_client is not None:
            self.webhook_client.start()
        self.dispatcher.start()
        self._refresher.start()
        if self.cluster is not None:
            self.cluster.start()  # the leader starts the once-only parts
        else:
            for part in self._once_parts:
                part.start()
        self.notifier.start()
        self.live.start()

    def serve(self) -> None:
        """Run the HTTP API in this thread until stopped (Ctrl-C or stop())."""
        config = uvicorn.Config(
            self.api,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._uvicorn = uvicorn.Server(config)
        self._uvicorn.run()

    def stop(self) -> None:
        """Stop everything, in the reverse order of start.  Once: a signal and the end of
        serve() may both ask, and the second waits for the first to finish."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stop_parts()
            self._stopped = True

    def _stop_parts(self) -> None:
        self._stop.set()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self.live.stop()  # ends open event streams, or uvicorn would wait for them
        if self.cluster is not None:
            self.cluster.stop()
        if self._node_name is not None:
            self._node_name.close()  # the name is free for this node's restart
        self.alerts.stop()
        self.notifier.stop()
        self.replenish.stop()
        self.escalator.stop()
        self.supplier_events.stop()
        if self.sparkplug is not None:
            self.sparkplug.stop()
        self.ingest.stop()
        self.dispatcher.stop()
        if self.webhook_client is not None:
            self.webhook_client.close()
        self.mqtt.stop()
        self.tsdb.close()
        self.http.close()
        self.engine.dispose()


def _notify_config(settings: ServerSettings) -> NotifyConfig:
    """Alert notification channels from the settings."""
    to = tuple(
        a.strip() for a in (settings.alert_email_to or "").split(",") if a.strip()
    )
    return NotifyConfig(
        webhook_url=settings.alert_webhook_url,
        smtp_host=settings.alert_smtp_host,
        smtp_port=settings.alert_smtp_port,
        smtp_from=settings.alert_smtp_from,
        email_to=to,
        smtp_user=settings.alert_smtp_user,
        smtp_password=settings.alert_smtp_password,
        smtp_starttls=settings.alert_smtp_starttls,
        webhook_secret=settings.alert_webhook_secret,
        link_base=settings.link_base_url,
    )
