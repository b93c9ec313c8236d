#!/usr/bin/env python3
"""A load cell on a Raspberry Pi's GPIO (HX711 amplifier) publishing to jitstock, per docs/protocol.md.

One bin, one HX711: the script reads raw 24-bit counts, converts them to grams with a
two-number calibration, waits until the weight is steady, and publishes a readings batch
to ``jit/v1/{site}/{agent}/readings`` (QoS 1) when the steady weight moved by more than
``--step-g`` or every ``--keepalive-s``. It keeps a retained ``status`` (online, with a
last will that says offline) and never reuses a ``seq``: the last one used is written to
``--seq-file`` before each publish, so a restart carries on after it.

Raw counts come from the HX711 itself (``--source gpio``, bit-banged with ``lgpio``:
``sudo apt install python3-lgpio``) or, one integer per line, from standard input
(``--source stdin``: another ADC program, or a simulated HX711 in tests).

Calibration: ``--zero-counts`` is the raw reading with nothing on the platform, and
``--counts-per-gram`` the raw change per gram (put a known weight on: (raw - zero) / grams).
The published weight is gross: the empty bin's weight is the bin's ``tare_g`` on the server.

    python3 hx711_publisher.py --mqtt-url mqtt://broker:1883 --site plant1 --agent pi-hx \\
        --bin A-07 --zero-counts 40000 --counts-per-gram 100 --source gpio --dout 5 --sck 6

Needs paho-mqtt 2 (``pip install paho-mqtt``). MQTT password: ``JITSTOCK_MQTT_PASSWORD``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

VERSION = "hx711-example-1"
ADC_MIN, ADC_MAX = -(1 << 23), (1 << 23) - 1


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def gpio_counts(dout: int, sck: int, chip: int = 0) -> Iterator[int]:
    """Raw counts from an HX711 (channel A, gain 128), about 10 per second."""
    import lgpio  # on the Pi only

    h = lgpio.gpiochip_open(chip)
    lgpio.gpio_claim_input(h, dout)
    lgpio.gpio_claim_output(h, sck, 0)
    while True:
        while lgpio.gpio_read(h, dout):  # DOUT low: a conversion is ready
            time.sleep(0.005)
        value = 0
        for _ in range(24):
            lgpio.gpio_write(h, sck, 1)
            lgpio.gpio_write(h, sck, 0)
            value = value << 1 | lgpio.gpio_read(h, dout)
        lgpio.gpio_write(h, sck, 1)  # a 25th pulse: channel A, gain 128 next time
        lgpio.gpio_write(h, sck, 0)
        yield value - (1 << 24) if value & 0x800000 else value


def stdin_counts() -> Iterator[int]:
    """Raw counts, one integer per line; anything else is skipped and said once."""
    warned = False
    for line in sys.stdin:
        try:
            value = int(line.strip())
        except ValueError:
            value = None
        if value is None or not ADC_MIN <= value <= ADC_MAX:
            if not warned:
                print(  # noqa: T201 (a script: its output is for people)
                    f"skipping a line that is not a 24-bit count: {line[:40]!r}",
                    file=sys.stderr,
                )
                warned = True
            continue
        yield value


class Sequence:
    """The agent's seq, persisted before use so a restart never reuses one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        text = path.read_text().strip() if path.exists() else "0"
        self.last = int(text) if text.isdigit() else 0

    def next(self) -> int:
        self.last += 1
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(self.last))
        os.replace(tmp, self.path)
        return self.last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    p.add_argument("--mqtt-user", default=None)
    p.add_argument("--site", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--zero-counts", type=float, required=True)
    p.add_argument("--counts-per-gram", type=float, required=True)
    p.add_argument("--source", choices=("gpio", "stdin"), default="gpio")
    p.add_argument("--dout", type=int, default=5, help="BCM pin of HX711 DOUT")
    p.add_argument("--sck", type=int, default=6, help="BCM pin of HX711 SCK")
    p.add_argument("--samples", type=int, default=5, help="median of this many counts")
    p.add_argument(
        "--window", type=int, default=5, help="steady over this many medians"
    )
    p.add_argument(
        "--spread-g", type=float, default=2.0, help="steady: max - min within this"
    )
    p.add_argument("--step-g", type=float, default=2.0)
    p.add_argument("--keepalive-s", type=float, default=60.0)
    p.add_argument("--seq-file", type=Path, default=Path("hx711.seq"))
    args = p.parse_args()
    if args.counts_per_gram == 0 or args.samples < 1 or args.window < 1:
        p.error("--counts-per-gram must not be 0; --samples and --window at least 1")

    url = urlsplit(args.mqtt_url)
    base = f"jit/v1/{args.site}/{args.agent}"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"hx711-{args.site}-{args.agent}"
    )
    if args.mqtt_user:
        client.username_pw_set(args.mqtt_user, os.environ.get("JITSTOCK_MQTT_PASSWORD"))
    if url.scheme == "mqtts":
        client.tls_set()

    def status(state: str, ok: bool) -> str:
        sensors = [{"bin": args.bin, "ok": ok, "fault": None if ok else "no_data"}]
        return json.dumps(
            {"state": state, "version": VERSION, "ts_ms": now_ms(), "sensors": sensors}
        )

    client.will_set(f"{base}/status", status("offline", False), qos=1, retain=True)
    client.connect(
        url.hostname or "127.0.0.1",
        url.port or (8883 if url.scheme == "mqtts" else 1883),
    )
    client.loop_start()
    client.publish(f"{base}/status", status("online", True), qos=1, retain=True)

    seq = Sequence(args.seq_file)
    counts = (
        gpio_counts(args.dout, args.sck) if args.source == "gpio" else stdin_counts()
    )
    recent: deque[float] = deque(maxlen=args.window)
    published: float | None = None
    published_at = 0.0
    batch: list[int] = []
    try:
        for raw in counts:
            batch.append(raw)
            if len(batch) < args.samples:
                continue
            grams = (statistics.median(batch) - args.zero_counts) / args.counts_per_gram
            batch.clear()
            recent.append(grams)
            steady = (
                len(recent) == recent.maxlen
                and max(recent) - min(recent) <= args.spread_g
            )
            if not steady:
                continue
            weight = round(statistics.fmean(recent), 1)
            due = time.monotonic() - published_at >= args.keepalive_s
            if (
                published is not None
                and abs(weight - published) <= args.step_g
                and not due
            ):
                continue
            n, ts = seq.next(), now_ms()
            payload = {
                "agent": args.agent,
                "seq": n,
                "sent_ms": ts,
                "readings": [
                    {"bin": args.bin, "ts_ms": ts, "grams": weight, "stable": True}
                ],
            }
            client.publish(
                f"{base}/readings", json.dumps(payload), qos=1
            ).wait_for_publish(30)
            published, published_at = weight, time.monotonic()
            print(f"seq {n}: {args.bin} {weight} g", flush=True)  # noqa: T201
    except KeyboardInterrupt:
        pass
    finally:
        client.publish(
            f"{base}/status", status("offline", False), qos=1, retain=True
        ).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
