"""
A bucketed time window: integer counters over the last ``duration`` seconds.

The one home of the idea both the circuit breaker's time-based health window
(``_health.TimeWindow``: calls, failures, slow calls) and the retry budget
(calls, retries) use. Rules:

- Time is cut into ``buckets`` buckets of ``width = duration / buckets``
  seconds, numbered ``floor(now / width)``. A bucket is dropped, as a whole,
  once it is ``buckets`` buckets old, so a count stays in the window for
  between ``duration * (1 - 1/buckets)`` and ``duration`` seconds: exact to
  one bucket, with memory that does not grow with traffic.
- Every operation is O(number of counters): running totals are kept, and
  moving time forward clears at most ``buckets`` buckets, however far it
  moved.
- Time never goes back: a ``now`` older than the newest bucket seen (a
  thread that read the clock before another one took the lock) counts in
  the newest bucket rather than corrupting an older one.
- ``aged`` counts the buckets that left the window holding something. The
  breaker compares it between two judgements: a success can raise a rate
  only when older, better outcomes aged out in between.

Nothing here reads a clock or takes a lock: callers pass ``now`` and hold
their own lock.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Final


if TYPE_CHECKING:
    from collections.abc import Iterator


__all__ = ["MIN_DURATION", "BucketWindow"]

# The shortest window a constructor accepts (the breaker's
# ``window_duration``, the retry budget's ``ttl``): 1 ms, so the narrowest
# bucket is 50 us. A shorter window holds no call worth a rate, and a bucket
# too narrow for a float breaks the arithmetic: ``5e-324 / 20`` is 0 (a
# division by zero), and ``now / width`` past float range cannot be floored.
MIN_DURATION: Final = 0.001


class BucketWindow:
    """``fields`` integer counters over the last ``duration`` seconds."""

    __slots__ = (
        "_bucket",
        "_counts",
        "_head",
        "aged",
        "buckets",
        "duration",
        "fields",
        "past",
        "width",
    )

    def __init__(self, duration: float, buckets: int, fields: int) -> None:
        self.duration = duration
        self.buckets = buckets
        self.fields = fields
        self.width = duration / buckets
        self.aged = 0
        self.clear()

    def clear(self) -> None:
        """Forget every count (``aged`` keeps counting)."""
        fields = self.fields
        self._counts = [[0] * fields for _ in range(self.buckets)]
        # The sums of every bucket in the window but the newest: a record
        # touches the newest bucket only, and a query adds the two.
        self.past = [0] * fields
        """The counters summed over the older buckets still in the window,
        as of the last `bucket` or `sums`: a counter's sum is its item here
        plus its item in the newest bucket. Read it, never change it."""
        # The number of the newest bucket (None: nothing recorded yet) and
        # its counters.
        self._head: int | None = None
        self._bucket = self._counts[0]

    def bucket(self, now: float) -> list[int]:
        """
        The counters of the bucket ``now`` falls in: add to them.

        The list is the window's own; add to its items at once (under the
        caller's lock) and do not keep it. With `past`, it also gives the
        window's sums without a second roll.
        """
        if math.floor(now / self.width) == self._head:
            return self._bucket
        return self._roll(now)

    def sums(self, now: float) -> Iterator[int]:
        """The counters summed over the window at ``now``, in order."""
        head = self._head
        if head is not None and math.floor(now / self.width) != head:
            self._roll(now)
        return map(operator.add, self.past, self._bucket)

    def latest(self) -> Iterator[int]:
        """The counters summed over the window, time not moved."""
        return map(operator.add, self.past, self._bucket)

    def _roll(self, now: float) -> list[int]:
        """Drop the buckets too old at ``now``; the newest bucket's counts."""
        index = math.floor(now / self.width)
        head = self._head
        if head is None:
            self._head = index
        elif index > head:
            n, counts, past = self.buckets, self._counts, self.past
            # The newest bucket joins the past; buckets head+1 .. index are
            # new: clear what they hold from ``buckets`` buckets ago. A jump
            # longer than the window clears every bucket once, not once per
            # skipped bucket.
            for f, amount in enumerate(self._bucket):
                past[f] += amount
            for i in range(max(head + 1, index - n + 1), index + 1):
                old = counts[i % n]
                if any(old):
                    self.aged += 1
                    for f, amount in enumerate(old):
                        past[f] -= amount
                        old[f] = 0
            self._head = index
        else:
            index = head
        self._bucket = bucket = self._counts[index % self.buckets]
        return bucket
