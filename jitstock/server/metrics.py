"""Prometheus metrics of one server instance (own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Every counter, gauge and histogram the server exports on /metrics."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.readings = Counter("jitstock_readings", "Readings applied", registry=r)
        self.scans = Counter("jitstock_scans", "Scans applied", registry=r)
        self.below_tare = Counter(
            "jitstock_readings_below_tare",
            "Readings clearly below their bin's tare (a scale not weighing): held, not counted",
            registry=r,
        )
        self.dock_scans = Counter(
            "jitstock_dock_scans",
            "What became of a dock scan's code, by outcome (dock_scans.SCAN_OUTCOMES)",
            ["outcome"],
            registry=r,
        )
        self.batches = Counter(
            "jitstock_batches", "MQTT batches applied", ["kind"], registry=r
        )
        self.rejected_batches = Counter(
            "jitstock_rejected_batches",
            "Batches rejected whole, by reason",
            ["reason"],
            registry=r,
        )
        self.rejected_items = Counter(
            "jitstock_rejected_items",
            "Readings or scans rejected inside a good batch, by reason",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "jitstock_duplicate_batches",
            "Batches already applied (re-sent)",
            registry=r,
        )
        self.seq_resets = Counter(
            "jitstock_seq_resets",
            "Agents that started their sequence again (new outbox)",
            registry=r,
        )
        self.seq_reused = Counter(
            "jitstock_seq_reused",
            "Readings batches dropped as repeats although dated more than the allowed "
            "clock skew after their bins were last seen: the agent's seq counter went back",
            registry=r,
        )
        self.seq_gaps = Counter(
            "jitstock_seq_gaps", "Missing sequence numbers seen per agent", registry=r
        )
        self.dead_letters = Counter(
            "jitstock_dead_letters",
            "MQTT messages ingest could not apply, stored as dead letters, by reason",
            ["reason"],
            registry=r,
        )
        self.ingest_lag = Histogram(
            "jitstock_ingest_lag_seconds",
            "Reading timestamp to durable commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.flush_seconds = Histogram(
            "jitstock_ingest_flush_seconds",
            "Time to make one ingest flush durable",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
            registry=r,
        )
        self.spool_points = Gauge(
            "jitstock_tsdb_spool_points", "Points waiting for InfluxDB", registry=r
        )
        self.spool_age = Gauge(
            "jitstock_tsdb_spool_oldest_age_seconds",
            "Age of the oldest spooled point",
            registry=r,
        )
        self.orders_created = Counter(
            "jitstock_orders_created", "Orders created by the reorder rule", registry=r
        )
        self.orders_by_state = Gauge(
            "jitstock_orders", "Orders by state", ["state"], registry=r
        )
        self.webhook_latency = Histogram(
            "jitstock_webhook_latency_seconds",
            "Supplier webhook request latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.webhook_attempts = Counter(
            "jitstock_webhook_attempts",
            "Webhook attempts by outcome",
            ["outcome"],
            registry=r,
        )
        self.agents_online = Gauge(
            "jitstock_agents_online", "Agents whose status is online", registry=r
        )
