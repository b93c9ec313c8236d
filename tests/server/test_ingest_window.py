"""The flush window waits only for messages that change nothing (issue 12): a batch whose
grams differ from its topic's last one ends the wait, so a crossing is applied at once;
agents re-sending unchanged readings still share flushes.

``Ingest._urgent`` is checked against an independent model (a dict of the last grams per
topic) with hostile payloads mixed in; ``_drain`` on a real queue with a window far longer
than any test deadline (a drain that waited for it would fail the deadline).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from jitstock import protocol as p
from jitstock.server import ingest as ingest_mod
from jitstock.server.mqtt import Incoming
from tests.factories import Plant
from tests.waits import WAIT_S

TOPICS = [p.agent_topic("plant1", a, "readings") for a in ("pi-1", "pi-2", "pi-3")]
HOSTILE = [
    b"",
    b"[]",
    b"null",
    b"NaN",
    b'{"readings": 5}',
    b'{"readings": "abc"}',
    b'{"readings": {"grams": 1}}',
    b'{"readings": [1, 2]}',
    b'{"readings": [{"bin": "B1"}]}',
    b'{"readings": [{"grams": 1e400}]}',
    b"{" * 10_000,
    b"\xff\xfe",
]


def payload(grams: list[float | int], stable: list[bool | None]) -> bytes:
    readings = []
    for i, (g, s) in enumerate(zip(grams, stable, strict=True)):
        r: dict[str, object] = {"bin": f"B{i}", "ts_ms": 1, "grams": g}
        if s is not None:
            r["stable"] = s
        readings.append(r)
    # json, not orjson: 2**64 must be written (orjson refuses it when dumping)
    return json.dumps({"agent": "pi-1", "seq": 1, "readings": readings}).encode()


def incoming(topic: str, body: bytes, *, replay: bool = False) -> Incoming:
    return Incoming(topic, body, 1, 1, 0, 0.0, replay=replay)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    yield plant
    plant.close()


GRAMS = st.lists(
    st.sampled_from([0, 1, 510.0, 2**63, 2**64, 5e-324, -0.0, 1e308]),
    min_size=0,
    max_size=4,
)


@settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
class UrgentMachine(RuleBasedStateMachine):
    """Ingest._urgent against a model: urgent unless a readings batch repeats the grams
    and stable flags of its topic's last parsable batch."""

    plant: Plant

    @initialize()
    def start(self) -> None:
        self.model: dict[str, tuple[list[object], list[object]]] = {}
        plant = self.plant
        # a fresh ingest per example: its memory of last grams starts empty, as the model
        self.ingest = ingest_mod.Ingest(
            plant.tsdb, plant.state, plant.registry, plant.metrics
        )

    @rule(
        topic=st.sampled_from(TOPICS),
        grams=GRAMS,
        data=st.data(),
    )
    def batch(self, topic: str, grams: list[float | int], data: st.DataObject) -> None:
        stable = data.draw(
            st.lists(
                st.sampled_from([True, False, None]),
                min_size=len(grams),
                max_size=len(grams),
            )
        )
        body = payload(grams, stable)
        try:
            # the model reads the grams back as the server's JSON parser gives them
            doc = orjson.loads(body)["readings"]
        except orjson.JSONDecodeError:
            # 2**64: beyond what the parser takes; the flush rejects it, the window ends
            assert self.ingest._urgent(incoming(topic, body)) is True
            return
        now = ([r["grams"] for r in doc], [r.get("stable") for r in doc])
        expect = self.model.get(topic) != now
        self.model[topic] = now
        assert self.ingest._urgent(incoming(topic, body)) is expect

    @rule(topic=st.sampled_from(TOPICS), body=st.sampled_from(HOSTILE))
    def hostile(self, topic: str, body: bytes) -> None:
        # cannot be parsed for grams: urgent, and the topic's memory stays
        assert self.ingest._urgent(incoming(topic, body)) is True

    @rule(topic=st.sampled_from(TOPICS))
    def replayed(self, topic: str) -> None:
        # an admin's replay of a dead letter is applied at once, whatever it holds
        body = payload([1], [True])
        assert self.ingest._urgent(incoming(topic, body, replay=True)) is True

    @rule(
        kind=st.sampled_from(["status", "scans"]),
        agent=st.sampled_from(["pi-1", "pi-2"]),
    )
    def other_kind(self, kind: str, agent: str) -> None:
        body = payload([1], [True])
        topic = p.agent_topic("plant1", agent, kind)
        assert self.ingest._urgent(incoming(topic, body)) is True


def test_urgent_follows_the_model(tmp_path: Path) -> None:
    plant = Plant(tmp_path)
    try:
        UrgentMachine.plant = plant
        UrgentMachine.TestCase().runTest()
    finally:
        plant.close()


def test_urgent_memory_is_bounded(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_mod, "LAST_GRAMS_KEPT", 3)
    body = payload([1.0], [True])
    topics = [p.agent_topic("plant1", f"pi-{i}", "readings") for i in range(10)]
    for t in topics:
        assert plant.ingest._urgent(incoming(t, body)) is True
        assert len(plant.ingest._last_grams) <= 3
    # a topic still remembered repeats: not urgent; one forgotten is urgent again
    assert plant.ingest._urgent(incoming(topics[-1], body)) is False
    assert plant.ingest._urgent(incoming(topics[0], body)) is True


def drain_in_thread(
    plant: Plant, inbox: queue.Queue[Incoming]
) -> tuple[threading.Thread, list[list[Incoming]]]:
    out: list[list[Incoming]] = []
    t = threading.Thread(target=lambda: out.append(plant.ingest._drain(inbox)))
    t.start()
    return t, out


def test_a_changed_batch_ends_the_window(plant: Plant) -> None:
    plant.ingest.flush_max_s = 3600.0  # a drain that waited for the window would hang
    same = payload([510.0, 520.0], [True, True])
    moved = payload([510.0, 470.0], [True, True])
    assert plant.ingest._urgent(incoming(TOPICS[0], same))  # first batch of the topic
    assert plant.ingest._urgent(incoming(TOPICS[1], same))
    inbox: queue.Queue[Incoming] = queue.Queue()
    u1, u2 = incoming(TOPICS[0], same), incoming(TOPICS[1], same)
    for m in (u1, u2):
        inbox.put(m)
    t, out = drain_in_thread(plant, inbox)
    # only unchanged re-sends so far: the window waits for more
    t.join(timeout=0.5)
    assert t.is_alive()
    crossing = incoming(TOPICS[0], moved)
    inbox.put(crossing)
    t.join(timeout=WAIT_S)
    assert not t.is_alive(), "the window kept waiting after a changed batch"
    assert out == [[u1, u2, crossing]]


def test_a_changed_first_message_takes_only_what_is_queued(plant: Plant) -> None:
    plant.ingest.flush_max_s = 3600.0
    inbox: queue.Queue[Incoming] = queue.Queue()
    first = incoming(TOPICS[0], payload([510.0], [True]))  # nothing known: urgent
    later = incoming(TOPICS[1], payload([510.0], [True]))
    inbox.put(first)
    inbox.put(later)
    t, out = drain_in_thread(plant, inbox)
    t.join(timeout=WAIT_S)
    assert not t.is_alive()
    assert out == [[first, later]]  # what was queued comes along, nothing is awaited


def test_unchanged_resends_share_a_flush_up_to_the_window(plant: Plant) -> None:
    plant.ingest.flush_max_s = 0.2
    body = payload([510.0], [True])
    plant.ingest._urgent(incoming(TOPICS[0], body))
    inbox: queue.Queue[Incoming] = queue.Queue()
    msgs = [incoming(TOPICS[0], body) for _ in range(5)]
    for m in msgs:
        inbox.put(m)
    t, out = drain_in_thread(plant, inbox)
    t.join(timeout=WAIT_S)
    assert not t.is_alive()
    assert out == [msgs]
    plant.ingest.flush_max_msgs = 2
    for m in msgs:
        inbox.put(m)
    assert plant.ingest._drain(inbox) == msgs[:2]  # the size bound still holds
