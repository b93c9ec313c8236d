"""Keep CPython's cyclic garbage collector from stopping ingest for 100 ms at a time.

Measured in `jitstock bench ingest --shape resend` at 150,000 readings/s: the one slow
reorder in sixty (trigger 100-180 ms where the rest took 15 ms) was a full (generation 2)
collection. With the default thresholds (700, 10, 10) a flush's messages live long enough
to be promoted to the oldest generation, so it fills up quickly and every few dozen seconds
the collector walks the whole heap — some 240,000 objects in the bench's server, those of
the imported modules, FastAPI, pydantic and SQLAlchemy included — holding the GIL the
whole time (119-145 ms a collection, docs/bench/ingest-resend-gc-pauses.json).

Two changes, made once the server has started:

* ``gc.freeze()`` moves everything alive after start-up into the permanent generation,
  which no collection walks (https://docs.python.org/3/library/gc.html#gc.freeze). Those
  objects live as long as the process anyway.
* A larger young-generation threshold: a flush's short-lived objects die before a young
  collection sees them, so few of them are promoted and full collections become rare and
  small. The cycles they would have found are still found, only in larger batches.
"""

from __future__ import annotations

import gc

# Allocations (less deallocations) of tracked containers between young collections;
# CPython's default is 700. At 150,000 readings/s this is one young collection about
# every 0.3 s instead of every 10 ms, each still only a few milliseconds.
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Collect what start-up left, freeze the rest, and raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
