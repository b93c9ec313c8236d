"""docs/examples/hx711_publisher.py, run as documented, against a real broker and server.

The HX711 is simulated with the load-cell model the firmware simulator uses (raw 24-bit
counts with noise and ringing after a change), fed to the script's ``--source stdin``.
The stock server applies its batches: the bin's level follows the load.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from jitstock.firmware_sim.loadcell import (
    DEFAULT_COUNTS_PER_GRAM,
    ZERO_COUNTS,
    LoadCell,
)
from jitstock.server.seed import BinSeed
from tests.edge.mqtt_support import Collector
from tests.server.server_support import api_get, running_app, seed, wait_until
from tests.waits import WAIT_S

SCRIPT = (
    Path(__file__).resolve().parents[2] / "docs" / "examples" / "hx711_publisher.py"
)
SITE, AGENT = "plant1", "pi-hx711"
UNIT_G, TARE_G = 12.5, 500.0
# the simulated HX711 converts this often (a real one: 10 or 80 per second)
RATE_HZ = 200.0


def on_hand(base: str) -> Any:
    return (api_get(base, "/api/v1/levels/B7") or {}).get("on_hand")


def test_hx711_script_feeds_a_bin_through_broker_and_server(
    tmp_path: Path, mosquitto: Any
) -> None:
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    seed(
        db_url,
        [BinSeed("B7", AGENT, "SKU-7", UNIT_G, TARE_G, 5, 40, 400, None)],
        [],
        site=SITE,
    )
    cell = LoadCell(TARE_G + 100 * UNIT_G, settle_s=0.3, t0=time.monotonic())
    status = Collector(mosquitto.port, [f"jit/v1/{SITE}/{AGENT}/status"])
    proc = subprocess.Popen(
        [
            sys.executable, str(SCRIPT),
            "--mqtt-url", mosquitto.url, "--site", SITE, "--agent", AGENT, "--bin", "B7",
            "--zero-counts", str(ZERO_COUNTS), "--counts-per-gram", str(DEFAULT_COUNTS_PER_GRAM),
            "--source", "stdin", "--seq-file", str(tmp_path / "hx711.seq"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    done = threading.Event()

    def hx711() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write("not a number\n")  # skipped, said once
            while not done.is_set():
                proc.stdin.write(f"{cell.raw_counts(time.monotonic())}\n")
                proc.stdin.flush()
                time.sleep(1 / RATE_HZ)
        except (BrokenPipeError, ValueError):
            pass

    feeder = threading.Thread(target=hx711, daemon=True)
    try:
        with running_app(data_dir=tmp_path, db_url=db_url, mqtt_url=mosquitto.url) as (
            _app,
            base,
        ):
            feeder.start()
            wait_until(
                lambda: on_hand(base) == 100, what="the first level from the script"
            )
            cell.set_load(TARE_G + 93 * UNIT_G, time.monotonic())  # seven parts picked
            wait_until(lambda: on_hand(base) == 93, what="the level after the pick")
            docs = [m.doc for m in status.snapshot()]
            assert docs[-1]["state"] == "online"
            assert docs[-1]["sensors"] == [{"bin": "B7", "ok": True, "fault": None}]
            done.set()
            feeder.join(WAIT_S)
            out, err = proc.communicate(
                timeout=WAIT_S
            )  # closes stdin: the end of the counts
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        status.close()
    assert proc.returncode == 0, err
    assert "skipping a line" in err
    assert "Traceback" not in err
    seqs = [
        int(line.split()[1].rstrip(":"))
        for line in out.splitlines()
        if line.startswith("seq ")
    ]
    assert seqs == list(range(1, len(seqs) + 1))
    assert (tmp_path / "hx711.seq").read_text() == str(seqs[-1])
    wait_until(
        lambda: status.snapshot() and status.snapshot()[-1].doc["state"] == "offline"
    )
