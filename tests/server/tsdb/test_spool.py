"""The spool: FIFO order, counts and age, and persistence across reopening."""

from __future__ import annotations

from pathlib import Path

from jitstock.server.tsdb.spool import Spool


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def monotonic(self) -> float:
        return self.ms / 1000

    def time_ms(self) -> int:
        return self.ms

    def sleep(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


def test_fifo_counts_and_age(tmp_path: Path) -> None:
    clock = ManualClock(1_000_000)
    spool = Spool(tmp_path / "s.db", clock)
    assert (spool.points, spool.batches, spool.oldest_age_s()) == (0, 0, 0.0)
    spool.append([(b"a 1\n", 1), (b"b 2\nb 3\n", 2)])
    clock.sleep(5)
    spool.append([(b"c 4\n", 1)])
    clock.sleep(2)
    assert (spool.points, spool.batches, spool.oldest_age_s()) == (4, 3, 7.0)

    head = spool.head(max_points=3)
    assert [b.body for b in head] == [b"a 1\n", b"b 2\nb 3\n"]
    spool.remove(head)
    assert (spool.points, spool.batches, spool.oldest_age_s()) == (1, 1, 2.0)
    # a body bigger than the limit still comes out alone, so replay cannot stall on it
    assert [b.points for b in spool.head(max_points=0)] == [1]
    spool.close()


def test_contents_survive_reopening(tmp_path: Path) -> None:
    clock = ManualClock(0)
    spool = Spool(tmp_path / "s.db", clock)
    spool.append([(f"m v={i} {i}\n".encode(), 1) for i in range(10)])
    spool.close()
    clock.sleep(3)
    spool = Spool(tmp_path / "s.db", clock)
    assert (spool.points, spool.oldest_age_s()) == (10, 3.0)
    assert [b.body for b in spool.head(100)] == [
        f"m v={i} {i}\n".encode() for i in range(10)
    ]
    spool.close()
