"""Edge bench: the agent process under load, CPU per million scale frames, outbox batches/s.

The headline is the real `jitstock-edge` process with 8 and 32 simulated scales at
10 Hz (jitstock/bench/edge_agent.py: its CPU share and RSS from /proc). The
micro-benchmarks below say where the time goes.

Frames come from H1's load cell model (:class:`SimulatedScale` without its pty),
generated before the clock starts; picks every few seconds keep the stability
detector honest (settling, unstable frames, re-stabilising).  The outbox cycle is
what the agent and publisher do per batch: one durable append (its own
transaction, as each tick is), acknowledgements deleted in groups.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from jitstock import protocol
from jitstock.edge.frames import FrameError, parse_sics_response, parse_stream_line
from jitstock.edge.outbox import Outbox
from jitstock.edge.stability import SignalPath, SignalSettings
from jitstock.firmware_sim.scale import SimulatedScale

# Frames per protocol in a full run (quick: a tenth): enough for a stable CPU figure.
FRAMES = 300_000
# Outbox cycles (append + ack) in a full run (quick: a tenth).
OUTBOX_BATCHES = 5_000
# The target deployment: 32 scales at 10 frames/s on one Pi.
SCALES, FRAME_HZ = 32, 10.0
# Agent-process runs: scales per agent, and the window per case (a minute; quick: 5 s).
AGENT_SCALES = (8, 32)
AGENT_WINDOW_S, QUICK_AGENT_WINDOW_S = 60.0, 5.0
# A pick every this many frames (5 s at 10 Hz): realistic, and it exercises settling.
PICK_EVERY = 50
# Parts in the simulated bin (25.5 kg gross: inside the 24-bit range of the load cell model).
BIN_PARTS = 2_000
# Readings per outbox batch: every bin of a 32-scale agent changed in one tick (the heavy case).
READINGS_PER_BATCH = 32
# Acks are deleted in groups like the publisher does.
ACK_GROUP = 100


class _StepClock:
    """Simulated time advanced by hand, one frame period at a time."""

    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def time_ms(self) -> int:
        return 1_700_000_000_000 + int(self.t * 1000)

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def _frames(protocol_name: str, n: int) -> list[tuple[float, bytes]]:
    """(time, line) pairs from the load cell model, with a pick every PICK_EVERY frames."""
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        scale = SimulatedScale(
            "BENCH",
            "stream" if protocol_name == "stream" else "sics",
            count=BIN_PARTS,
            clock=clock,
            workdir=Path(tmp),
        )
        out = []
        for i in range(n):
            if i % PICK_EVERY == 0 and i:
                if scale.count == 0:
                    scale.set_count(BIN_PARTS)  # a refill, as the line would get
                else:
                    scale.pick(1)
            line = (
                scale.stream_frame()
                if protocol_name == "stream"
                else scale.sics_answer(b"S")
            )
            out.append((clock.t, line.rstrip(b"\r\n")))
            clock.t += 1.0 / FRAME_HZ
    return out


def _signal_cpu(protocol_name: str, n: int) -> dict[str, float]:
    frames = _frames(protocol_name, n)
    parse = parse_stream_line if protocol_name == "stream" else parse_sics_response
    clock = _StepClock()
    settings = SignalSettings()
    path = SignalPath(settings, clock)
    outputs = bad = 0
    start = time.process_time()
    for t, line in frames:
        clock.t = t
        try:
            frame = parse(line)
        except FrameError:
            bad += 1
            continue
        if not settings.in_range(frame.grams):
            bad += 1
            continue
        if path.feed(frame) is not None:
            outputs += 1
        if path.tick() is not None:
            outputs += 1
    cpu = time.process_time() - start
    per_million = cpu * 1_000_000 / len(frames)
    return {
        f"{protocol_name}_cpu_s_per_million_frames": per_million,
        f"{protocol_name}_readings_published": outputs,
        f"{protocol_name}_frames_rejected": bad,
    }


def _outbox_rate(n: int) -> dict[str, float]:
    now = protocol.now_ms()
    readings = tuple(
        protocol.Reading(f"B{i:02d}", now, 1234.5 + i, True)
        for i in range(READINGS_PER_BATCH)
    )

    def build(seq: int) -> bytes:
        return protocol.encode_readings(
            protocol.ReadingsBatch("bench", seq, now, readings)
        )

    with tempfile.TemporaryDirectory() as tmp, Outbox(Path(tmp) / "o.db") as box:
        acks: list[int] = []
        start = time.perf_counter()
        for _ in range(n):
            acks.append(box.append("readings", build))
            if len(acks) >= ACK_GROUP:
                box.ack_many(acks)
                acks = []
        box.ack_many(acks)
        elapsed = time.perf_counter() - start
        assert box.depth == 0
    return {
        "outbox_batches_per_s": n / elapsed,
        "outbox_readings_per_s": n * READINGS_PER_BATCH / elapsed,
        "outbox_append_ms": elapsed * 1000 / n,
    }


def _agent_options(args: argparse.Namespace, quick: bool) -> tuple[list[int], float]:
    scales = getattr(args, "scales", None)
    counts = (
        [int(x) for x in str(scales).split(",") if x.strip()]
        if scales
        else list(AGENT_SCALES[:1] if quick else AGENT_SCALES)
    )
    duration = getattr(args, "duration", None)
    window = (
        float(duration)
        if duration
        else (QUICK_AGENT_WINDOW_S if quick else AGENT_WINDOW_S)
    )
    return counts, window


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and return the edge numbers: the agent process first, then the micro-benchmarks."""
    from jitstock.bench.edge_agent import run_all

    quick = bool(getattr(args, "quick", False))
    counts, window = _agent_options(args, quick)
    result: dict[str, Any] = run_all(counts, window, seed=int(getattr(args, "seed", 1)))
    frames = FRAMES // 10 if quick else FRAMES
    result["frames_per_protocol"] = frames
    result.update(_signal_cpu("stream", frames))
    result.update(_signal_cpu("sics", frames))
    worst = max(
        result["stream_cpu_s_per_million_frames"],
        result["sics_cpu_s_per_million_frames"],
    )
    # parsing and filtering alone (not the agent: threads, serial reads, MQTT), 32 scales at 10 Hz
    result["parse_only_pct_core_32_scales_10hz"] = (
        worst * SCALES * FRAME_HZ / 1_000_000 * 100
    )
    result.update(_outbox_rate(OUTBOX_BATCHES // 10 if quick else OUTBOX_BATCHES))
    return result
