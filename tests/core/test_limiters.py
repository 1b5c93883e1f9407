"""
Tests of the rate limiters: decisions, waiting, FIFO, refunds, events.

Time is a `MockClock` everywhere; no test sleeps for real beyond a few ms.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

from stormwall import (
    CompositeLimiter,
    ConfigError,
    EventBus,
    LeakyBucket,
    LimiterStatistics,
    MockClock,
    RateLimitedError,
    SlidingWindow,
    TokenBucket,
)
from stormwall._core._limiters import SLACK, rows
from stormwall.events import LimiterAllowed, LimiterRejected, LimiterWaited
from tests.support.bad_inputs_limiters import BAD_INPUTS


def wait_until(predicate, timeout=5.0):
    """Poll (real time) until ``predicate()``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        time.sleep(0.0005)


def recorder(bus):
    events = []
    bus.subscribe(events.append)
    return events


class TestValidation:
    @pytest.mark.parametrize(("build", "parameter"), BAD_INPUTS)
    def test_bad_constructor_input(self, build, parameter):
        """An out-of-domain constructor argument is a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            build()

        assert parameter == info.value.parameter

    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(lambda c: TokenBucket(2, 1, clock=c), id="token"),
            pytest.param(lambda c: LeakyBucket(2, clock=c), id="leaky"),
            pytest.param(lambda c: SlidingWindow(2, 1, clock=c), id="window"),
            pytest.param(
                lambda c: CompositeLimiter(TokenBucket(2, 1, clock=c)),
                id="composite",
            ),
        ],
    )
    @pytest.mark.parametrize(
        ("kwargs", "parameter"),
        [
            pytest.param({"cost": 0}, "cost", id="cost-zero"),
            pytest.param({"cost": -1}, "cost", id="cost-negative"),
            pytest.param({"cost": math.nan}, "cost", id="cost-nan"),
            pytest.param({"cost": math.inf}, "cost", id="cost-inf"),
            pytest.param({"cost": True}, "cost", id="cost-bool"),
            pytest.param({"cost": "1"}, "cost", id="cost-str"),
            pytest.param({"key": 1}, "key", id="key-int"),
            pytest.param({"key": None}, "key", id="key-none"),
            pytest.param({"timeout": -1}, "timeout", id="timeout-negative"),
            pytest.param({"timeout": math.nan}, "timeout", id="timeout-nan"),
            pytest.param({"timeout": "1"}, "timeout", id="timeout-str"),
        ],
    )
    def test_bad_call_input(self, make, kwargs, parameter):
        """Bad per-call arguments are ConfigErrors, and nothing is consumed."""
        clock = MockClock(start=100.0)
        limiter = make(clock)

        with pytest.raises(ConfigError) as info:
            limiter.acquire(**kwargs)
        if "timeout" not in kwargs:
            with pytest.raises(ConfigError):
                limiter.try_acquire(**kwargs)

        assert parameter == info.value.parameter
        assert 0 == limiter.statistics().allowed

    @pytest.mark.parametrize(
        "limiter",
        [
            pytest.param(TokenBucket(3, 1), id="token"),
            pytest.param(SlidingWindow(3, 1), id="window"),
            pytest.param(
                CompositeLimiter(TokenBucket(10, 1), SlidingWindow(3, 1)),
                id="composite",
            ),
        ],
    )
    def test_cost_above_capacity(self, limiter):
        """A cost the limiter can never grant is a ConfigError, not a wait."""
        with pytest.raises(ConfigError) as info:
            limiter.acquire(cost=3.5)

        assert "cost" == info.value.parameter

    def test_timeout_inf_means_no_limit(self):
        """An infinite timeout waits as long as needed, like None."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 0.5, clock=clock)
        bucket.acquire()

        assert 2.0 == bucket.acquire(timeout=math.inf)

    def test_leaky_bucket_accepts_any_finite_cost(self):
        """A leaky bucket schedules any finite cost: it just takes longer."""
        clock = MockClock(start=100.0)
        bucket = LeakyBucket(2, clock=clock)
        bucket.acquire(cost=10)

        assert 5.0 == bucket.acquire()


class TestTokenBucket:
    def test_burst_then_refill(self):
        """A full bucket admits `capacity` at once, then refills at rate."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(3, 2, clock=clock)

        burst = [bucket.try_acquire() for _ in range(4)]
        clock.advance(0.5)
        after = [bucket.try_acquire() for _ in range(2)]

        assert [True, True, True, False] == burst
        assert [True, False] == after

    def test_acquire_waits_exactly(self):
        """acquire waits exactly the time the missing tokens take to refill."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(2, 4, clock=clock)
        bucket.acquire(cost=2)

        waited = bucket.acquire(cost=1)

        assert 0.25 == waited
        assert 100.25 == clock.now()

    def test_timeout_zero_rejects_with_exact_retry_after(self):
        """timeout=0 never waits; retry_after is exact; nothing is used."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(2, 4, name="api", clock=clock)
        bucket.acquire("alice", cost=2)

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire("alice", cost=2, timeout=0)
        clock.advance(info.value.retry_after)

        assert 0.5 == info.value.retry_after
        assert "api" == info.value.limiter
        assert "alice" == info.value.key
        assert 100.5 == clock.now()
        assert bucket.try_acquire("alice", cost=2)

    def test_timeout_too_short_raises_at_once(self):
        """A wait longer than the timeout raises at once, consuming nothing."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire()

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire(timeout=0.99)

        assert 100.0 == clock.now()
        assert 1.0 == info.value.retry_after
        assert 1.0 == bucket.acquire(timeout=1.0)

    def test_float_dust_never_loops(self):
        """Sleeping the advertised retry_after admits, fractional rates too."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1.3, 0.3, clock=clock)
        admitted = 0
        tries = 0
        while admitted < 200:
            tries += 1
            try:
                bucket.acquire(cost=0.7, timeout=0)
                admitted += 1
            except RateLimitedError as exc:
                retry_after = exc.retry_after
                clock.advance(retry_after)
                assert retry_after > 0
        elapsed = clock.now() - 100.0

        # At most one refusal per admission: no spinning on 1e-16 waits.
        assert tries <= 2 * admitted
        assert admitted * 0.7 <= 1.3 + 0.3 * elapsed + 1e-6

    def test_float_dust_with_waits(self):
        """Many fractional waits add up to exactly the arithmetic, no loop."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 0.3, clock=clock)

        total = sum(bucket.acquire(cost=0.7) for _ in range(300))

        assert math.isclose((300 * 0.7 - 1) / 0.3, total, rel_tol=1e-9)

    def test_keys_are_independent(self):
        """Each key has its own bucket by default."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, clock=clock)

        results = [bucket.try_acquire(k) for k in ("a", "b", "a", "b")]

        assert [True, True, False, False] == results
        assert 2 == bucket.statistics().keys

    def test_per_key_false_shares_one_bucket(self):
        """per_key=False is one global bucket; errors still name the key."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(2, 1, per_key=False, clock=clock)
        bucket.acquire("a")
        bucket.acquire("b")

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire("c", timeout=0)

        assert "c" == info.value.key
        assert 1 == bucket.statistics().keys

    def test_reset_one_key_and_all(self):
        """reset(key) refills one key; reset() refills every key."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire("a")
        bucket.acquire("b")

        bucket.reset("a")
        a_after_reset = bucket.try_acquire("a")
        b_before = bucket.try_acquire("b")
        bucket.reset()
        b_after = bucket.try_acquire("b")

        assert (True, False, True) == (a_after_reset, b_before, b_after)

    def test_tokens(self):
        """tokens() reports what is available, negative while owing."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(4, 2, clock=clock)
        bucket.acquire(cost=3)

        assert 1.0 == bucket.tokens()
        clock.advance(0.25)
        assert 1.5 == bucket.tokens()
        assert 4.0 == bucket.tokens("other")

    def test_statistics(self):
        """statistics() counts allowed, waited and rejected requests."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, name="s", clock=clock)
        bucket.acquire()
        bucket.acquire()
        bucket.try_acquire()

        expected = LimiterStatistics(
            limiter="s",
            keys=1,
            allowed=1,
            waited=1,
            rejected=1,
            cancelled=0,
            waiting=0,
            evicted=0,
            evicted_owing=0,
        )
        assert expected == bucket.statistics()

    def test_properties_and_repr(self):
        """The configuration is readable back."""
        bucket = TokenBucket(10, 2.5, name="api")

        assert (10.0, 2.5) == (bucket.capacity, bucket.refill_rate)
        assert "TokenBucket(10, 2.5, name='api')" == repr(bucket)
        assert ("api",) == bucket._names()

    @pytest.mark.asyncio
    async def test_acquire_async(self):
        """acquire_async waits like acquire, in virtual time."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 2, clock=clock)

        first = await bucket.acquire_async()
        second = await bucket.acquire_async()

        assert (0.0, 0.5) == (first, second)

    @pytest.mark.asyncio
    async def test_acquire_async_timeout(self):
        """acquire_async raises at once when the wait exceeds the timeout."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 2, clock=clock)
        await bucket.acquire_async()

        with pytest.raises(RateLimitedError) as info:
            await bucket.acquire_async(timeout=0.1)

        assert 0.5 == info.value.retry_after
        assert 100.0 == clock.now()


class TestLeakyBucket:
    def test_spacing(self):
        """Admitted calls are spaced exactly 1/rate apart; no burst."""
        clock = MockClock(start=100.0)
        bucket = LeakyBucket(4, clock=clock)
        times = []
        for _ in range(5):
            bucket.acquire()
            times.append(clock.now())

        assert [100.0, 100.25, 100.5, 100.75, 101.0] == times

    def test_no_burst_after_idle(self):
        """After an idle spell only one call goes at once."""
        clock = MockClock(start=100.0)
        bucket = LeakyBucket(1, clock=clock)
        clock.advance(60)

        assert [True, False] == [bucket.try_acquire() for _ in range(2)]

    def test_capacity_zero_nobody_waits(self):
        """capacity=0: a call that would wait is refused at once."""
        clock = MockClock(start=100.0)
        bucket = LeakyBucket(2, capacity=0, clock=clock)
        bucket.acquire()

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire()

        assert 0.5 == info.value.retry_after
        assert 100.0 == clock.now()

    def test_capacity_bounds_waiters(self):
        """capacity=n lets n callers wait; the next is refused at once."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = LeakyBucket(1, capacity=2, clock=clock)
        bucket.acquire()
        threads = [
            threading.Thread(target=bucket.acquire, daemon=True)
            for _ in range(2)
        ]
        for n, t in enumerate(threads, 1):
            t.start()
            wait_until(lambda n=n: bucket.statistics().waiting == n)

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire()
        clock.advance(3)
        for t in threads:
            t.join(5)

        assert 3.0 == info.value.retry_after
        assert 2 == bucket.statistics().waited
        assert not any(t.is_alive() for t in threads)

    def test_properties_and_repr(self):
        """The configuration is readable back."""
        bucket = LeakyBucket(5, capacity=3)

        assert (5.0, 3) == (bucket.rate, bucket.capacity)
        assert "LeakyBucket(5, capacity=3, name='leaky_bucket')" == repr(
            bucket
        )


class TestSlidingWindow:
    def test_exact_window(self):
        """At most `limit` per window; a slot frees when its call expires."""
        clock = MockClock(start=100.0)
        window = SlidingWindow(3, 10, clock=clock)
        window.acquire()
        clock.advance(4)
        window.acquire()
        window.acquire()

        with pytest.raises(RateLimitedError) as info:
            window.acquire(timeout=0)
        waited = window.acquire()

        assert 6.0 == info.value.retry_after
        assert 6.0 == waited
        assert 110.0 == clock.now()

    def test_cost_needs_several_expiries(self):
        """A costly request waits until enough earlier cost has expired."""
        clock = MockClock(start=100.0)
        window = SlidingWindow(5, 10, clock=clock)
        for step in range(5):
            window.acquire()
            if step < 4:
                clock.advance(1)

        assert 8.0 == window.acquire(cost=3)

    def test_fractional_costs(self):
        """Fractional costs sum without float dust refusing a fitting one."""
        clock = MockClock(start=100.0)
        window = SlidingWindow(2.1, 1, clock=clock)

        results = [window.try_acquire(cost=0.7) for _ in range(4)]

        assert [True, True, True, False] == results

    def test_properties_and_repr(self):
        """The configuration is readable back."""
        window = SlidingWindow(5, 60)

        assert (5.0, 60.0) == (window.limit, window.window)
        assert "SlidingWindow(5, 60, name='sliding_window')" == repr(window)


class TestCompositeLimiter:
    def test_global_tier_caps_all_users(self):
        """50 users through a global tier of capacity 2: exactly 2 admitted."""
        clock = MockClock(start=100.0)
        per_user = TokenBucket(5, 1, name="user", clock=clock)
        global_ = TokenBucket(2, 0.001, per_key=False, name="global")
        limiter = CompositeLimiter(per_user, global_)

        admitted = [limiter.try_acquire(f"user-{i}") for i in range(50)]

        assert 2 == sum(admitted)
        assert 48 == limiter.statistics().rejected
        # Every user but the first two still has a full personal bucket.
        assert 5.0 == per_user.tokens("user-10")

    def test_rejection_refunds_other_tiers(self):
        """A tier's refusal leaves every other tier's tokens untouched."""
        clock = MockClock(start=100.0)
        per_user = TokenBucket(1, 1, name="user", clock=clock)
        global_ = TokenBucket(10, 1, per_key=False, name="global")
        limiter = CompositeLimiter(global_, per_user)
        limiter.acquire("alice")

        with pytest.raises(RateLimitedError) as info:
            limiter.acquire("alice", timeout=0.5)

        assert "user" == info.value.limiter
        assert 1.0 == info.value.retry_after
        assert 9.0 == global_.tokens()
        assert 0 == global_.statistics().rejected
        assert 1 == per_user.statistics().rejected

    def test_wait_is_max_across_tiers(self):
        """The composite waits for its slowest tier, booked in every tier."""
        clock = MockClock(start=100.0)
        fast = TokenBucket(1, 4, name="fast", clock=clock)
        slow = TokenBucket(1, 1, name="slow")
        limiter = CompositeLimiter(fast, slow)
        limiter.acquire()

        waited = limiter.acquire()

        assert 1.0 == waited
        assert 101.0 == clock.now()
        # Both tiers were charged at 101: both are empty now.
        assert (0.0, 0.0) == (fast.tokens(), slow.tokens())

    def test_try_acquire_all_or_nothing(self):
        """try_acquire takes from every tier or from none."""
        clock = MockClock(start=100.0)
        a = SlidingWindow(5, 10, name="a", clock=clock)
        b = TokenBucket(1, 1, name="b")
        limiter = CompositeLimiter(a, b)

        results = [limiter.try_acquire() for _ in range(3)]

        assert [True, False, False] == results
        assert 1 == a.statistics().allowed
        # The window holds only the one admitted request.
        assert 1 == len(rows(a._store._keys["default"]))

    def test_events_per_tier(self):
        """Each tier reports under its own name; a refunded one is silent."""
        bus = EventBus()
        events = recorder(bus)
        clock = MockClock(start=100.0)
        user = TokenBucket(1, 1, name="user", clock=clock)
        glob = TokenBucket(5, 1, name="global", per_key=False)
        limiter = CompositeLimiter(user, glob, bus=bus)
        limiter.try_acquire("bob")
        events.clear()

        limiter.try_acquire("bob")
        rejected = list(events)
        events.clear()
        limiter.acquire("bob")

        assert [("user", "bob", 1.0)] == [
            (e.limiter, e.key, e.retry_after) for e in rejected
        ]
        assert {"user", "global"} == {e.limiter for e in events}
        assert all(isinstance(e, LimiterWaited) for e in events)
        assert ("user", "global") == limiter._names()

    def test_clock_adopted_by_tiers(self):
        """Tiers without a clock adopt the composite's."""
        clock = MockClock(start=100.0)
        a = TokenBucket(1, 1)
        CompositeLimiter(a, clock=clock)

        assert clock is a.clock

    def test_reset_resets_every_tier(self):
        """reset() on the composite refills every tier."""
        clock = MockClock(start=100.0)
        limiter = CompositeLimiter(
            TokenBucket(1, 1, clock=clock), SlidingWindow(1, 60)
        )
        limiter.acquire()
        limiter.reset()

        assert limiter.try_acquire()

    @pytest.mark.asyncio
    async def test_async_wait(self):
        """acquire_async on a composite waits for the slowest tier."""
        clock = MockClock(start=100.0)
        limiter = CompositeLimiter(
            TokenBucket(1, 2, clock=clock), LeakyBucket(1)
        )
        await limiter.acquire_async()

        assert 1.0 == await limiter.acquire_async()
        assert 1 == limiter.statistics().waited


class TestFifoAndRefunds:
    def test_threads_served_in_arrival_order(self):
        """Waiting threads are served in the order they arrived."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire()
        order = []

        def worker(name):
            bucket.acquire()
            order.append((name, clock.now()))

        threads = []
        for name in "abcd":
            t = threading.Thread(target=worker, args=(name,), daemon=True)
            t.start()
            threads.append(t)
            n = len(threads)
            wait_until(lambda n=n: bucket.statistics().waiting == n)
        for step in range(1, 5):
            clock.advance(1)
            wait_until(lambda s=step: len(order) == s)
        for t in threads:
            t.join(5)

        assert [("a", 101.0), ("b", 102.0), ("c", 103.0), ("d", 104.0)] == (
            order
        )

    def test_newcomer_does_not_overtake(self):
        """A cheap newcomer queues behind an expensive waiter."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(3, 1, clock=clock)
        bucket.acquire(cost=3)
        t = threading.Thread(
            target=bucket.acquire, kwargs={"cost": 3}, daemon=True
        )
        t.start()
        wait_until(lambda: bucket.statistics().waiting == 1)
        clock.advance(2)

        with pytest.raises(RateLimitedError) as info:
            bucket.acquire(cost=1, timeout=0)
        clock.advance(1)
        t.join(5)

        assert 2.0 == info.value.retry_after

    @pytest.mark.asyncio
    async def test_tasks_served_in_arrival_order(self):
        """Waiting tasks are served in arrival order."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = SlidingWindow(1, 1, clock=clock)
        await bucket.acquire_async()
        order = []

        async def worker(name):
            await bucket.acquire_async()
            order.append(name)

        tasks = [asyncio.create_task(worker(n)) for n in "abc"]
        await asyncio.sleep(0)
        for _ in range(3):
            await clock.advance_async(1)
        await asyncio.gather(*tasks)

        assert ["a", "b", "c"] == order

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(lambda c: TokenBucket(1, 1, clock=c), id="token"),
            pytest.param(lambda c: LeakyBucket(1, clock=c), id="leaky"),
            pytest.param(lambda c: SlidingWindow(1, 1, clock=c), id="window"),
            pytest.param(
                lambda c: CompositeLimiter(
                    TokenBucket(1, 1, clock=c), SlidingWindow(1, 1)
                ),
                id="composite",
            ),
        ],
    )
    async def test_cancel_refunds_and_next_served_earlier(self, make):
        """A cancelled waiter is refunded; the next one goes sooner."""
        clock = MockClock(start=100.0, autojump=False)
        limiter = make(clock)
        await limiter.acquire_async()
        first = asyncio.create_task(limiter.acquire_async())
        await asyncio.sleep(0)
        second = asyncio.create_task(limiter.acquire_async())
        await asyncio.sleep(0)

        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await clock.advance_async(1)

        assert second.done()
        assert 1.0 == second.result()
        assert 0 == limiter.statistics().waiting
        assert 1 == limiter.statistics().cancelled

    @pytest.mark.asyncio
    async def test_cancel_after_due_consumes(self):
        """A waiter cancelled once its time came keeps nothing to refund."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire()
        task = asyncio.create_task(bucket.acquire_async())
        await asyncio.sleep(0)
        clock.advance(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert not bucket.try_acquire()

    def test_interrupted_thread_refunds(self):
        """Any BaseException during a sync wait refunds the reservation."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire()

        class Boom(BaseException):
            pass

        def explode():
            raise Boom

        # A timer due before the reservation interrupts the sleeper.
        from stormwall._clock import call_at

        call_at(clock, 100.5, explode)
        with pytest.raises(Boom):
            bucket.acquire()

        assert 100.5 == clock.now()
        assert 0.5 == bucket.acquire()
        assert 1 == bucket.statistics().cancelled

    def test_refund_moves_later_waiters_earlier(self):
        """A refund ahead wakes the waiters behind to go at their new time."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(2, 1, clock=clock)
        bucket.acquire(cost=2)
        done = []

        def worker():
            done.append(bucket.acquire(cost=1))

        from stormwall._core._limiters import Reservation

        # Book a reservation by hand ahead of the thread, then cancel it.
        with bucket._lock:
            state = bucket._state("default", clock.now())
            at = bucket._policy.earliest(state, 100.0, 2, -math.inf)
            res = bucket._policy.take(state, 100.0, 2, at)
        assert isinstance(res, Reservation)
        t = threading.Thread(target=worker, daemon=True)
        t.start()
        wait_until(lambda: bucket.statistics().waiting == 1)
        with bucket._lock:
            later = bucket._policy.refund(state, res, clock.now())
        from stormwall._limiters import _notify

        _notify(later)
        clock.advance(1)
        t.join(5)

        assert [1.0] == done

    def test_timeout_is_never_exceeded(self):
        """acquire(timeout=t) waits at most t, or raises without waiting."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(2, 0.3, clock=clock)
        for timeout in (0.0, 0.5, 1.0, 2.5, 5.0, 10.0):
            start = clock.now()
            try:
                waited = bucket.acquire(cost=1.5, timeout=timeout)
            except RateLimitedError:
                waited = clock.now() - start
                assert 0.0 == waited
            assert waited <= timeout

    def test_reset_releases_waiters(self):
        """reset() lets queued callers go at once."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(1, 0.001, clock=clock)
        bucket.acquire()
        t = threading.Thread(target=bucket.acquire, daemon=True)
        t.start()
        wait_until(lambda: bucket.statistics().waiting == 1)

        bucket.reset()
        t.join(5)

        assert not t.is_alive()
        assert 100.0 == clock.now()


class TestConcurrency:
    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(
                lambda c: TokenBucket(123_456, 1, clock=c), id="token"
            ),
            pytest.param(
                lambda c: SlidingWindow(123_456, 60, clock=c), id="window"
            ),
        ],
    )
    def test_threads_admit_exactly_the_arithmetic(self, make):
        """8 threads x 50,000 try_acquire admit exactly the capacity."""
        clock = MockClock(start=100.0)
        limiter = make(clock)
        counts = [0] * 8

        def worker(i):
            n = 0
            try_acquire = limiter.try_acquire
            for _ in range(50_000):
                n += try_acquire()
            counts[i] = n

        threads = [
            threading.Thread(target=worker, args=(i,), daemon=True)
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

        assert not any(t.is_alive() for t in threads)
        assert 123_456 == sum(counts)
        stats = limiter.statistics()
        assert (123_456, 400_000 - 123_456) == (stats.allowed, stats.rejected)

    def test_reset_and_eviction_race_without_deadlock(self):
        """reset(), eviction and waiting acquisitions never deadlock."""
        bucket = TokenBucket(2, 2000, max_keys=4, ttl=0.001)
        window = SlidingWindow(2, 0.002, max_keys=4, ttl=0.001)
        stop = threading.Event()
        errors = []

        def acquirer(limiter, seed):
            i = seed
            try:
                while not stop.is_set():
                    i += 1
                    try:
                        limiter.acquire(f"k{i % 7}", timeout=0.002)
                    except Exception as exc:
                        if not isinstance(exc, RateLimitedError):
                            raise
            except Exception as exc:
                errors.append(exc)

        def resetter(limiter):
            i = 0
            while not stop.is_set():
                i += 1
                limiter.reset(None if i % 3 else f"k{i % 7}")
                time.sleep(0.0002)

        threads = [
            threading.Thread(target=acquirer, args=(lim, s), daemon=True)
            for lim in (bucket, window)
            for s in range(3)
        ] + [
            threading.Thread(target=resetter, args=(lim,), daemon=True)
            for lim in (bucket, window)
        ]
        for t in threads:
            t.start()
        time.sleep(0.4)
        stop.set()
        for t in threads:
            t.join(10)

        assert not [t for t in threads if t.is_alive()], "deadlock"
        assert [] == errors
        assert 0 == bucket.statistics().waiting
        assert 0 == window.statistics().waiting
        assert bucket.statistics().keys <= 4


class TestMixedThreadsAndTasks:
    @pytest.mark.asyncio
    async def test_thread_and_task_share_a_bucket(self):
        """A thread and a task wait on one bucket in real time, FIFO."""
        # 50 ms between the two grants: a thread woken at its grant still
        # appends first on a loaded machine (2.5 ms was seen to lose).
        bucket = TokenBucket(1, 20)
        bucket.acquire()
        order = []

        def in_thread():
            bucket.acquire()
            order.append("thread")

        thread = threading.Thread(target=in_thread, daemon=True)
        thread.start()
        wait_until(lambda: bucket.statistics().waiting == 1)
        waited = await bucket.acquire_async()
        order.append("task")
        thread.join(5)

        assert ["thread", "task"] == order
        assert 0 < waited < 1.0

    @pytest.mark.asyncio
    async def test_task_cancel_wakes_thread_early(self):
        """A task cancelled ahead of a waiting thread lets it go sooner."""
        clock = MockClock(start=100.0, autojump=False)
        bucket = TokenBucket(1, 1, clock=clock)
        bucket.acquire()
        task = asyncio.create_task(bucket.acquire_async())
        await asyncio.sleep(0)
        done = []
        thread = threading.Thread(
            target=lambda: done.append(bucket.acquire()), daemon=True
        )
        thread.start()
        wait_until(lambda: bucket.statistics().waiting == 2)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        clock.advance(1)
        thread.join(5)

        assert [1.0] == done


class TestEviction:
    @pytest.mark.slow
    def test_million_keys_bounded(self):
        """1,000,000 keys, max_keys=100,000: bounded, evictions counted."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, max_keys=100_000, clock=clock)
        store = bucket._store
        peak = 0
        try_acquire = bucket.try_acquire
        for i in range(1_000_000):
            try_acquire(str(i))
            if i % 50_000 == 0:
                peak = max(peak, len(store))

        stats = bucket.statistics()
        assert 100_000 == max(peak, stats.keys)
        assert 900_000 == stats.evicted
        # Each evicted key had just spent its only token: all owed.
        assert 900_000 == stats.evicted_owing

    def test_lru_keeps_recently_used(self):
        """The least recently used key is the one evicted."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, max_keys=2, clock=clock)
        bucket.try_acquire("a")
        bucket.try_acquire("b")
        bucket.try_acquire("a")
        bucket.try_acquire("c")

        assert not bucket.try_acquire("a")
        assert ["a", "c"] == sorted(bucket._store._keys)

    def test_full_key_eviction_not_owing(self):
        """Evicting a key back at full capacity is not counted as owing."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 1, max_keys=1, clock=clock)
        bucket.try_acquire("a")
        clock.advance(5)
        bucket.try_acquire("b")

        stats = bucket.statistics()
        assert (1, 0) == (stats.evicted, stats.evicted_owing)

    def test_ttl_is_lossless(self):
        """An idle key is dropped by ttl only once it is full again."""
        clock = MockClock(start=100.0)
        bucket = TokenBucket(10, 1, ttl=1, clock=clock)
        bucket.acquire("a", cost=10)
        clock.advance(2)
        bucket.try_acquire("other")
        kept = bucket.statistics().keys
        # Still owing: the next decision for "a" must remember its debt.
        tokens = bucket.tokens("a")
        clock.advance(10)
        bucket.try_acquire("other")
        bucket.try_acquire("other2")

        assert 2 == kept
        assert 2.0 == tokens
        assert "a" not in bucket._store._keys
        assert 0 == bucket.statistics().evicted_owing

    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(lambda c: LeakyBucket(1, ttl=5, clock=c), id="leaky"),
            pytest.param(
                lambda c: SlidingWindow(1, 10, ttl=5, clock=c), id="window"
            ),
        ],
    )
    def test_ttl_other_limiters(self, make):
        """Leaky buckets and windows are ttl-evicted once they hold nothing."""
        clock = MockClock(start=100.0)
        limiter = make(clock)
        limiter.acquire("a")
        clock.advance(6)
        limiter.try_acquire("b")
        # The window still holds "a" (10 s): a leaky bucket is long idle.
        kept_at_6 = "a" in limiter._store._keys
        clock.advance(5)
        limiter.try_acquire("c")
        limiter.try_acquire("d")

        assert "a" not in limiter._store._keys
        assert kept_at_6 is isinstance(limiter, SlidingWindow)


class TestEvents:
    def test_allowed_waited_rejected(self):
        """A recorder sees each decision with the right fields."""
        bus = EventBus()
        events = recorder(bus)
        clock = MockClock(start=100.0)
        bucket = TokenBucket(1, 2, name="api", clock=clock, bus=bus)

        bucket.try_acquire("k")
        bucket.try_acquire("k")
        bucket.acquire("k")
        with pytest.raises(RateLimitedError):
            bucket.acquire("k", cost=1, timeout=0.1)

        assert [
            LimiterAllowed(time=100.0, key="k", limiter="api", cost=1),
            LimiterRejected(
                time=100.0, key="k", limiter="api", retry_after=0.5, cost=1
            ),
            LimiterWaited(
                time=100.5, key="k", limiter="api", waited=0.5, cost=1
            ),
            LimiterRejected(
                time=100.5, key="k", limiter="api", retry_after=0.5, cost=1
            ),
        ] == events

    def test_shared_bucket_events_carry_key(self):
        """Events of a per_key=False limiter carry the caller's key."""
        bus = EventBus()
        events = recorder(bus)
        bucket = TokenBucket(
            1, 1, per_key=False, clock=MockClock(start=100.0), bus=bus
        )

        bucket.try_acquire("alice")
        bucket.try_acquire("bob")

        assert ["alice", "bob"] == [e.key for e in events]

    def test_context_stamps_call_identity(self):
        """Inside a call, events carry the executor's identity and bus."""
        from stormwall._component import CallContext

        bus = EventBus()
        events = recorder(bus)
        bucket = TokenBucket(1, 1, clock=MockClock(start=100.0))
        ctx = CallContext("svc", "user:1", 7, bus, attempt=1)

        bucket._acquire("user:1", 1, None, ctx)

        assert [("svc", "user:1", 7, 1)] == [
            (e.executor, e.key, e.call_id, e.attempt) for e in events
        ]

    def test_no_subscriber_builds_nothing(self):
        """Without subscribers the limiter emits nothing (and is cheap)."""
        bus = EventBus()
        bucket = TokenBucket(1, 1, clock=MockClock(start=100.0), bus=bus)

        assert bucket.try_acquire()
        assert not bucket.try_acquire()
        assert 0 == bus.statistics().handler_errors


class TestSlack:
    def test_slack_is_tiny(self):
        """The float tolerance is far below any meaningful wait."""
        assert SLACK <= 1e-9


class TestAvailable:
    """What the permits gauge reads: grantable now, read-only."""

    @pytest.mark.parametrize(
        ("make", "spend", "expected"),
        [
            pytest.param(lambda c: TokenBucket(10, 1, clock=c), 4, 6, id="tb"),
            pytest.param(
                lambda c: SlidingWindow(10, 5, clock=c), 4, 6, id="window"
            ),
            pytest.param(lambda c: LeakyBucket(1, clock=c), 1, 0, id="leaky"),
        ],
    )
    def test_per_key_and_read_only(self, make, spend, expected):
        """A key's permits after spending some; an unknown key is full and
        is not created by the look; no key on a per-key limiter: None."""
        clock = MockClock()
        limiter = make(clock)
        assert limiter.try_acquire("k", cost=spend)

        assert expected == pytest.approx(limiter._available("k"))
        assert limiter._available(None) is None
        full = limiter._available("new")
        assert full == (1.0 if isinstance(limiter, LeakyBucket) else 10.0)
        assert 1 == limiter.statistics().keys

    def test_window_room_comes_back_as_requests_leave(self):
        """A sliding window's room grows back as its requests expire."""
        clock = MockClock()
        window = SlidingWindow(10, 5, per_key=False, clock=clock)
        window.try_acquire("k", cost=4)
        clock.advance(3)
        window.try_acquire("k", cost=5)

        assert 1 == window._available(None)
        clock.advance(2)
        assert 5 == window._available(None)

    def test_owing_bucket_shows_zero(self):
        """A token bucket owing permits shows 0, never a negative count."""
        clock = MockClock()
        bucket = TokenBucket(2, 1, per_key=False, clock=clock)
        bucket.try_acquire("k", cost=2)
        bucket.acquire("k", cost=2)  # waits, leaving the bucket owing

        assert 0 <= bucket._available(None)
