"""
The bucketed time window (``stormwall._core._window.BucketWindow``).

Unit tests of its rules (bucket ageing, long jumps, a clock that goes back,
``aged``, ``clear``) and a property test against a reference model that keeps
every count in a plain list and filters it. The window is the one home of
the breaker's time-based health window and the retry budget's window.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from stormwall._core._window import BucketWindow


class TestBucketWindow:
    def test_counts_add_up_until_their_bucket_ages_out(self):
        """A count stays until its bucket is ``buckets`` buckets old."""
        window = BucketWindow(10.0, 10, 2)
        window.bucket(0.5)[0] += 1
        window.bucket(1.5)[1] += 2

        assert [1, 2] == list(window.sums(9.9))
        assert [0, 2] == list(window.sums(10.0))
        assert [0, 0] == list(window.sums(11.0))

    def test_long_jump_clears_everything_once(self):
        """A jump far beyond the window clears each bucket once."""
        window = BucketWindow(1.0, 4, 1)
        for i in range(8):
            window.bucket(i * 0.25)[0] += 1
        aged = window.aged
        window.bucket(1e9)[0] += 1

        assert [1] == list(window.sums(1e9))
        assert 4 == window.aged - aged

    def test_clock_going_back_counts_in_the_newest_bucket(self):
        """A time before the newest bucket lands in the newest bucket."""
        window = BucketWindow(1.0, 4, 1)
        window.bucket(5.0)[0] += 1
        window.bucket(4.0)[0] += 1

        assert [2] == list(window.sums(5.0))
        assert [0] == list(window.sums(6.0))

    def test_aged_counts_only_buckets_that_held_something(self):
        """``aged`` counts the non-empty buckets that left the window."""
        window = BucketWindow(4.0, 4, 1)
        window.bucket(0.0)[0] += 1
        window.bucket(2.0)[0] += 1
        window.sums(3.9)

        assert 0 == window.aged

        window.sums(4.0)

        assert 1 == window.aged

        window.sums(100.0)

        assert 2 == window.aged

    def test_sums_before_any_count_fix_no_bucket(self):
        """A query on an empty window does not pin its newest bucket."""
        window = BucketWindow(1.0, 4, 1)

        assert [0] == list(window.sums(100.0))

        window.bucket(1.0)[0] += 1

        assert [1] == list(window.sums(1.0))

    def test_past_plus_newest_bucket_is_the_sum(self):
        """``past`` sums the older buckets; the newest is ``bucket``."""
        window = BucketWindow(4.0, 4, 2)
        window.bucket(0.0)[0] += 3
        newest = window.bucket(1.0)
        newest[1] += 1

        assert ([3, 0], [0, 1]) == (window.past, newest)
        assert [3, 1] == list(window.latest())

    def test_clear_forgets_counts_but_keeps_aged(self):
        """``clear`` empties the window; ``aged`` never decreases."""
        window = BucketWindow(1.0, 2, 1)
        window.bucket(0.0)[0] += 1
        window.sums(5.0)
        window.bucket(5.0)[0] += 1
        window.clear()

        assert [0] == list(window.sums(5.0))
        assert 1 == window.aged


class _Model:
    """Every count kept with its bucket number; the window by filtering."""

    def __init__(self, duration, buckets, fields):
        self.width = duration / buckets
        self.buckets = buckets
        self.fields = fields
        self.head = None
        self.counts = []  # (bucket number, field, amount)
        self.dropped = set()
        self.aged = 0

    def _move(self, now):
        index = math.floor(now / self.width)
        if self.head is None or index > self.head:
            self.head = index
        return self.head

    def _age(self):
        gone = {
            i
            for i, _, amount in self.counts
            if amount and i <= self.head - self.buckets
        }
        self.aged += len(gone - self.dropped)
        self.dropped |= gone

    def add(self, now, field, amount):
        index = self._move(now)
        self._age()
        self.counts.append((index, field, amount))

    def sums(self, now):
        if self.head is not None:
            self._move(now)
            self._age()
        return [
            sum(
                amount
                for i, f, amount in self.counts
                if f == field and i > self.head - self.buckets
            )
            for field in range(self.fields)
        ]

    def clear(self):
        self.head = None
        self.counts = []
        self.dropped = set()


_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "sums", "past", "clear"]),
        # Mostly forward, sometimes a long idle, sometimes backwards.
        st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.3, 1.0, 7.5, 1e6, -0.2]),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=200,
)


class TestAgainstModel:
    @given(
        duration=st.sampled_from([0.1, 1.0, 2.5, 30.0]),
        buckets=st.integers(min_value=1, max_value=12),
        start=st.sampled_from([0.0, 3.7, 1e6]),
        ops=_ops,
    )
    def test_same_sums_as_a_list_of_counts(
        self, duration, buckets, start, ops
    ):
        """The window sums and ages counts like a plain filtered list."""
        window = BucketWindow(duration, buckets, 3)
        model = _Model(duration, buckets, 3)
        now = start
        for op, dt, field, amount in ops:
            now = max(0.0, now + dt)
            if op == "add":
                window.bucket(now)[field] += amount
                model.add(now, field, amount)
            elif op == "past":
                newest = window.bucket(now)
                newest[field] += amount
                model.add(now, field, amount)
                assert model.sums(now) == [
                    p + n for p, n in zip(window.past, newest, strict=True)
                ]
            elif op == "clear":
                window.clear()
                model.clear()
            assert model.sums(now) == list(window.sums(now))
            assert model.aged == window.aged
