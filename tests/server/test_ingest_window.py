"""The flush window waits only for messages that cannot fire a reorder (issue 12): a
reading that takes a bin's count to or below its reorder point ends the wait, so a
crossing is applied at once; re-sends, picks above the reorder point and bins sitting
below it share flushes up to the window.

``Ingest._urgent`` is checked against an independent model (counts from grams by the
calibration, and the set of bins last seen at or below their reorder point) with hostile
payloads mixed in; ``_drain`` on a real queue with a window far longer than any test
deadline (a drain that waited for it would fail the deadline).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from jitstock import protocol as p
from jitstock.server import ingest as ingest_mod
from jitstock.server.mqtt import Incoming
from jitstock.server.seed import BinSeed
from tests.factories import NOW_MS, TARE_G, UNIT_G, Plant
from tests.server.mqtt_support import (
    metric,
    now_ms,
    publisher,
    server,
    wait_count,
)
from tests.server.mqtt_support import on_hand as api_on_hand
from tests.server.server_support import seed
from tests.waits import WAIT_S

ROP = 20  # tests.factories.plant_bins' reorder point
BINS = ("B1", "B2", "B3")  # configured; "ZZ" is not
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
    b'{"readings": [{"bin": ["B1"], "grams": 1}]}',
    b'{"readings": [{"bin": "B1", "grams": "1"}]}',
    b'{"readings": [{"grams": 1e400}]}',
    b"{" * 10_000,
    b"\xff\xfe",
]


def grams_of(count: int, offset: float = 0.0) -> float:
    """What a scale holding ``count`` parts shows, ``offset`` of a part away."""
    return TARE_G + (count + offset) * UNIT_G


def payload(readings: list[tuple[str, float | int]]) -> bytes:
    body = {
        "agent": "pi-1",
        "seq": 1,
        "readings": [{"bin": b, "ts_ms": 1, "grams": g} for b, g in readings],
    }
    # json, not orjson: 2**64 must be written (orjson refuses it when dumping)
    return json.dumps(body).encode()


def incoming(topic: str, body: bytes, *, replay: bool = False) -> Incoming:
    return Incoming(topic, body, 1, 1, 0, 0.0, replay=replay)


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    plant = Plant(tmp_path)
    yield plant
    plant.close()


READING = st.tuples(
    st.sampled_from([*BINS, "ZZ"]),
    st.one_of(
        # whole counts around the reorder point, a scale a little off (never half a part)
        st.builds(
            grams_of,
            st.sampled_from([0, 5, 19, 20, 21, 22, 200]),
            st.sampled_from([-0.4, 0.0, 0.4]),
        ),
        st.sampled_from([0, 2**63, 5e-324, -0.0, 1e308, -1e308]),
    ),
)


@settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
class UrgentMachine(RuleBasedStateMachine):
    """Ingest._urgent against a model: urgent when a reading takes a configured bin to or
    below its reorder point while the bin was, as last seen, above it."""

    plant: Plant

    @initialize()
    def start(self) -> None:
        self.below: set[str] = set()
        plant = self.plant
        # a fresh ingest per example: it has seen no bin low yet, as the model
        self.ingest = ingest_mod.Ingest(
            plant.tsdb, plant.state, plant.registry, plant.metrics
        )

    @rule(topic=st.sampled_from(TOPICS), readings=st.lists(READING, max_size=5))
    def batch(self, topic: str, readings: list[tuple[str, float | int]]) -> None:
        body = payload(readings)
        try:
            # the model reads the grams back as the server's JSON parser gives them
            doc = orjson.loads(body)["readings"]
        except orjson.JSONDecodeError:
            # 2**64: beyond what the parser takes; the flush rejects it, the window ends
            assert self.ingest._urgent(incoming(topic, body)) is True
            return
        expect = False
        for r in doc:
            if r["bin"] not in BINS:
                continue
            low = round((r["grams"] - TARE_G) / UNIT_G) <= ROP
            if low and r["bin"] not in self.below:
                expect = True
            (self.below.add if low else self.below.discard)(r["bin"])
        assert self.ingest._urgent(incoming(topic, body)) is expect

    @rule(topic=st.sampled_from(TOPICS), body=st.sampled_from(HOSTILE))
    def hostile(self, topic: str, body: bytes) -> None:
        # cannot be read for a crossing: urgent, the flush decodes (and rejects) it
        assert self.ingest._urgent(incoming(topic, body)) is True

    @rule(topic=st.sampled_from(TOPICS))
    def replayed(self, topic: str) -> None:
        # an admin's replay of a dead letter is applied at once, whatever it holds
        body = payload([("B1", grams_of(200))])
        assert self.ingest._urgent(incoming(topic, body, replay=True)) is True

    @rule(
        kind=st.sampled_from(["status", "scans"]),
        agent=st.sampled_from(["pi-1", "pi-2"]),
    )
    def other_kind(self, kind: str, agent: str) -> None:
        body = payload([("B1", grams_of(200))])
        topic = p.agent_topic("plant1", agent, kind)
        assert self.ingest._urgent(incoming(topic, body)) is True


def test_urgent_follows_the_model(tmp_path: Path) -> None:
    plant = Plant(tmp_path)
    try:
        UrgentMachine.plant = plant
        UrgentMachine.TestCase().runTest()
    finally:
        plant.close()


def test_urgent_remembers_only_configured_bins(plant: Plant) -> None:
    """A flood of made-up bins costs no memory and never ends the window."""
    ingest = plant.ingest
    for i in range(5_000):
        body = payload([(f"X{i}", 0.0), (f"Y{i}", grams_of(0))])
        assert ingest._urgent(incoming(TOPICS[0], body)) is False
    assert ingest._below == set()
    assert ingest._urgent(incoming(TOPICS[0], payload([("B1", grams_of(3))])))
    assert ingest._below == {"B1"}


def test_a_new_reorder_point_is_used_after_a_reload(plant: Plant) -> None:
    """The threshold follows the registry: a bin at 30 is not low for a reorder point of
    20, and is once the point is raised to 40 (a policy recalculation, an API change)."""
    from sqlalchemy import update

    from jitstock.server.db.models import Bin
    from jitstock.server.db.session import transaction

    at_30 = payload([("B1", grams_of(30))])
    assert plant.ingest._urgent(incoming(TOPICS[0], at_30)) is False
    with transaction(plant.session_factory) as s:
        s.execute(update(Bin).where(Bin.id == "B1").values(reorder_point=40))
    plant.registry.reload()
    assert plant.ingest._urgent(incoming(TOPICS[0], at_30)) is True


def drain_in_thread(
    plant: Plant, inbox: queue.SimpleQueue[Incoming]
) -> tuple[threading.Thread, list[list[Incoming]]]:
    out: list[list[Incoming]] = []
    t = threading.Thread(target=lambda: out.append(plant.ingest._drain(inbox)))
    t.start()
    return t, out


def test_a_crossing_ends_the_window(plant: Plant) -> None:
    plant.ingest.flush_max_s = 3600.0  # a drain that waited for the window would hang
    above = payload([("B1", grams_of(60)), ("B2", grams_of(45))])
    picked = payload(
        [("B1", grams_of(55)), ("B2", grams_of(45))]
    )  # a pick, still above
    crossed = payload([("B1", grams_of(55)), ("B2", grams_of(18))])
    inbox: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    u1, u2 = incoming(TOPICS[0], above), incoming(TOPICS[0], picked)
    for m in (u1, u2):
        inbox.put(m)
    t, out = drain_in_thread(plant, inbox)
    # changes above the reorder point so far: the window waits for more
    t.join(timeout=0.5)
    assert t.is_alive()
    crossing = incoming(TOPICS[0], crossed)
    inbox.put(crossing)
    t.join(timeout=WAIT_S)
    assert not t.is_alive(), "the window kept waiting after a crossing"
    assert out == [[u1, u2, crossing]]


def test_an_urgent_first_message_takes_only_what_is_queued(plant: Plant) -> None:
    plant.ingest.flush_max_s = 3600.0
    inbox: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    first = incoming(TOPICS[0], b"not json")  # cannot be read: urgent
    later = incoming(TOPICS[1], payload([("B3", grams_of(100))]))
    inbox.put(first)
    inbox.put(later)
    t, out = drain_in_thread(plant, inbox)
    t.join(timeout=WAIT_S)
    assert not t.is_alive()
    assert out == [[first, later]]  # what was queued comes along, nothing is awaited


def test_readings_that_cannot_fire_share_a_flush_up_to_the_window(plant: Plant) -> None:
    plant.ingest.flush_max_s = 0.2
    # a bin below its reorder point already (its order on the way) is not a crossing again
    plant.ingest._urgent(incoming(TOPICS[0], payload([("B2", grams_of(10))])))
    inbox: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    msgs = [
        incoming(
            TOPICS[0], payload([("B1", grams_of(90 - i)), ("B2", grams_of(9 - i))])
        )
        for i in range(5)
    ]
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


def test_the_window_parses_a_payload_once_and_only_for_its_own_message(
    plant: Plant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The document ``_urgent`` parsed is the one the flush decodes (no second parse),
    and it is never applied to another message: a flush of messages the window did not
    see, or of a different message, decodes their own payloads."""
    from jitstock.protocol import decode

    parses: list[bytes] = []
    real = decode.load_payload

    def counting(payload: bytes) -> dict[str, object]:
        parses.append(payload)
        return real(payload)

    monkeypatch.setattr(decode, "load_payload", counting)
    monkeypatch.setattr(p, "load_payload", counting)

    def body(seq: int, count: int) -> bytes:
        doc = {
            "agent": "pi-1",
            "seq": seq,
            "readings": [
                {"bin": "B1", "ts_ms": NOW_MS + seq, "grams": grams_of(count)}
            ],
        }
        return json.dumps(doc).encode()

    seen = incoming(TOPICS[0], body(1, 80))
    assert plant.ingest._urgent(seen) is False
    plant.ingest.process([seen])
    assert parses == [seen.payload]  # parsed once, by the window
    assert on_hand(plant, "B1") == 80

    # the window saw one message, the flush gets another: it decodes its own payload
    glimpsed = incoming(TOPICS[0], body(2, 70))
    plant.ingest._urgent(glimpsed)
    other = incoming(TOPICS[0], body(2, 60))
    plant.ingest.process([other])
    assert on_hand(plant, "B1") == 60
    # and the glimpsed document does not linger for a later flush
    assert plant.ingest._docs == {}


def on_hand(plant: Plant, bin_id: str) -> int:
    from jitstock.server.db.models import Bin
    from jitstock.server.db.session import transaction

    with transaction(plant.session_factory) as s:
        row = s.get(Bin, bin_id)
        assert row is not None
        return int(row.on_hand)


def test_a_running_server_waits_the_window_for_resends_and_not_for_a_crossing(
    tmp_path: Path, mosquitto: Any
) -> None:
    """Through a real broker and a running server: with a window of an hour, re-sends
    and a pick above the reorder point wait (nothing applied); the crossing that follows
    is applied at once, together with what waited."""
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [
            BinSeed(b, "pi-1", "SKU-" + b, UNIT_G, TARE_G, ROP, 50, 200, None)
            for b in ("W1", "W2")
        ],
        [],
    )
    topic = p.agent_topic("plant1", "pi-1", "readings")

    def batch(seq: int, w1: int, w2: int) -> bytes:
        t = now_ms()
        return orjson.dumps(
            {
                "agent": "pi-1",
                "seq": seq,
                "readings": [
                    {"bin": "W1", "ts_ms": t, "grams": grams_of(w1)},
                    {"bin": "W2", "ts_ms": t, "grams": grams_of(w2)},
                ],
            }
        )

    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url, ingest_flush_max_ms=3_600_000.0) as (
            app,
            base,
        ),
    ):
        for seq in range(1, 6):  # re-sends, then a pick that stays above the point
            pub.send(topic, batch(seq, 80, 60 if seq < 5 else 55))
        time.sleep(1.0)  # the window (an hour) is still open: nothing applied yet
        assert api_on_hand(base, "W2") != 55
        assert metric(app, "jitstock_readings_total") == 0
        pub.send(topic, batch(6, 80, ROP - 2))  # W2 crosses its reorder point
        wait_count(base, "W2", ROP - 2, "the crossing applied without the window")
        wait_count(base, "W1", 80)
        assert metric(app, "jitstock_readings_total") == 12
