"""
Per-key memory of the limiters: lossless eviction by default, compact keys.

A key whose state is back at full capacity owes nothing: every limiter drops
such keys lazily (no ``max_keys`` or ``ttl`` needed), and doing so must never
change a decision. The property test runs every plan twice, on a limiter
that sweeps at every new key and on a reference that never evicts, and
requires the same outcome at every step.
"""

from __future__ import annotations

import asyncio
import math
import tracemalloc
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwall import (
    LeakyBucket,
    MockClock,
    RateLimitedError,
    SlidingWindow,
    TokenBucket,
)
from stormwall._core import _keystore
from stormwall._core._limiters import BucketState, TokenBucketPolicy


KINDS = {
    "token": lambda clock, **kw: TokenBucket(2, 1.3, clock=clock, **kw),
    "leaky": lambda clock, **kw: LeakyBucket(1.3, clock=clock, **kw),
    "window": lambda clock, **kw: SlidingWindow(2, 1.5, clock=clock, **kw),
}


@pytest.mark.parametrize("max_keys", [None, 10**6])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_full_keys_are_dropped_by_default(kind, max_keys):
    """Keys back at full capacity do not pile up, with or without max_keys."""
    clock = MockClock(start=100.0)
    limiter = KINDS[kind](clock, max_keys=max_keys)
    peak = 0
    for i in range(20_000):
        assert limiter.try_acquire(f"user-{i}")
        clock.advance(2)  # every key is full again 2 s later
        peak = max(peak, limiter.statistics().keys)

    stats = limiter.statistics()
    assert peak <= 2 * _keystore._FLOOR
    assert stats.evicted >= 20_000 - peak
    assert 0 == stats.evicted_owing


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_owing_keys_are_kept(kind):
    """Keys that still owe are never dropped by the default eviction."""
    clock = MockClock(start=100.0)
    limiter = {
        "token": lambda: TokenBucket(1, 1 / 3600, clock=clock),
        "leaky": lambda: LeakyBucket(1 / 3600, clock=clock, capacity=0),
        "window": lambda: SlidingWindow(1, 3600, clock=clock),
    }[kind]()
    keys = [f"user-{i}" for i in range(5_000)]
    for key in keys:
        assert limiter.try_acquire(key)
        clock.advance(0.01)

    assert 5_000 == limiter.statistics().keys
    assert not any(limiter.try_acquire(key) for key in keys)
    assert 0 == limiter.statistics().evicted


def test_one_entry_window_key_under_250_bytes():
    """A sliding-window key holding one request costs under 250 bytes."""
    keys = [f"user-{i:07d}" for i in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        window = SlidingWindow(5, 3600)
        for key in keys:
            window.try_acquire(key)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()

    assert 20_000 == window.statistics().keys
    assert (after - before) / len(keys) < 250


def test_full_token_bucket_decides_like_a_fresh_one():
    """
    ``full`` holds only when a fresh bucket would decide alike.

    At ``now == tat`` near 2**30 s, the admission test of a request of the
    whole capacity rounds to 1.2e-7 s of wait: the stored bucket refuses
    what a fresh one admits, so forgetting it would change a decision.
    """
    policy = TokenBucketPolicy(3, 10)  # tau = 0.3 s
    now = 1073741823.9999999
    state = BucketState()
    state.tat = now

    stored = policy.admit(state, now, 3)
    fresh = policy.admit(BucketState(), now, 3)

    assert (stored > 0, fresh) == (True, 0.0)
    assert not policy.full(state, now)


def run_step(limiter, clock, step):
    """One step of a plan; its outcome, comparable across limiters."""
    advance, key, cost, timeout = step
    clock.advance(advance)
    if timeout == 0.0:
        return ("try", limiter.try_acquire(key, cost))
    try:
        waited = limiter.acquire(key, cost, timeout=timeout)
    except RateLimitedError as exc:
        return ("refused", exc.retry_after)
    return ("waited", waited, clock.now())


costs = st.one_of(
    st.just(1),
    st.sampled_from([0.3, 0.7, 2]),
    st.floats(min_value=0.01, max_value=2, allow_nan=False),
)
plans = st.lists(
    st.tuples(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0.0, max_value=4.0, allow_nan=False),
            st.sampled_from([0.1, 1 / 3, 1.5, 2.5]),
        ),
        st.sampled_from([f"k{i}" for i in range(8)]),
        costs,
        st.one_of(
            st.just(0.0),
            st.none(),
            st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
        ),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    bounded=st.booleans(),
    start=st.sampled_from([0.0, 100.0, 1073741823.5]),
    plan=plans,
)
def test_eviction_never_changes_a_decision(kind, bounded, start, plan):
    """Sweeping at every new key decides exactly as never evicting."""
    with mock.patch.object(_keystore, "_FLOOR", 1):
        clock = MockClock(start=start)
        limiter = KINDS[kind](clock, max_keys=10**6 if bounded else None)
    ref_clock = MockClock(start=start)
    reference = KINDS[kind](ref_clock)
    reference._store._mark = math.inf  # never a pass: no eviction at all

    with mock.patch.object(_keystore, "_FLOOR", 1):
        for step in plan:
            assert run_step(reference, ref_clock, step) == run_step(
                limiter, clock, step
            ), step
    assert 0 == reference.statistics().evicted
    assert 0 == limiter.statistics().evicted_owing


@pytest.mark.asyncio
async def test_key_with_a_waiter_is_never_dropped():
    """A key others wait on stays, however many keys are swept meanwhile."""
    clock = MockClock(start=100.0, autojump=False)
    with mock.patch.object(_keystore, "_FLOOR", 1):
        bucket = TokenBucket(1, 1, clock=clock)
        assert bucket.try_acquire("a")
        waiter = asyncio.create_task(bucket.acquire_async("a"))
        await asyncio.sleep(0)
        await clock.advance_async(0.5)
        for i in range(50):
            assert bucket.try_acquire(f"other-{i}")
        await clock.advance_async(0.5)
        assert 0.0 < await waiter
        for i in range(50, 100):
            assert bucket.try_acquire(f"other-{i}")

    # "a" was charged for the waiter's request at 101: it owes until 102.
    assert "a" in bucket._store._keys
    assert not bucket.try_acquire("a")
