"""Issue 10 acceptance: a seeded MQTT fuzz against a real server never costs a good reading.

A few thousand payloads from a seeded generator (random bytes, deep nesting,
2**63 and 2**64, NaN and Infinity, wrong types, unicode, boundary values, wrong
sites) on the readings, scans and status topics of several agents, interleaved
with good readings of another agent, through a real Mosquitto.  Every good
reading must be applied, the server must stay up, rejections and dead letters
must be counted, and /healthz must be degraded only while there are dead
letters (a SQLite trigger makes one grams value a value the DB refuses).
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson

from jitstock.server.db.models import AgentCursor
from jitstock.server.db.session import transaction
from tests.server.mqtt_support import (
    DEADLINE_S,
    TARE_G,
    UNIT_G,
    bin_seed,
    healthz,
    metric,
    now_ms,
    publisher,
    readings_payload,
    server,
    topic,
)
from tests.server.server_support import seed, wait_progress, wait_until

SEED = 20261201
FUZZ_MESSAGES = 3000
GOOD_EVERY = 10  # one good reading of good-pi after every 10 fuzz messages
POISON_EVERY = 500  # one batch the DB refuses, from agent fz-p (its own bin: no later reading hides it)
FUZZ_AGENTS = ("fz-1", "fz-2", "fz-3")
POISON_GRAMS = 666.0  # the DB refuses it (trigger): the fuzz's dead letters
TRIGGER = f"""
CREATE TRIGGER fuzz_poison BEFORE UPDATE OF last_grams ON bins
WHEN NEW.last_grams = {POISON_GRAMS}
BEGIN SELECT RAISE(ABORT, 'value refused by the fuzz trigger'); END
"""

BIG = [2**63, 2**63 - 1, 2**64, 2**64 - 1, -(2**63), -(2**63) - 1, 10**30]
ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-0", "1e-400", "5e-324"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, often a nasty one."""
    pick = rng.random()
    if pick < 0.15:
        return rng.choice(BIG)
    if pick < 0.25:
        return rng.choice([0, -1, 1, 2_000_000, 2_000_000.0001, 1e308, -1e308, 0.5])
    if pick < 0.35:
        return rng.choice(["", "\x00", "é" * 70, "🙂" * 5, "a" * 300, "orders"])
    if pick < 0.45:
        return rng.choice([True, False, None])
    if pick < 0.55 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if pick < 0.65 and depth < 3:
        return {
            rng.choice(["bin", "ts_ms", "grams", "x"]): _value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))
        }
    return rng.randint(-5, 5)


def _json(doc: Any) -> bytes:
    """JSON with integers beyond 64 bits (orjson refuses to write them)."""
    if isinstance(doc, bool) or doc is None:
        return orjson.dumps(doc)
    if isinstance(doc, int):
        return str(doc).encode()
    if isinstance(doc, list):
        return b"[" + b",".join(_json(v) for v in doc) + b"]"
    if isinstance(doc, dict):
        return (
            b"{"
            + b",".join(orjson.dumps(str(k)) + b":" + _json(v) for k, v in doc.items())
            + b"}"
        )
    return orjson.dumps(doc)


def _mutated_batch(rng: random.Random, agent: str, kind: str) -> bytes:
    """A plausible batch with one or more fields replaced by something nasty."""
    t = now_ms()
    bin_id = "F" + agent[-1]
    if kind == "readings":
        item: dict[str, Any] = {
            "bin": bin_id,
            "ts_ms": t,
            "grams": TARE_G + rng.randint(0, 50) * UNIT_G,
            "stable": True,
        }
        if rng.random() < 0.1:
            item["grams"] = POISON_GRAMS
    elif kind == "scans":
        item = {"scanner": "gun-1", "ts_ms": t, "code": "4006381333931"}
    else:
        doc: dict[str, Any] = {
            "state": "online",
            "version": "fz",
            "ts_ms": t,
            "sensors": [{"bin": bin_id, "ok": True, "fault": None}],
        }
        for _ in range(rng.randint(0, 2)):
            doc[rng.choice([*doc, "extra"])] = _value(rng)
        return _json(doc)
    doc = {
        "agent": agent,
        "seq": rng.choice([rng.randint(1, 400), *BIG, 0, -1]),
        "sent_ms": t,
        kind: [item],
    }
    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.5:
            doc[rng.choice(list(doc))] = _value(rng)
        else:
            item[rng.choice(list(item))] = _value(rng)
    return _json(doc)


def _payload(rng: random.Random, agent: str, kind: str) -> bytes:
    pick = rng.random()
    if pick < 0.1:
        return rng.randbytes(rng.randint(0, 200))
    if pick < 0.15:
        depth = rng.choice([10, 500, 2000])
        return b"[" * depth + b"1" + b"]" * depth
    if pick < 0.2:
        number = rng.choice(ODD_NUMBERS)
        return (
            f'{{"agent":"{agent}","seq":1,"sent_ms":1,"{kind}":[{{"bin":"F1",'
            f'"ts_ms":{now_ms()},"grams":{number}}}],"ts_ms":{number},'
            f'"state":"online"}}'
        ).encode()
    if pick < 0.25:
        return _json(_value(rng))
    if pick < 0.27:
        return b"x" * (300 * 1024)  # beyond MAX_PAYLOAD_BYTES
    return _mutated_batch(rng, agent, kind)


def _topic(rng: random.Random, agent: str, kind: str) -> str:
    pick = rng.random()
    if pick < 0.05:
        return topic(agent, kind, site="otherplant")
    if pick < 0.07:
        return f"jit/v1/plänt/{agent}/{kind}"
    if pick < 0.09:
        return topic("ghost-pi", kind)
    return topic(agent, kind)


def _dead_letter_count(base: str) -> int:
    r = httpx.get(f"{base}/api/v1/dead-letters?limit=1000", timeout=10)
    return len(r.json()) if r.status_code == 200 else -1


def test_fuzzed_mqtt_never_costs_a_good_reading(tmp_path: Path, mosquitto: Any) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [bin_seed("G1", "good-pi"), bin_seed("FP", "fz-p")]
        + [bin_seed("F" + a[-1], a) for a in FUZZ_AGENTS],
        [],
    )
    con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    con.execute(TRIGGER)
    con.commit()
    con.close()
    rng = random.Random(SEED)
    good_seq = 0
    poisons = 0
    good_ts = now_ms()  # distinct timestamps: one history point per good reading
    statuses: list[tuple[str, int]] = []  # (/healthz status, dead letters then)
    stop = threading.Event()

    with (
        publisher(mosquitto.url) as pub,
        server(tmp_path, db_url, mosquitto.url) as (app, base),
    ):

        def watch() -> None:
            while not stop.is_set():
                try:
                    body = healthz(base)
                    statuses.append(
                        (body["status"], body.get("dead_letters", {}).get("recent", 0))
                    )
                except httpx.HTTPError:
                    statuses.append(("down", 0))
                stop.wait(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            assert healthz(base)["status"] == "ok"
            for i in range(FUZZ_MESSAGES):
                agent = rng.choice(FUZZ_AGENTS)
                kind = rng.choice(["readings", "scans", "status"])
                pub.send(
                    _topic(rng, agent, kind), _payload(rng, agent, kind), wait=False
                )
                if i % POISON_EVERY == POISON_EVERY // 2:
                    poisons += 1
                    pub.send(
                        topic("fz-p", "readings"),
                        readings_payload("fz-p", poisons, "FP", POISON_GRAMS),
                        wait=False,
                    )
                if i % GOOD_EVERY == 0:
                    good_seq += 1
                    pub.send(
                        topic("good-pi", "readings"),
                        readings_payload(
                            "good-pi",
                            good_seq,
                            "G1",
                            TARE_G + (good_seq % 500) * UNIT_G,
                            ts=good_ts + good_seq,
                        ),
                        wait=False,
                    )
            pub.flush()

            def applied() -> int:
                with transaction(app.session_factory, readonly=True) as s:
                    cursor = s.get(AgentCursor, "good-pi")
                    return 0 if cursor is None else cursor.last_seq

            # a drain: as long as the good agent's cursor moves, a busy machine is only slow
            wait_progress(
                applied,
                lambda last: last == good_seq,
                stall_s=DEADLINE_S,
                interval=0.1,
                what=f"all {good_seq} good readings applied",
            )
        finally:
            stop.set()
            watcher.join(timeout=10)

        # every good reading applied, once, none lost: the cursor saw no gap or repeat
        with transaction(app.session_factory, readonly=True) as s:
            cursor = s.get(AgentCursor, "good-pi")
            assert cursor is not None
            assert (cursor.last_seq, cursor.gaps, cursor.duplicates) == (good_seq, 0, 0)
        history = app.tsdb.query_raw("bin_level", {"bin": "G1"}, 0, now_ms() + 60_000)
        assert len(history) == good_seq

        # rejections and dead letters counted
        samples = {
            (s.name, s.labels.get("reason")): s.value
            for m in app.metrics.registry.collect()
            for s in m.samples
            if s.name
            in ("jitstock_rejected_batches_total", "jitstock_dead_letters_total")
        }
        rejected = sum(
            v for (n, _), v in samples.items() if n == "jitstock_rejected_batches_total"
        )
        assert rejected > FUZZ_MESSAGES / 3, samples
        for reason in ("malformed_json", "wrong_type", "out_of_range", "wrong_site"):
            assert samples.get(("jitstock_rejected_batches_total", reason), 0) > 0, (
                reason,
                samples,
            )
        dead = metric(app, "jitstock_dead_letters_total", reason="integrity")
        assert dead >= poisons, samples
        assert _dead_letter_count(base) == dead

        # the server is up, and /healthz was degraded only while dead letters were there
        final = healthz(base)
        assert final["status"] == "degraded"
        assert final["dead_letters"]["recent"] == dead
        assert all(s != "down" and s != "unhealthy" for s, _ in statuses), statuses
        assert all((s == "degraded") == (n > 0) for s, n in statuses), statuses
        app.dead_letters.recent_s = (
            0.001  # the window shrunk: the dead letters are old now
        )
        wait_until(
            lambda: healthz(base)["status"] == "ok", DEADLINE_S, what="/healthz ok"
        )
