"""Waiting for real processes in tests: generous bounds for conditions, progress-based
waits for long drains, so a busy shared machine makes a test slower, never red.

A bound here is a guard against hanging, not a speed assertion: a test that measures
speed measures it itself (and says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# Bound for one condition on real processes (broker, server, agent, browser) on a 2-core
# machine that other test runs may be loading; free when the condition comes at once.
WAIT_S = 60.0
# A long drain fails only after it made no progress at all for this long.
STALL_S = 60.0
# ...or after this long in any case (the test that drains says so with a pytest timeout).
PROGRESS_CAP_S = 900.0
# Polling period: short, so a fast condition costs nothing.
POLL_S = 0.02
# The same bound for Playwright, which counts in milliseconds.
BROWSER_WAIT_MS = int(WAIT_S * 1000)


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = WAIT_S,
    interval: float = POLL_S,
    what: str = "condition",
) -> Any:
    """Poll until predicate() is truthy; return its value or fail with `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_progress(
    measure: Callable[[], T],
    done: Callable[[T], bool],
    *,
    stall_s: float = STALL_S,
    cap_s: float = PROGRESS_CAP_S,
    interval: float = 0.05,
    what: str = "progress",
) -> T:
    """Poll measure() until done(value); fail only when the value stopped changing for
    `stall_s`, or after `cap_s` in all. Returns the last value."""
    start = last_move = time.monotonic()
    value = measure()
    while not done(value):
        time.sleep(interval)
        now = time.monotonic()
        new = measure()
        if new != value:
            value, last_move = new, now
        elif now - last_move > stall_s:
            raise AssertionError(
                f"{what}: no progress for {stall_s:.0f}s, stuck at {value!r} "
                f"after {now - start:.0f}s"
            )
        if now - start > cap_s:
            raise AssertionError(
                f"{what}: still not done after {cap_s:.0f}s, at {value!r}"
            )
    return value
