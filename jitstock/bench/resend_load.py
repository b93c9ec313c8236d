"""The load of issue 12's benchmark: every tick each agent re-sends all its bins, a few
of them crossing their reorder point (the generator runs as its own process)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from jitstock import protocol

AGENTS = 20
BINS_PER_AGENT = 50
CROSSINGS = 200
UNIT_G = 10.0
TARE_G = 500.0
START_COUNT = 100
REORDER_POINT = 50
SECRET = "whsec_YmVuY2gtc2VjcmV0LWZvci10cmlnZ2VyLWxhdGVuY3k="

# Seeds a state DB with the tree the server runs (each tree migrates its own schema).
SEED = """
import sys
from jitstock.server.db.migrate import upgrade
from jitstock.server.db.session import make_engine, make_session_factory
from jitstock.server.seed import BinSeed, SupplierSeed, seed_plant
db_url, webhook, secret, prefixes, agents, bins, unit, tare, rop = sys.argv[1:10]
upgrade(db_url)
engine = make_engine(db_url)
seed_plant(
    make_session_factory(engine),
    "bench",
    [
        BinSeed(f"{p}-a{a:02d}-b{b:02d}", f"{p}-a{a:02d}", "SKU-R", float(unit),
                float(tare), int(rop), 100, 1000, "S1")
        for p in prefixes.split(",")
        for a in range(int(agents))
        for b in range(int(bins))
    ],
    [SupplierSeed("S1", "Bench supplier", webhook, secret)],
)
engine.dispose()
"""


def crossing_bins() -> list[tuple[int, int]]:
    """Every (agent, bin) in the order they cross: each phase takes the next ones."""
    return [(i % AGENTS, i // AGENTS) for i in range(AGENTS * BINS_PER_AGENT)]


def generator(
    url: str,
    prefix: str,
    rate: float,
    duration: float,
    crossings: int,
    crossed_before: int,
    first_seq: list[int],
    out: mp.Queue[Any],
) -> None:
    """Every tick each agent re-sends all its bins; the next `crossings` bins drop below
    their reorder point at evenly spaced times (the `crossed_before` bins of earlier
    phases stay low).  Reports what was sent, the next seqs, and when each crossing
    reading was published."""
    port = int(url.rsplit(":", 1)[1])
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-resend-{os.getpid()}"
    )
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    msgs_per_s = rate / BINS_PER_AGENT
    agents = [f"{prefix}-a{a:02d}" for a in range(AGENTS)]
    topics = [protocol.agent_topic("bench", a, "readings") for a in agents]
    counts = [[START_COUNT] * BINS_PER_AGENT for _ in agents]
    order = crossing_bins()
    for a, b in order[:crossed_before]:
        counts[a][b] = REORDER_POINT - 5
    plan = order[crossed_before : crossed_before + crossings]
    # crossing k happens at this time into the run (the first after a second, the last before the end)
    cross_at = [
        1.0 + (duration - 2.0) * k / max(1, len(plan)) for k in range(len(plan))
    ]
    published: dict[str, float] = {}
    crossing: set[tuple[int, int]] = set()  # crossed in this phase, not yet published
    seq = list(first_seq)
    last_ts = [0] * AGENTS
    sent = 0
    k = 0
    next_cross = 0
    infos = []
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration:
            break
        while next_cross < len(plan) and elapsed >= cross_at[next_cross]:
            a, b = plan[next_cross]
            # one pick takes it below its reorder point
            counts[a][b] = REORDER_POINT - 5
            crossing.add((a, b))
            next_cross += 1
        due = int(elapsed * msgs_per_s)
        if k >= due:
            time.sleep(min(0.002, (k + 1) / msgs_per_s - elapsed))
            continue
        a = k % AGENTS
        now = max(time.time_ns() // 1_000_000, last_ts[a] + 1)
        last_ts[a] = now
        seq[a] += 1
        row = counts[a]
        readings = [
            {
                "bin": f"{agents[a]}-b{b:02d}",
                "ts_ms": now,
                "grams": TARE_G + UNIT_G * row[b],
                "stable": True,
            }
            for b in range(BINS_PER_AGENT)
        ]
        payload = orjson.dumps(
            {"agent": agents[a], "seq": seq[a], "sent_ms": now, "readings": readings}
        )
        at = time.time()
        infos.append(client.publish(topics[a], payload, qos=1))
        for b in range(BINS_PER_AGENT):
            if (a, b) in crossing:
                crossing.discard((a, b))
                published[f"{agents[a]}-b{b:02d}"] = at
        sent += BINS_PER_AGENT
        k += 1
    seconds = time.monotonic() - start
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()
    out.put({"sent": sent, "seconds": seconds, "published": published, "seq": seq})
