"""Alerts: raised and resolved from the state DB, de-duplicated, counted, notified.

:class:`AlertMonitor` is the single writer of the ``alerts`` table in a server
process.  Ingest's ``on_flush`` only *marks* the bins and agents a flush touched
(cheap, on the ingest thread); the monitor's thread evaluates
:mod:`jitstock.server.alert_rules` for them at once, and for everything every
``check_s`` (heartbeats, order deadlines, consumption anomalies, H8's supply
alerts).  Hooks of other parts (dispatcher, escalator) :meth:`report` alerts
that have no condition to re-check; those stay open until acknowledged, except
``webhook_failing``, which a successful delivery to that supplier resolves.

An alert is one row per (kind, entity) while unresolved (a partial unique
index backs this across processes); its state goes open → acknowledged →
resolved, or open → resolved when the condition clears.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jitstock.clock import REAL_CLOCK, Clock
from jitstock.server import alert_rules as rules
from jitstock.server.agents import AGENT_SILENT_S
from jitstock.server.alert_rules import AlertSpec, Verdict
from jitstock.server.alert_text import describe
from jitstock.server.db.alert_models import Alert
from jitstock.server.db.session import SessionFactory, transaction
from jitstock.server.metrics import Metrics
from jitstock.server.notify import Notifier

log = logging.getLogger(__name__)

# Full re-evaluation period: heartbeats, order deadlines and anomalies have no flush to react to.
ALERT_CHECK_S = 15.0
# Suppliers without their own ack deadline get this long to acknowledge an order.
ORDER_ACK_DEADLINE_S = 900.0
# Consecutive failed webhook attempts to one supplier before "webhook failing" is raised.
WEBHOOK_FAILING_AFTER = 3
# Flush-driven checks are batched this long: many flushes a second become one DB pass
# (four a second at most: an alert a person reads needs no more; 0.05 s cost a fifth
# more server CPU per reading on issue 12's load, docs/bench/ingest-resend-alerts-*.json)
MARK_COALESCE_S = 0.25
# Alerts that no rule re-checks (reported by hooks); resolved by acknowledgement.
REPORTED_KINDS = ("order_failed", "order_escalated", "webhook_failing")

# Supply-alert rows whose incident also comes through a hook: imported once, not twice.
HOOKED_SUPPLY_KINDS = frozenset({"escalation"})
# Supply-alert kinds that are critical (a bin may run out because of them).
CRITICAL_SUPPLY_KINDS = frozenset(
    {"order_cancelled_by_supplier", "receiving_putaway_not_seen", "scan_not_allowed"}
)

ChangeHook = Callable[[list[dict[str, Any]]], None]


def alert_dict(a: Alert) -> dict[str, Any]:
    """An alert row as plain JSON-able data."""
    return {
        "id": a.id,
        "kind": a.kind,
        "entity": a.entity,
        "state": a.state,
        "severity": a.severity,
        "message": a.message,
        "site_id": a.site_id,
        "bin_id": a.bin_id,
        "agent_id": a.agent_id,
        "order_id": a.order_id,
        "supplier_id": a.supplier_id,
        "opened_ms": a.opened_ms,
        "acked_ms": a.acked_ms,
        "acked_by": a.acked_by,
        "resolved_ms": a.resolved_ms,
        "detail": a.detail,
    }


class AlertMonitor:
    """Evaluates alert rules on marks and on a period; the one writer of alerts."""

    def __init__(
        self,
        session_factory: SessionFactory,
        metrics: Metrics,
        *,
        clock: Clock = REAL_CLOCK,
        notifier: Notifier | None = None,
        check_s: float = ALERT_CHECK_S,
        agent_silent_s: float = AGENT_SILENT_S,
        ack_deadline_s: float = ORDER_ACK_DEADLINE_S,
        on_change: ChangeHook | None = None,
    ) -> None:
        self._factory = session_factory
        self._clock = clock
        self._notifier = notifier
        self.check_s = check_s
        self.agent_silent_ms = int(agent_silent_s * 1000)
        self.ack_deadline_s = ack_deadline_s
        self.on_change: list[ChangeHook] = [on_change] if on_change else []
        self._lock = threading.Lock()
        self._bins: set[str] = set()
        # bins with an open alert: their level changes must be re-checked (to resolve)
        self.alerting_bins: frozenset[str] = frozenset()
        self._agents: set[str] = set()
        self._reports: list[tuple[str, AlertSpec | None, str | None]] = []
        self._webhook_failures: dict[str, int] = {}
        self._supply_watermark: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        r = metrics.registry
        self.open_gauge = Gauge(
            "jitstock_alerts_open", "Unresolved alerts by kind", ["kind"], registry=r
        )
        self.raised = Counter(
            "jitstock_alerts_raised", "Alerts raised by kind", ["kind"], registry=r
        )
        self.resolved = Counter(
            "jitstock_alerts_resolved", "Alerts resolved by kind", ["kind"], registry=r
        )

    # -- feeding (any thread; cheap) --

    def mark(self, bins: list[str], agents: list[str]) -> None:
        """Re-check these bins and agents soon (called from ingest's on_flush)."""
        if not bins and not agents:
            return
        with self._lock:
            self._bins.update(bins)
            self._agents.update(agents)
        self._wake.set()

    def report(self, spec: AlertSpec) -> None:
        """Raise an alert no rule re-checks (dispatcher, escalator hooks)."""
        with self._lock:
            self._reports.append(("raise", spec, None))
        self._wake.set()

    def hook(self, kind: str, detail: dict[str, Any]) -> None:
        """The dispatcher's / escalator's ``alert(kind, detail)`` hook."""
        order = str(detail.get("order") or "")
        supplier = detail.get("supplier")
        if kind == "order_failed":
            message = f"order {order[:8]} to {supplier} failed after {detail.get('attempts')} attempts: {detail.get('error')}"
        elif kind == "order_escalated":
            message = f"order {order[:8]} to {supplier} escalated ({detail.get('reason')}: {detail.get('action')})"
        else:
            message = f"{kind}: {detail}"
        self.report(
            AlertSpec(
                kind,
                f"order:{order}",
                message,
                "critical",
                bin_id=detail.get("bin"),
                order_id=order or None,
                supplier_id=supplier,
                detail={k: v for k, v in detail.items() if v is not None},
            )
        )

    def on_attempt(self, outcome: Any) -> None:
        """The dispatcher's on_attempt hook: consecutive failures per supplier raise webhook_failing."""
        supplier = str(outcome.supplier_id)
        with self._lock:
            if outcome.verdict == "sent":
                had = self._webhook_failures.pop(supplier, 0)
                if had >= WEBHOOK_FAILING_AFTER:
                    self._reports.append(
                        ("resolve", None, f"webhook_failing|supplier:{supplier}")
                    )
            else:
                n = self._webhook_failures[supplier] = (
                    self._webhook_failures.get(supplier, 0) + 1
                )
                if n == WEBHOOK_FAILING_AFTER:
                    self._reports.append(
                        (
                            "raise",
                            AlertSpec(
                                "webhook_failing",
                                f"supplier:{supplier}",
                                f"webhook to supplier {supplier} failing: {n} attempts in a row ({outcome.error})",
                                "critical",
                                supplier_id=supplier,
                                detail={
                                    "status_code": outcome.status_code,
                                    "error": outcome.error,
                                },
                            ),
                            None,
                        )
                    )
        self._wake.set()

    # -- worker --

    def start(self) -> None:
        """Start the checker thread (one full pass first)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="jitstock-alerts", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the checker thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        next_full = 0.0
        while not self._stop.is_set():
            now = self._clock.monotonic()
            try:
                if now >= next_full:
                    next_full = now + self.check_s
                    self.run_full()
                self.run_marked()
            except Exception:
                log.exception("alert check failed")
            self._wake.wait(
                max(0.0, min(self.check_s, next_full - self._clock.monotonic()))
            )
            self._wake.clear()
            self._stop.wait(MARK_COALESCE_S)

    def run_marked(self) -> list[dict[str, Any]]:
        """Check what flushes marked and apply reported alerts; returns the changes."""
        with self._lock:
            bins, agents, reports = list(self._bins), list(self._agents), self._reports
            self._bins, self._agents, self._reports = set(), set(), []
        if not bins and not agents and not reports:
            return []
        with transaction(self._factory) as s:
            now = self._clock.time_ms()
            changes: list[tuple[str, Alert]] = []
            if bins:
                changes += self._sync(s, rules.bin_rules(s, bins), now)
            if agents:
                changes += self._sync(
                    s, rules.agent_rules(s, agents, now, self.agent_silent_ms), now
                )
            for action, spec, key in reports:
                if action == "raise" and spec is not None:
                    row = self._open(s, spec, now)
                    if row is not None:
                        changes.append(("raised", row))
                elif key is not None:
                    kind, entity = key.split("|", 1)
                    changes += self._resolve(s, kind, [entity], now)
            return self._publish(s, changes)

    def run_full(self) -> list[dict[str, Any]]:
        """Evaluate every rule over everything; returns the changes."""
        now = self._clock.time_ms()
        # Evaluate the rules read-only: on SQLite a writing transaction would hold the one
        # write lock (ingest and the dispatcher wait for it) for the whole evaluation.
        with transaction(self._factory, readonly=True) as s:
            verdicts = [
                rules.bin_rules(s, None),
                rules.agent_rules(s, None, now, self.agent_silent_ms),
                rules.order_rules(s, now, self.ack_deadline_s),
                rules.anomaly_rules(s, now),
                rules.reorder_rules(s, now),
            ]
        with transaction(self._factory) as s:
            changes: list[tuple[str, Alert]] = []
            for verdict in verdicts:
                changes += self._sync(s, verdict, now)
            changes += self._import_supply_alerts(s, now)
            changes += self._resolve_settled(s, now)
            self._refresh_alerting_bins(s)
            out = self._publish(s, changes)
            self._update_gauge(s)
            return out

    # -- the table --

    def _sync(
        self, s: Session, verdict: Verdict, now_ms: int
    ) -> list[tuple[str, Alert]]:
        holding = {(h.kind, h.entity): h for h in verdict.holding}
        stmt = select(Alert).where(
            Alert.kind.in_(verdict.kinds), Alert.resolved_ms.is_(None)
        )
        if verdict.scope is not None:
            if not verdict.scope:
                return []
            stmt = stmt.where(Alert.entity.in_(verdict.scope))
        changes: list[tuple[str, Alert]] = []
        open_keys = set()
        for row in s.scalars(stmt):
            key = (row.kind, row.entity)
            if key in holding:
                open_keys.add(key)
            else:
                self._close(row, now_ms)
                changes.append(("resolved", row))
        for key, spec in holding.items():
            if key not in open_keys:
                new = self._open(s, spec, now_ms)
                if new is not None:
                    changes.append(("raised", new))
        return changes

    def _open(self, s: Session, spec: AlertSpec, now_ms: int) -> Alert | None:
        existing = s.scalars(
            select(Alert).where(
                Alert.kind == spec.kind,
                Alert.entity == spec.entity,
                Alert.resolved_ms.is_(None),
            )
        ).first()
        if existing is not None:
            return None  # de-duplicated: the same condition is already open
        fields = asdict(spec)
        row = Alert(state="open", opened_ms=now_ms, **fields)
        try:
            with s.begin_nested():
                s.add(row)
        except IntegrityError:
            return None  # another server process raised it first
        self.raised.labels(spec.kind).inc()
        # on the dashboard and in /metrics already; the log line is for the record
        # %r: the message may quote device text (a fault stored before the protocol
        # refused control characters); one alert is one log line
        log.info("alert %s %s: %r", spec.kind, spec.entity, spec.message)
        return row

    def _close(self, row: Alert, now_ms: int) -> None:
        row.state = "resolved"
        row.resolved_ms = now_ms
        self.resolved.labels(row.kind).inc()
        log.info("alert resolved %s %s", row.kind, row.entity)

    def _resolve(
        self, s: Session, kind: str, entities: list[str], now_ms: int
    ) -> list[tuple[str, Alert]]:
        rows = s.scalars(
            select(Alert).where(
                Alert.kind == kind,
                Alert.entity.in_(entities),
                Alert.resolved_ms.is_(None),
            )
        ).all()
        for row in rows:
            self._close(row, now_ms)
        return [("resolved", r) for r in rows]

    def _resolve_settled(self, s: Session, now_ms: int) -> list[tuple[str, Alert]]:
        """Reported alerts about an order resolve when what they are about is over."""
        rows = s.scalars(
            select(Alert).where(
                Alert.resolved_ms.is_(None),
                Alert.order_id.is_not(None),
                Alert.kind.not_in(rules.ORDER_KINDS),
            )
        ).all()
        out: list[tuple[str, Alert]] = []
        for row in rows:
            if rules.order_incident_over(s, row.kind, row.order_id, row.detail):
                self._close(row, now_ms)
                out.append(("resolved", row))
        return out

    def _import_supply_alerts(self, s: Session, now_ms: int) -> list[tuple[str, Alert]]:
        """Issue 5's supply_alerts rows (unexplained stock increase, escalation, ...) become alerts."""
        try:
            from jitstock.server.db.supplier_models import SupplyAlert
        except ImportError:
            return []
        if self._supply_watermark is None:
            # only alerts raised from now on: a restart must not re-raise history
            self._supply_watermark = int(
                s.scalar(select(func.max(SupplyAlert.id))) or 0
            )
            return []
        changes: list[tuple[str, Alert]] = []
        for a in s.scalars(
            select(SupplyAlert)
            .where(SupplyAlert.id > self._supply_watermark)
            .order_by(SupplyAlert.id)
        ):
            self._supply_watermark = a.id
            if a.kind in HOOKED_SUPPLY_KINDS:
                continue  # the same incident arrives through a hook (one alert, not two)
            entity = (
                f"order:{a.order_id}"
                if a.order_id
                else f"bin:{a.bin_id}"
                if a.bin_id
                else f"supply:{a.id}"
            )
            spec = AlertSpec(
                a.kind,
                entity,
                rules.supply_message(a.kind, a.bin_id, a.order_id, a.detail),
                "critical" if a.kind in CRITICAL_SUPPLY_KINDS else "warning",
                bin_id=a.bin_id,
                order_id=a.order_id,
                supplier_id=a.supplier_id,
                detail=a.detail,
            )
            row = self._open(s, spec, now_ms)
            if row is not None:
                changes.append(("raised", row))
        return changes

    def _publish(
        self, s: Session, changes: list[tuple[str, Alert]]
    ) -> list[dict[str, Any]]:
        if not changes:
            return []
        s.flush()
        self._refresh_alerting_bins(s)
        out = [{"event": event, **alert_dict(row)} for event, row in changes]
        self._update_gauge(s)
        # Told only once the change is committed: a rolled-back raise is never notified,
        # and a page told "alerts changed" reads them at once (told before the commit,
        # it read the old list and kept it until the next change).
        n = self._notifier
        notify = n.notify if n is not None and n.config.enabled else None
        described = describe(s, out) if notify is not None else []  # as the API shows
        hooks = list(self.on_change)

        def _tell(_session: Session) -> None:
            if notify is not None:
                for item in described:
                    notify(item["event"], item)
            for hook in hooks:
                try:
                    hook(out)
                except Exception:
                    log.exception("alert change hook failed")

        if described or hooks:
            sa_event.listen(s, "after_commit", _tell, once=True)
        return out

    def _refresh_alerting_bins(self, s: Session) -> None:
        self.alerting_bins = frozenset(
            s.scalars(
                select(Alert.bin_id).where(
                    Alert.resolved_ms.is_(None), Alert.bin_id.is_not(None)
                )
            )
        )

    def _update_gauge(self, s: Session) -> None:
        counts = dict(
            s.execute(
                select(Alert.kind, func.count())
                .where(Alert.resolved_ms.is_(None))
                .group_by(Alert.kind)
            ).all()
        )
        for kind in (
            *rules.BIN_KINDS,
            *rules.AGENT_KINDS,
            *rules.ORDER_KINDS,
            *rules.ANOMALY_KINDS,
            *rules.REORDER_KINDS,
            *REPORTED_KINDS,
            *counts,
        ):
            self.open_gauge.labels(kind).set(counts.get(kind, 0))

    # -- API side --

    def acknowledge(
        self, alert_id: int, actor: str, *, may_ack_critical: bool = True
    ) -> dict[str, Any] | None:
        """Mark an alert acknowledged (reported kinds are resolved by it); None if unknown.

        PermissionError when the alert is critical and the caller may not (viewers).
        """
        with transaction(self._factory) as s:
            row = s.get(Alert, alert_id)
            if row is None:
                return None
            if row.severity == "critical" and not may_ack_critical:
                raise PermissionError(
                    f"alert {alert_id} is critical: acknowledging it needs the manager role"
                )
            now = self._clock.time_ms()
            if row.resolved_ms is None and row.state == "open":
                row.state = "acknowledged"
                row.acked_ms = now
                row.acked_by = actor
                if row.kind not in (
                    *rules.BIN_KINDS,
                    *rules.AGENT_KINDS,
                    *rules.ORDER_KINDS,
                    *rules.ANOMALY_KINDS,
                    *rules.REORDER_KINDS,
                ):
                    # nothing re-checks a reported alert: acknowledging it is what closes it
                    self._close(row, now)
                changes = self._publish(s, [("acknowledged", row)])
                return changes[0]
            return alert_dict(row)
