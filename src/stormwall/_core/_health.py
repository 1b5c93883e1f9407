"""
Health windows: what the circuit breaker remembers about recent outcomes.

A window records each finished call as two flags, *failed* and *slow*, and
answers "how many calls, failures and slow calls are in the window now?".
The breaker turns those totals into a failure rate and a slow-call rate
(resilience4j's sliding windows; Polly's ``HealthMetrics``). The consecutive
failure count is one integer, so it lives in the breaker's record, not here.

Both windows cost O(1) per record and per query, whatever their size:

- `CountWindow` keeps the last ``size`` outcomes in a ring buffer of one byte
  each and running totals; recording overwrites the oldest outcome and
  subtracts it from the totals.
- `TimeWindow` is a `BucketWindow` (``_window.py``, shared with the retry
  budget) of three counters: ``buckets`` time buckets of
  ``duration / buckets`` seconds each, plus running totals, so an outcome
  stays in the window for between ``duration * (1 - 1/buckets)`` and
  ``duration`` seconds: exact to one bucket, with memory that does not grow
  with traffic.

Nothing here reads a clock: `TimeWindow` takes ``now``.

``aged`` counts the times outcomes left the window other than by being
replaced by a newer outcome (only a time window ages). The breaker
compares it between two judgements: a success can raise a rate only when
older, better outcomes aged out in between (see ``stormwall._core._breaker``).
"""

from __future__ import annotations

import math
from typing import Protocol

from ._window import BucketWindow


__all__ = [
    "MAX_WINDOW_SIZE",
    "TIME_BUCKETS",
    "CountWindow",
    "HealthWindow",
    "TimeWindow",
]

# How finely a time window is cut. 20 buckets keep a 60 s window exact to
# 3 s (resilience4j uses one-second buckets) at a fixed 80 integers of state.
TIME_BUCKETS = 20

# The largest count window: its ring is allocated whole, one byte a call,
# so a breaker's memory is known when it is built (1 MB at most here, and
# in a shared store). A window that grew as calls came would bound nothing
# until it was full. A longer horizon is a time window's job: its memory is
# TIME_BUCKETS counters whatever the traffic.
MAX_WINDOW_SIZE = 1_000_000

_FAILED = 1
_SLOW = 2


class HealthWindow(Protocol):
    """The operations the breaker needs from a window."""

    aged: int
    """Bumped whenever outcomes age out of the window (never decreases)."""

    def record(self, failed: bool, slow: bool, now: float) -> None:
        """Add one finished call."""
        ...

    def totals(self, now: float) -> tuple[int, int, int]:
        """Return ``(calls, failures, slow_calls)`` at ``now``."""
        ...

    def clear(self) -> None:
        """Forget every outcome."""
        ...


class CountWindow:
    """The last ``size`` outcomes, in a ring buffer."""

    __slots__ = (
        "_calls",
        "_failures",
        "_pos",
        "_ring",
        "_slow",
        "aged",
        "size",
    )

    def __init__(self, size: int) -> None:
        self.size = size
        # Outcomes leave only when a newer one replaces them: never aged.
        self.aged = 0
        self._ring = bytearray(size)
        self._pos = 0
        self._calls = 0
        self._failures = 0
        self._slow = 0

    def record(self, failed: bool, slow: bool, now: float) -> None:  # noqa: ARG002 - one signature for both windows
        """Add one outcome, evicting the oldest once the ring is full."""
        pos = self._pos
        if self._calls == self.size:
            old = self._ring[pos]
            self._failures -= old & _FAILED
            self._slow -= (old & _SLOW) >> 1
        else:
            self._calls += 1
        self._ring[pos] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        self._failures += failed
        self._slow += slow
        pos += 1
        self._pos = 0 if pos == self.size else pos

    def totals(self, now: float) -> tuple[int, int, int]:  # noqa: ARG002
        """Return ``(calls, failures, slow_calls)``; ``now`` is unused."""
        return self._calls, self._failures, self._slow

    def clear(self) -> None:
        """Forget every outcome."""
        self._ring = bytearray(self.size)
        self._pos = self._calls = self._failures = self._slow = 0


class TimeWindow(BucketWindow):
    """The outcomes of the last ``duration`` seconds, in time buckets."""

    __slots__ = ()

    def __init__(self, duration: float, buckets: int = TIME_BUCKETS) -> None:
        BucketWindow.__init__(self, duration, buckets, 3)

    def record(self, failed: bool, slow: bool, now: float) -> None:
        """Add one outcome at ``now``."""
        counts = self.bucket(now)
        counts[0] += 1
        counts[1] += failed
        counts[2] += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        """Return ``(calls, failures, slow_calls)`` at ``now``."""
        head = self._head
        if head is None:
            return 0, 0, 0
        if math.floor(now / self.width) != head:
            self._roll(now)
        # Read in place (no list built): the breaker judges after every
        # failure.
        past, newest = self.past, self._bucket
        return past[0] + newest[0], past[1] + newest[1], past[2] + newest[2]
