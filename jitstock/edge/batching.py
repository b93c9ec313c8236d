"""Batches that fit: items split over payloads no larger than a byte limit.

The broker's limit (MQTT 5 Maximum Packet Size, or the configured
``mqtt_max_payload_bytes``) bounds a whole batch; an oversized publish would be
refused (MQTT 5) or, on a 3.1.1 connection to Mosquitto with
``message_size_limit``, acknowledged and dropped. So the agent splits a tick's
items before they get a seq, and the outbox re-splits a stored batch that a
smaller limit, learned later, no longer admits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from jitstock.protocol import MAX_ITEMS_PER_BATCH, MAX_SEQ

T = TypeVar("T")

# Encoders measure a chunk with the widest seq, so the real payload is never larger.
WIDEST_SEQ = MAX_SEQ


def fit(
    items: Sequence[T],
    encode: Callable[[Sequence[T]], bytes],
    limit: int,
    max_items: int = MAX_ITEMS_PER_BATCH,
) -> list[list[T]]:
    """Split ``items`` (order kept) into chunks whose ``encode`` is at most ``limit`` bytes.

    A single item larger than the limit stays alone (the caller logs it).
    """
    out: list[list[T]] = []
    stack = [list(items[i : i + max_items]) for i in range(0, len(items), max_items)]
    stack.reverse()
    while stack:
        chunk = stack.pop()
        if len(chunk) > 1 and len(encode(chunk)) > limit:
            half = len(chunk) // 2
            stack.append(chunk[half:])
            stack.append(chunk[:half])
        else:
            out.append(chunk)
    return out


def split_payload(payload: bytes, limit: int) -> list[Callable[[int], bytes]]:
    """Builders (seq -> payload) for the parts of a stored batch, each within ``limit``.

    The envelope (agent, sent_ms) is kept; only ``seq`` and the item list change.
    """
    doc: dict[str, Any] = orjson.loads(payload)
    key = "readings" if "readings" in doc else "scans"
    items: list[Any] = doc[key]

    def encode(chunk: Sequence[Any], seq: int = WIDEST_SEQ) -> bytes:
        return orjson.dumps({**doc, "seq": seq, key: list(chunk)})

    builders: list[Callable[[int], bytes]] = []
    for chunk in fit(items, encode, limit):
        builders.append(lambda seq, chunk=chunk: encode(chunk, seq))  # type: ignore[misc]
    return builders
