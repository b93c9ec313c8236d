"""The server's garbage-collector settings (jitstock.server.heap): start-up objects are
left out of every collection, and garbage made afterwards is still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from jitstock.server import heap


@pytest.fixture
def settled() -> Iterator[None]:
    before = gc.get_threshold()
    heap.settle()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_start_up_objects_are_frozen_and_later_cycles_still_freed(
    settled: None,
) -> None:
    assert gc.get_freeze_count() > 1000  # the imported modules, at least
    assert gc.isenabled()
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector can free
    gone = weakref.ref(a)
    del a, b
    for _ in range(3):  # young threshold raised: allocate until a collection runs
        if gone() is None:
            break
        junk = [[i] for i in range(heap.YOUNG_THRESHOLD * 2)]
        del junk
    assert gone() is None
