"""
Property tests of the limiters against their guarantees and simple models.

Each example drives a limiter on a `MockClock` through a random sequence of
(time advance, key, cost, timeout) steps and records the admissions with the
virtual time they happened at; the guarantees are then checked over every
span. Start times and rates are fractional on purpose (float dust).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwall import (
    CompositeLimiter,
    LeakyBucket,
    MockClock,
    RateLimitedError,
    SlidingWindow,
    TokenBucket,
)


TOL = 1e-6
SETTINGS = settings(max_examples=150, deadline=None)

keys = st.sampled_from(["a", "b", "c"])
advances = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    st.sampled_from([0.1, 0.3, 1 / 3, 0.7, 2.5]),
)
timeouts = st.one_of(
    st.none(),
    st.just(0.0),
    st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
)


def steps(max_cost):
    costs = st.one_of(
        st.just(1),
        st.sampled_from([0.3, 0.7, max_cost]),
        st.floats(min_value=0.01, max_value=max_cost, allow_nan=False),
    )
    return st.lists(
        st.tuples(advances, keys, costs, timeouts), min_size=1, max_size=60
    )


def drive(limiter, clock, plan):
    """Run the plan; return admissions as ``(time, key, cost)``."""
    admitted = []
    for advance, key, cost, timeout in plan:
        clock.advance(advance)
        if timeout == 0.0:
            if limiter.try_acquire(key, cost):
                admitted.append((clock.now(), key, cost))
            continue
        start = clock.now()
        try:
            waited = limiter.acquire(key, cost, timeout=timeout)
        except RateLimitedError as exc:
            refused = exc
        else:
            assert timeout is None or waited <= timeout + TOL
            admitted.append((clock.now(), key, cost))
            continue
        assert timeout is not None
        assert refused.retry_after > timeout
        assert start == clock.now()
    return admitted


def by_key(admitted):
    out = {}
    for t, key, cost in admitted:
        out.setdefault(key, []).append((t, cost))
    return out


def check_token_bound(rows, capacity, rate):
    """At most ``capacity + rate * T`` within any closed span of length T."""
    rows = sorted(rows)
    for i, (t0, _) in enumerate(rows):
        total = 0.0
        for t1, cost in rows[i:]:
            total += cost
            assert total <= capacity + rate * (t1 - t0) + TOL, (t0, t1)


def check_window_bound(rows, limit, window):
    """At most ``limit`` within any half-open span ``(t - window, t]``."""
    rows = sorted(rows)
    for t, _ in rows:
        inside = sum(c for s, c in rows if t - window + TOL < s <= t)
        assert inside <= limit + TOL, t


class TestTokenBucketProperties:
    @SETTINGS
    @given(
        capacity=st.sampled_from([1, 1.3, 2, 5]),
        rate=st.sampled_from([0.3, 1, 2.5, 7]),
        plan=st.data(),
    )
    def test_never_more_than_capacity_plus_refill(self, capacity, rate, plan):
        """Any span T admits at most capacity + refill_rate * T per key."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(capacity, rate, clock=clock)

        admitted = drive(bucket, clock, plan.draw(steps(capacity)))

        for rows in by_key(admitted).values():
            check_token_bound(rows, capacity, rate)

    @SETTINGS
    @given(
        plan=st.lists(
            st.tuples(advances, st.sampled_from([0.3, 0.7, 1.0])),
            max_size=80,
        )
    )
    def test_matches_reference_model(self, plan):
        """try_acquire agrees with a textbook token count (away from ties)."""
        capacity, rate = 1.3, 0.3
        clock = MockClock(start=100.0)
        bucket = TokenBucket(capacity, rate, clock=clock)
        tokens = capacity
        for advance, cost in plan:
            clock.advance(advance)
            tokens = min(capacity, tokens + rate * advance)
            actual = bucket.try_acquire(cost=cost)
            if tokens - cost > 1e-6:
                assert actual
            elif tokens - cost < -1e-6:
                assert not actual
            if actual:
                tokens -= cost

    @SETTINGS
    @given(plan=st.data())
    def test_shared_bucket_bound(self, plan):
        """per_key=False bounds the sum over every key."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(2, 0.7, per_key=False, clock=clock)

        admitted = drive(bucket, clock, plan.draw(steps(2)))

        check_token_bound([(t, c) for t, _, c in admitted], 2, 0.7)


class TestSlidingWindowProperties:
    @SETTINGS
    @given(
        limit=st.sampled_from([1, 2.1, 3, 5]),
        window=st.sampled_from([0.5, 1, 2.5, 10 / 3]),
        plan=st.data(),
    )
    def test_never_more_than_limit_in_any_window(self, limit, window, plan):
        """No half-open window of `window` seconds holds more than `limit`."""
        clock = MockClock(start=100.0)
        limiter = SlidingWindow(limit, window, clock=clock)

        admitted = drive(limiter, clock, plan.draw(steps(limit)))

        for rows in by_key(admitted).values():
            check_window_bound(rows, limit, window)

    @SETTINGS
    @given(
        plan=st.lists(
            st.tuples(advances, st.sampled_from([0.3, 0.7, 1.0, 2.0])),
            max_size=80,
        )
    )
    def test_matches_reference_model(self, plan):
        """try_acquire agrees with a brute-force window sum (off ties)."""
        limit, window = 2.1, 1.5
        clock = MockClock(start=100.0)
        limiter = SlidingWindow(limit, window, clock=clock)
        log = []
        for advance, cost in plan:
            clock.advance(advance)
            now = clock.now()
            inside = sum(c for t, c in log if t + window > now)
            actual = limiter.try_acquire(cost=cost)
            if limit - (inside + cost) > 1e-6:
                assert actual
            elif limit - (inside + cost) < -1e-6:
                assert not actual
            if actual:
                log.append((now, cost))


class TestLeakyBucketProperties:
    @SETTINGS
    @given(rate=st.sampled_from([0.3, 1, 3, 10]), plan=st.data())
    def test_admissions_spaced_by_cost_over_rate(self, rate, plan):
        """Consecutive admissions of a key are at least cost/rate apart."""
        clock = MockClock(start=100.0)
        bucket = LeakyBucket(rate, clock=clock)

        admitted = drive(bucket, clock, plan.draw(steps(3)))

        for rows in by_key(admitted).values():
            for (t0, c0), (t1, _) in itertools.pairwise(rows):
                assert t1 - t0 >= c0 / rate - TOL


class TestCompositeProperties:
    @SETTINGS
    @given(plan=st.data())
    def test_every_tier_keeps_its_bound(self, plan):
        """A composite admits nothing any one of its tiers would refuse."""
        clock = MockClock(start=100.0)
        user = TokenBucket(2, 1.3, clock=clock)
        glob = SlidingWindow(3, 2.5, per_key=False)
        limiter = CompositeLimiter(user, glob)

        admitted = drive(limiter, clock, plan.draw(steps(2)))

        for rows in by_key(admitted).values():
            check_token_bound(rows, 2, 1.3)
        check_window_bound([(t, c) for t, _, c in admitted], 3, 2.5)
        stats = (user.statistics(), glob.statistics())
        admitted_per_tier = [s.allowed + s.waited for s in stats]
        assert [len(admitted)] * 2 == admitted_per_tier


LIMITERS_FOR_RETRY_AFTER = [
    pytest.param(lambda clock: TokenBucket(1, 0.3, clock=clock), id="token"),
    pytest.param(
        lambda clock: SlidingWindow(1, 1.7, clock=clock), id="window"
    ),
    pytest.param(
        lambda clock: SlidingWindow(2, 1 / 3, clock=clock), id="window-third"
    ),
    pytest.param(
        lambda clock: CompositeLimiter(
            TokenBucket(1, 0.3), SlidingWindow(1, 0.7), clock=clock
        ),
        id="composite",
    ),
]


@pytest.mark.parametrize("start", [0.0, 0.1, 100.0, 1e6 + 0.37])
@pytest.mark.parametrize("build", LIMITERS_FOR_RETRY_AFTER)
def test_retry_after_is_exact_at_any_epoch(start, build):
    """Sleeping exactly retry_after always admits, whatever the clock's
    magnitude and the float dust of the window arithmetic."""
    clock = MockClock(start=start)
    limiter = build(clock)
    steps = [0.05, 0.01, 1 / 7, 0.2, 0.3]
    for i in range(500):
        try:
            limiter.acquire(cost=0.7, timeout=0)
        except RateLimitedError as exc:
            clock.advance(exc.retry_after)
            assert limiter.try_acquire(cost=0.7), (i, clock.now())
        clock.advance(steps[i % len(steps)])


QUICK_TAKERS = [
    pytest.param(lambda clock: TokenBucket(2, 1.3, clock=clock), id="token"),
    pytest.param(
        lambda clock: TokenBucket(1.3, 0.3, per_key=False, clock=clock),
        id="token-shared",
    ),
    pytest.param(
        lambda clock: TokenBucket(2, 1 / 3, max_keys=2, clock=clock),
        id="token-bounded",
    ),
    pytest.param(lambda clock: LeakyBucket(1.3, clock=clock), id="leaky"),
    pytest.param(
        lambda clock: SlidingWindow(2, 1.7, clock=clock), id="window"
    ),
    pytest.param(
        lambda clock: CompositeLimiter(TokenBucket(2, 1.3), clock=clock),
        id="composite",
    ),
]

quick_steps = st.lists(
    st.tuples(
        advances,
        keys,
        st.sampled_from(["grab", "grab", "try", "book"]),
        st.sampled_from([0.3, 0.7, 1, 1.3]),
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),
    ),
    min_size=1,
    max_size=80,
)


def _book(limiter, clock, key, cost, later):
    """Queue a waiter for ``key`` (a reservation ``later`` s from now)."""
    with limiter._lock:
        now = clock.now()
        state = limiter._state(key, now)
        policy = limiter._policy
        at = policy.earliest(state, now, cost, now + later)
        policy.take(state, now, cost, at)


@SETTINGS
@given(plan=quick_steps)
@pytest.mark.parametrize("build", QUICK_TAKERS)
def test_the_quick_take_decides_as_take(build, plan):
    """
    `_grab`, the pipeline's quick way in (written out for the token bucket,
    the hottest path there is), decides exactly as `_take`, which asks the
    policy, and leaves the same state behind: twin limiters, one asked
    through each, with waiters queued in between, agree on every step.
    """
    clocks = MockClock(start=100.37), MockClock(start=100.37)
    quick, slow = build(clocks[0]), build(clocks[1])
    composite = isinstance(quick, CompositeLimiter)
    for advance, key, op, cost, later in plan:
        for clock in clocks:
            clock.advance(advance)
        if op == "grab":
            assert quick._grab(key) is slow._take(key, None, None)
        elif op == "try":
            assert quick.try_acquire(key, cost) is slow.try_acquire(key, cost)
        elif not composite:
            _book(quick, clocks[0], key, cost, later)
            _book(slow, clocks[1], key, cost, later)
        assert quick.statistics() == slow.statistics()
        if isinstance(quick, TokenBucket):
            assert quick.tokens(key) == slow.tokens(key)
