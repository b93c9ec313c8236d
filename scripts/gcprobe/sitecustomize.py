"""Record CPython garbage-collector pauses of every Python process started with
``PYTHONPATH=scripts/gcprobe`` and ``GCPROBE_OUT=<prefix>`` (a measuring aid, not part of
jitstock; how docs/bench/ingest-resend-gc-pauses.json was measured).

Every 5 s each process writes ``<prefix>.<pid>`` (JSON): collections and seconds spent per
generation, and every pause over 10 ms with its wall-clock time.  For a baseline checkout
the bench runs with ``PYTHONPATH=<tree>``, copy this file into that tree's root.
"""

import gc
import json
import os
import threading
import time

_out = os.environ.get("GCPROBE_OUT")
if _out:
    _start: list[float] = [0.0]
    _long: list[tuple[float, int, float, int]] = []
    _counts = [0, 0, 0]
    _total = [0.0, 0.0, 0.0]

    def _callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _start[0] = time.perf_counter()
            return
        took = time.perf_counter() - _start[0]
        gen = info["generation"]
        _counts[gen] += 1
        _total[gen] += took
        if took > 0.01:
            _long.append((time.time(), gen, round(took * 1000, 1), info["collected"]))

    def _dump_every_5s() -> None:
        while True:
            time.sleep(5)
            with open(f"{_out}.{os.getpid()}", "w") as f:
                json.dump({"counts": _counts, "total_s": _total, "long": _long}, f)

    gc.callbacks.append(_callback)
    threading.Thread(target=_dump_every_5s, daemon=True).start()
