"""Alert notifications as a plant's integrator receives them: a real HTTP receiver that
checks the Standard Webhooks signature with its own HMAC code and every body against
the schema published in /openapi.json, and a real SMTP server.  The receiver down or
answering 503 must not lose a critical alert; a refusal drops only that notification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from jsonschema import Draft202012Validator
from prometheus_client import generate_latest
from sqlalchemy import update

from jitstock.server.alerts import AlertMonitor
from jitstock.server.api.alert_schemas import register_alert_webhooks
from jitstock.server.db.models import Bin
from jitstock.server.db.session import transaction
from jitstock.server.metrics import Metrics
from jitstock.server.notify import (
    EVENTS,
    Notifier,
    NotifyConfig,
    NotifySettingRefused,
    _Channel,
)
from tests.server.web.alert_plant import NOW, Clock, plant
from tests.server.web.smtp_sink import SmtpSink
from tests.waits import WAIT_S, wait_until

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BASE = "https://jit.plant.example"


def _my_signature_ok(headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check written from its spec, not with our library."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split()]
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(want, g) for g in given)


class Receiver:
    """An alert endpoint answering as scripted (then 200), keeping what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[int, dict[str, str], bytes]] = []
        self.answers: deque[int] = deque()
        self.cond = threading.Condition()
        me = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                # kept before the answer leaves: whoever got the answer finds it here
                with me.cond:
                    status = me.answers.popleft() if me.answers else 200
                    me.got.append(
                        (status, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    me.cond.notify_all()
                self.send_response(status)
                if status == 503:
                    self.send_header("retry-after", "0")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/jitstock"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def taken(self) -> list[dict[str, Any]]:
        with self.cond:
            return [json.loads(b) for status, _, b in self.got if status == 200]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _contract() -> dict[str, Draft202012Validator]:
    app = FastAPI()
    register_alert_webhooks(app)
    doc = app.openapi()
    out = {}
    for name, item in doc["webhooks"].items():
        schema = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        out[name] = Draft202012Validator(
            {**schema, "components": doc.get("components", {})}
        )
    return out


def _set(db: Any, bin_id: str, **values: Any) -> None:
    with transaction(db.factory) as s:
        s.execute(update(Bin).where(Bin.id == bin_id).values(**values))


def _notifier(metrics: Metrics, **kw: Any) -> Notifier:
    config = NotifyConfig(link_base=BASE, backoff_base_s=0.05, backoff_cap_s=0.2, **kw)
    return Notifier(config, registry=metrics.registry)


def test_a_503_does_not_lose_the_stockout_and_every_event_arrives_signed_in_order(
    db, receiver
) -> None:
    plant(db, sku_name="Bolt M8")
    metrics = Metrics()
    notifier = _notifier(metrics, webhook_url=receiver.url, webhook_secret=SECRET)
    notifier.start()
    monitor = AlertMonitor(db.factory, metrics, clock=Clock(), notifier=notifier)
    try:
        receiver.answers.extend([503, 503, 503])  # the pager's proxy is restarting
        _set(db, "B1", on_hand=0)
        monitor.run_full()
        _set(db, "B2", sensor_ok=False, sensor_fault="overload")
        monitor.run_full()
        _set(db, "B1", on_hand=30)
        monitor.mark(["B1"], [])
        monitor.run_marked()
        wait_until(lambda: len(receiver.taken()) >= 3, what="three alert events taken")
    finally:
        notifier.stop()

    bodies = receiver.taken()
    assert [(b["type"], b["alert"]["kind"]) for b in bodies] == [
        ("alert.raised", "stockout"),
        ("alert.raised", "scale_fault"),
        ("alert.resolved", "stockout"),
    ]
    stockout = bodies[0]
    assert stockout["id"] == f"alert_{stockout['alert']['id']}_raised"
    assert stockout["alert"]["headline"] == "Bin B1 (SKU-1 Bolt M8) is empty"
    assert stockout["alert"]["what_to_do"]
    assert stockout["alert"]["url"] == f"{BASE}/#/bin/B1"
    assert stockout["timestamp_ms"] == stockout["alert"]["opened_ms"]
    assert bodies[2]["timestamp_ms"] == bodies[2]["alert"]["resolved_ms"]

    # the three 503s were the stockout's first three tries: the same id and body each time
    with receiver.cond:
        tries = [
            (s, h, b) for s, h, b in receiver.got if h["webhook-id"] == stockout["id"]
        ]
    assert [s for s, _, _ in tries] == [503, 503, 503, 200]
    assert len({b for _, _, b in tries}) == 1
    # every request signed (checked with our own HMAC) and every body in the contract
    contract = _contract()
    with receiver.cond:
        for _, headers, body in receiver.got:
            assert _my_signature_ok(headers, body), headers
            payload = json.loads(body)
            assert headers["webhook-id"] == payload["id"]
            errors = [e.message for e in contract[payload["type"]].iter_errors(payload)]
            assert errors == [], errors
    text = generate_latest(metrics.registry).decode()
    assert (
        'jitstock_alert_notifications_total{channel="webhook",outcome="retried"} 3.0'
        in text
    )
    assert (
        'jitstock_alert_notifications_total{channel="webhook",outcome="sent"} 3.0'
        in text
    )


def test_a_refusal_drops_only_that_notification(db, receiver) -> None:
    plant(db, sku_name="Bolt M8")
    metrics = Metrics()
    notifier = _notifier(metrics, webhook_url=receiver.url)
    notifier.start()
    monitor = AlertMonitor(db.factory, metrics, clock=Clock(), notifier=notifier)
    try:
        receiver.answers.append(410)
        _set(db, "B1", on_hand=0)
        monitor.run_full()
        _set(db, "B2", on_hand=0)
        monitor.run_full()
        wait_until(lambda: len(receiver.taken()) >= 1, what="the second alert")
    finally:
        notifier.stop()
    assert [b["alert"]["bin_id"] for b in receiver.taken()] == ["B2"]
    with receiver.cond:
        assert [s for s, _, _ in receiver.got] == [410, 200]
        # unsigned without a secret, but still identified
        assert all("webhook-signature" not in h for _, h, _ in receiver.got)
        assert all(h["webhook-id"].startswith("alert_") for _, h, _ in receiver.got)
    text = generate_latest(metrics.registry).decode()
    assert (
        'jitstock_alert_notifications_total{channel="webhook",outcome="dropped"} 1.0'
        in text
    )


def test_a_receiver_that_stays_down_does_not_hold_up_a_stop(db) -> None:
    plant(db, sku_name="Bolt M8")
    metrics = Metrics()
    # nothing listens there: every try is refused, and is retried
    notifier = _notifier(metrics, webhook_url="http://127.0.0.1:9/alerts")
    notifier.start()
    monitor = AlertMonitor(db.factory, metrics, clock=Clock(), notifier=notifier)
    _set(db, "B1", on_hand=0)
    monitor.run_full()
    wait_until(
        lambda: 'outcome="retried"} 2.0' in generate_latest(metrics.registry).decode(),
        what="two retries",
    )
    stop = threading.Thread(target=notifier.stop)
    stop.start()
    stop.join(WAIT_S)
    assert not stop.is_alive(), "stop() waited for a receiver that is down"


def test_email_reads_as_a_sentence_with_the_next_step_and_a_link(db) -> None:
    # a part name with a line break must not break (or inject into) the mail's header
    plant(db, sku_name="Bolt M8\r\nBcc: all@plant.example")
    sink = SmtpSink()
    sink.start()
    metrics = Metrics()
    notifier = _notifier(
        metrics,
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        email_to=("line3@plant.example",),
    )
    notifier.start()
    try:
        monitor = AlertMonitor(db.factory, metrics, clock=Clock(), notifier=notifier)
        _set(db, "B2", sensor_ok=False, sensor_fault="overload")
        monitor.run_full()
        wait_until(lambda: len(sink.messages) >= 1, what="the alert e-mail")
    finally:
        notifier.stop()
        sink.stop()
    msg = sink.messages[0]
    assert msg["To"] == "line3@plant.example"
    assert msg["Bcc"] is None
    # one header (a long one is folded, which a reader unfolds), no Bcc smuggled in
    assert " ".join(msg["Subject"].split()) == (
        "[jitstock] CRITICAL: The scale of bin B2 (SKU-1 Bolt M8 Bcc: all@plant.example)"
        " reports a fault"
    )
    text = msg.get_payload(decode=True).decode()
    assert "What to do: Check the scale under bin B2" in text
    assert f"Open: {BASE}/#/bin/B2" in text
    assert "Opened: 2027-01-15T08:00:00Z" in text
    assert "overload" in text


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"webhook_url": "ftp://pager.example/alerts"}, "JITSTOCK_ALERT_WEBHOOK_URL"),
        ({"webhook_url": "pager.example/alerts"}, "JITSTOCK_ALERT_WEBHOOK_URL"),
        ({"webhook_url": "http:///alerts"}, "JITSTOCK_ALERT_WEBHOOK_URL"),
        (
            {"webhook_url": "https://p.example", "webhook_secret": "changeme"},
            "JITSTOCK_ALERT_WEBHOOK_SECRET",
        ),
        (
            {"webhook_url": "https://p.example", "webhook_secret": "whsec_%%%"},
            "JITSTOCK_ALERT_WEBHOOK_SECRET",
        ),
        (
            {"smtp_host": "mail", "email_to": ("line3 at plant",)},
            "JITSTOCK_ALERT_EMAIL_TO",
        ),
        (
            {"smtp_host": "mail", "email_to": ("a@b.example\r\nBcc: x@y",)},
            "JITSTOCK_ALERT_EMAIL_TO",
        ),
    ],
)
def test_settings_no_notification_could_use_are_refused_by_name(
    config: dict[str, Any], names: str
) -> None:
    with pytest.raises(NotifySettingRefused, match=names):
        Notifier(NotifyConfig(**config))


# -- the queue as a state machine: random interleavings of alerts, answers and time --


class ChannelMachine(RuleBasedStateMachine):
    """Drives one webhook channel (no thread: ``step()`` is the thread's one try) against a
    real receiver, and checks it after every step against a model kept here: the queue
    in order, each event delivered at most once and only when answered 2xx, a refusal or
    a retry past the horizon dropping exactly the head, and the outcome counters."""

    RETRY_FOR_S = 100.0

    def __init__(self) -> None:
        super().__init__()
        self.receiver = Receiver()
        self.metrics = Metrics()
        self.clock = 0.0
        config = NotifyConfig(
            webhook_url=self.receiver.url,
            webhook_secret=SECRET,
            link_base=BASE,
            retry_for_s=self.RETRY_FOR_S,
        )
        self.notifier = Notifier(config, registry=self.metrics.registry)
        self.channel = _Channel(
            "webhook",
            self.notifier._post,  # noqa: SLF001 - the real POST, driven step by step
            config,
            self.notifier.outcomes,
            now=lambda: self.clock,
        )
        self.next_id = 1
        # the model
        self.pending: list[tuple[int, str, float]] = []  # (alert id, event, queued at)
        self.answers: list[int] = []
        self.delivered: list[str] = []
        self.counts = {"sent": 0, "retried": 0, "dropped": 0}

    def teardown(self) -> None:
        self.receiver.stop()

    @rule(event=st.sampled_from(EVENTS))
    def alert_event(self, event: str) -> None:
        alert_id = self.next_id
        self.next_id += 1
        alert = {
            "id": alert_id,
            "kind": "stockout",
            "entity": f"bin:B{alert_id}",
            "state": "open",
            "severity": "critical",
            "message": "empty",
            "headline": "Bin is empty",
            "what_to_do": "refill",
            "bin_id": f"B{alert_id}",
            "opened_ms": NOW,
            "acked_ms": NOW + 1 if event != "raised" else None,
            "resolved_ms": NOW + 2 if event == "resolved" else None,
        }
        self.channel.put(event, alert)
        self.pending.append((alert_id, event, self.clock))

    @rule(status=st.sampled_from([200, 503, 429, 410, 400]))
    def receiver_will_answer(self, status: int) -> None:
        with self.receiver.cond:
            self.receiver.answers.append(status)
        self.answers.append(status)

    @rule(seconds=st.sampled_from([1.0, 30.0, 99.0, 150.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock += seconds

    @rule()
    def one_try(self) -> None:
        delay = self.channel.step()
        if not self.pending:
            assert delay is None
            return
        alert_id, event, queued = self.pending[0]
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.pending.pop(0)
            self.delivered.append(f"alert_{alert_id}_{event}")
            self.counts["sent"] += 1
            assert delay is None
        elif status in (503, 429) and self.clock - queued < self.RETRY_FOR_S:
            self.counts["retried"] += 1
            assert delay is not None
            assert 0 <= delay <= 600
        else:  # refused, or retried past the horizon
            self.pending.pop(0)
            self.counts["dropped"] += 1
            assert delay is None

    @invariant()
    def matches_the_model(self) -> None:
        assert self.channel.pending() == [(i, e) for i, e, _ in self.pending]
        assert [b["id"] for b in self.receiver.taken()] == self.delivered
        text = generate_latest(self.metrics.registry).decode()
        for outcome, n in self.counts.items():
            line = (
                "jitstock_alert_notifications_total"
                f'{{channel="webhook",outcome="{outcome}"}} {float(n)}'
            )
            assert (line in text) if n else (f'outcome="{outcome}"' not in text), (
                outcome,
                n,
            )
        with self.receiver.cond:
            for _, headers, body in self.receiver.got:
                assert _my_signature_ok(headers, body)


TestChannelMachine = ChannelMachine.TestCase
TestChannelMachine.settings = settings(
    max_examples=30, stateful_step_count=25, deadline=None
)
