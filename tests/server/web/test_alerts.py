"""Alerts on the state DB (SQLite and PostgreSQL): raised once per condition, resolved when it
clears, counted in the metrics, and notified by e-mail through a real SMTP server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import select, update

from jitstock.server.alert_rules import policy_marks
from jitstock.server.alerts import WEBHOOK_FAILING_AFTER, AlertMonitor
from jitstock.server.db.alert_models import Alert
from jitstock.server.db.models import Agent, Bin, BinEvent
from jitstock.server.db.session import transaction
from jitstock.server.kpis import compute
from jitstock.server.metrics import Metrics
from jitstock.server.notify import Notifier, NotifyConfig
from jitstock.server.order_attempt import AttemptOutcome
from tests.server.web.alert_plant import NOW, Clock, plant
from tests.server.web.smtp_sink import SmtpSink


def _alerts(db: Any) -> list[tuple[str, str, str]]:
    with transaction(db.factory, readonly=True) as s:
        return [
            (a.kind, a.entity, a.state)
            for a in s.scalars(select(Alert).order_by(Alert.id))
        ]


def test_conditions_raise_once_and_resolve_when_they_clear(db) -> None:
    plant(db)
    metrics = Metrics()
    clock = Clock()
    monitor = AlertMonitor(db.factory, metrics, clock=clock, agent_silent_s=60)
    assert monitor.run_full() == []
    with transaction(db.factory) as s:
        s.execute(update(Bin).where(Bin.id == "B1").values(on_hand=0))
        # its last will: the retained status says offline, no traffic since
        s.execute(
            update(Agent).values(online=False, reported_state="offline", status_ms=NOW)
        )
    monitor.mark(["B1"], ["pi-1"])
    raised = monitor.run_marked()
    assert {(c["event"], c["kind"], c["entity"]) for c in raised} == {
        ("raised", "stockout", "bin:B1"),
        ("raised", "agent_offline", "agent:pi-1"),
    }
    monitor.run_full()
    monitor.mark(["B1"], ["pi-1"])
    monitor.run_marked()
    assert sorted(_alerts(db)) == [
        ("agent_offline", "agent:pi-1", "open"),
        ("stockout", "bin:B1", "open"),
    ]
    text = generate_latest(metrics.registry).decode()
    assert 'jitstock_alerts_open{kind="stockout"} 1.0' in text

    # acknowledged stays one alert; the condition clearing resolves it
    assert monitor.run_full() == []  # nothing new: the open alerts are not raised again
    with transaction(db.factory, readonly=True) as s:
        stockout = s.scalars(select(Alert).where(Alert.kind == "stockout")).one()
    assert monitor.acknowledge(stockout.id, "anna")["state"] == "acknowledged"
    with transaction(db.factory) as s:
        s.execute(update(Bin).where(Bin.id == "B1").values(on_hand=12))
        s.execute(
            update(Agent).values(
                online=True,
                reported_state="online",
                status_ms=clock.ms,
                last_seen_ms=clock.ms,
            )
        )
    monitor.mark(["B1"], ["pi-1"])
    monitor.run_marked()
    assert sorted(_alerts(db)) == [
        ("agent_offline", "agent:pi-1", "resolved"),
        ("stockout", "bin:B1", "resolved"),
    ]

    # no heartbeat for longer than agent_silent_s: offline again, a new alert
    clock.ms += 61_000
    monitor.run_full()
    assert _alerts(db)[-1] == ("agent_offline", "agent:pi-1", "open")


def test_a_change_is_told_only_once_it_is_committed(db) -> None:
    """A dashboard told "alerts changed" fetches the alerts at once: told before the
    commit, it read the old list under load and showed it until the next change (a
    browser test saw a stockout that never appeared).  Each listener reads the table
    from its own session when told: raise, acknowledge and resolve are all there."""
    plant(db)
    clock = Clock()
    seen: list[list[tuple[str, str, str]]] = []
    monitor = AlertMonitor(
        db.factory,
        Metrics(),
        clock=clock,
        agent_silent_s=60,
        on_change=lambda _changes: seen.append(_alerts(db)),
    )
    with transaction(db.factory) as s:
        s.execute(update(Bin).where(Bin.id == "B1").values(on_hand=0))
    monitor.mark(["B1"], [])
    monitor.run_marked()
    assert seen == [[("stockout", "bin:B1", "open")]]
    assert monitor.run_full() == []  # nothing new: nobody is told
    assert len(seen) == 1
    with transaction(db.factory, readonly=True) as s:
        (row,) = s.scalars(select(Alert))
    monitor.acknowledge(row.id, "anna")
    assert seen[-1] == [("stockout", "bin:B1", "acknowledged")]
    with transaction(db.factory) as s:
        s.execute(update(Bin).where(Bin.id == "B1").values(on_hand=12))
    monitor.run_full()
    assert seen[-1] == [("stockout", "bin:B1", "resolved")]
    assert len(seen) == 3


def test_a_disabled_agent_raises_no_agent_offline_and_its_open_one_resolves(
    db,
) -> None:
    """A manager disabled it (the broker kicks it without a last will): not 'silent'."""
    plant(db)
    clock = Clock()
    monitor = AlertMonitor(db.factory, Metrics(), clock=clock, agent_silent_s=60)
    assert monitor.run_full() == []
    # silent past the threshold: alerted as offline
    clock.ms += 61_000
    monitor.run_full()
    assert _alerts(db) == [("agent_offline", "agent:pi-1", "open")]
    # disabled: the open alert resolves at the next check (marked, as PATCH does) ...
    with transaction(db.factory) as s:
        s.execute(update(Agent).values(enabled=False))
    monitor.mark([], ["pi-1"])
    changes = monitor.run_marked()
    assert [(c["event"], c["kind"]) for c in changes] == [("resolved", "agent_offline")]
    assert _alerts(db) == [("agent_offline", "agent:pi-1", "resolved")]
    # ... and none is raised however long it stays silent, or if its last will came
    clock.ms += 600_000
    assert monitor.run_full() == []
    with transaction(db.factory) as s:
        s.execute(update(Agent).values(reported_state="offline", status_ms=clock.ms))
    monitor.mark([], ["pi-1"])
    assert monitor.run_marked() == []
    assert monitor.run_full() == []
    # re-enabled and still silent: the normal rule again
    with transaction(db.factory) as s:
        s.execute(update(Agent).values(enabled=True))
    monitor.mark([], ["pi-1"])
    monitor.run_marked()
    assert _alerts(db)[-1] == ("agent_offline", "agent:pi-1", "open")


def test_an_online_agent_disabled_is_not_alerted_when_it_falls_silent(db) -> None:
    plant(db)
    clock = Clock()
    monitor = AlertMonitor(db.factory, Metrics(), clock=clock, agent_silent_s=60)
    with transaction(db.factory) as s:
        s.execute(update(Agent).values(enabled=False))
    monitor.mark([], ["pi-1"])
    assert monitor.run_marked() == []
    clock.ms += 123_000  # the report: "silent for 123 s … Check power and network"
    assert monitor.run_full() == []
    assert _alerts(db) == []


def test_webhook_failing_after_consecutive_failures_and_resolved_by_a_success(
    db,
) -> None:
    plant(db)
    monitor = AlertMonitor(db.factory, Metrics(), clock=Clock())

    def attempt(verdict: str) -> None:
        monitor.on_attempt(AttemptOutcome("o1", "S9", 1, verdict, 503, "HTTP 503", 3.0))  # type: ignore[arg-type]
        monitor.run_marked()

    for _ in range(WEBHOOK_FAILING_AFTER + 2):
        attempt("retry")
    assert _alerts(db) == [("webhook_failing", "supplier:S9", "open")]
    attempt("sent")
    assert _alerts(db) == [("webhook_failing", "supplier:S9", "resolved")]


def test_raised_alert_is_emailed_through_smtp(db) -> None:
    plant(db)
    sink = SmtpSink()
    sink.start()
    notifier = Notifier(
        NotifyConfig(
            smtp_host="127.0.0.1", smtp_port=sink.port, email_to=("line@plant.example",)
        )
    )
    notifier.start()
    try:
        monitor = AlertMonitor(db.factory, Metrics(), clock=Clock(), notifier=notifier)
        with transaction(db.factory) as s:
            s.execute(
                update(Bin)
                .where(Bin.id == "B2")
                .values(sensor_ok=False, sensor_fault="overload")
            )
        monitor.run_full()
        notifier.stop()
    finally:
        sink.stop()
    assert len(sink.messages) == 1
    msg = sink.messages[0]
    assert msg["To"] == "line@plant.example"
    assert (
        msg["Subject"]
        == "[jitstock] CRITICAL: The scale of bin B2 (SKU-1) reports a fault"
    )
    assert "scale_fault on bin:B2" in msg.get_payload()
    assert "overload" in msg.get_payload()


def test_an_alert_log_line_cannot_be_broken_by_device_text(
    db, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault stored before the protocol refused control characters still logs one line."""
    plant(db)
    monitor = AlertMonitor(db.factory, Metrics(), clock=Clock())
    forged = (
        "x\n2026-12-01 01:40:00,000 WARNING jitstock.server.api.auth: FORGED\x1b[0m"
    )
    with transaction(db.factory) as s:
        s.execute(
            update(Bin)
            .where(Bin.id == "B2")
            .values(sensor_ok=False, sensor_fault=forged)
        )
    with caplog.at_level(logging.INFO, logger="jitstock.server.alerts"):
        raised = monitor.run_full()
    assert [(c["kind"], c["entity"]) for c in raised] == [("scale_fault", "bin:B2")]
    lines = [r.getMessage() for r in caplog.records if "scale_fault" in r.getMessage()]
    assert len(lines) == 1
    assert "\n" not in lines[0]
    assert "\x1b" not in lines[0]
    assert "FORGED" in lines[0]  # still said, escaped


def test_kpis_count_stockout_minutes_and_consumption(db) -> None:
    plant(db)
    hour = 3_600_000
    with transaction(db.factory) as s:
        s.add_all(
            [
                BinEvent(
                    bin_id="B1",
                    ts_ms=NOW + hour,
                    kind="consumption",
                    delta=-20,
                    on_hand_after=0,
                ),
                BinEvent(
                    bin_id="B1",
                    ts_ms=NOW + 2 * hour,
                    kind="refill",
                    delta=30,
                    on_hand_after=30,
                ),
            ]
        )
    with transaction(db.factory, readonly=True) as s:
        k = compute(s, NOW, NOW + 4 * hour)
    total = next(a for a in k["areas"] if a["area"] == "all")
    assert total["stockout_events"] == 1
    assert total["stockout_minutes"] == 60.0
    assert total["consumed"] == 20
    assert k["pareto"][0]["sku"] == "SKU-1"
    assert k["pareto"][0]["class"] == "A"


def _stored_policy(bin_id: str, inputs: dict[str, Any], result: dict[str, Any]) -> Any:
    from jitstock.server.db.replenish_models import BinPolicy

    return BinPolicy(
        bin_id=bin_id,
        computed_ms=NOW - 1000,
        reason="schedule",
        demand_class="smooth",
        inputs=inputs,
        result=result,
    )


def test_policy_numbers_raise_safety_stock_and_anomaly_alerts(db) -> None:
    """The marks the rules read from a bin's stored policy (safety stock, forecast rate
    and its sigma), taken out of the JSON documents by the database on both backends: a
    bin under its safety stock and using far more than its forecast is alerted for both;
    a policy whose numbers are missing or not numbers (a string, null) marks
    nothing."""
    plant(db)  # B1, B2: 20 on hand each
    with transaction(db.factory) as s:
        s.add(
            _stored_policy(
                "B1",
                {"demand": {"rate_per_day": 10.0, "sigma_per_day": 1.0, "x": [1] * 50}},
                {"safety_stock": 25.5, "reorder_point": 30},
            )
        )
        s.add(
            _stored_policy(
                "B2",
                {"demand": {"rate_per_day": "ten", "sigma_per_day": None}},
                {"safety_stock": "25"},
            )
        )
        # B1 used 100 in the last day, against 10 ± max(4 × 1, 0.5 × 10) = 10 ± 5
        s.add(
            BinEvent(
                bin_id="B1",
                ts_ms=NOW - 3_600_000,
                kind="consumption",
                delta=-100,
                on_hand_after=20,
            )
        )
    with transaction(db.factory, readonly=True) as s:
        assert policy_marks(s, None) == {
            "B1": {"safety_stock": 25.5, "rate_per_day": 10.0, "sigma_per_day": 1.0},
            "B2": {},
        }
        assert policy_marks(s, ["B2"]) == {"B2": {}}
    monitor = AlertMonitor(db.factory, Metrics(), clock=Clock(), agent_silent_s=60)
    raised = {(c["kind"], c["entity"]) for c in monitor.run_full()}
    assert raised == {
        ("below_safety_stock", "bin:B1"),
        ("consumption_anomaly", "bin:B1"),
    }
    with transaction(db.factory, readonly=True) as s:
        below = s.scalars(select(Alert).where(Alert.kind == "below_safety_stock")).one()
        anomaly = s.scalars(
            select(Alert).where(Alert.kind == "consumption_anomaly")
        ).one()
    assert "below its safety stock of 26" in below.message
    assert anomaly.detail == {"usage": 100.0, "rate_per_day": 10.0, "band": 5.0}
