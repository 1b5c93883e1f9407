"""
The virtual-time event loop and executors keeping time on it.

`stormwall.sim.run_virtual` runs asyncio code in virtual time (the loop's
clock jumps when every task waits); `keeping_time` has an executor built
with the default clock, and its breaker, limiter, bulkhead and retry
budget, keep time on that loop for a block, then on their own again.
Time-dependent async behaviour is tested here with real ``asyncio.sleep``
in the protected functions, which `MockClock` cannot virtualise.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from stormwall import (
    AsyncResilientExecutor,
    AttemptTimeoutError,
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    CompositeLimiter,
    ConfigError,
    MockClock,
    MonotonicClock,
    RateLimitedError,
    RetryBudget,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
    sim,
)
from stormwall.sim import current_clock, keeping_time, run_virtual


class Boom(Exception):
    pass


async def fail():
    raise Boom


async def ok():
    return "ok"


class TestVirtualLoop:
    def test_an_hour_of_sleep_takes_no_real_time(self):
        """asyncio.sleep(3600) returns at once, with the loop's time moved."""

        async def main():
            loop = asyncio.get_running_loop()
            await asyncio.sleep(3600)
            return loop.time(), loop.os_waits, loop.jumps

        started = time.perf_counter()
        now, os_waits, jumps = run_virtual(main)

        assert 3600.0 == now
        assert 0 == os_waits
        assert 1 == jumps
        assert time.perf_counter() - started < 0.5

    def test_tasks_wake_in_deadline_order(self):
        """Concurrent sleepers wake in virtual-deadline order."""
        woken = []

        async def sleeper(seconds):
            await asyncio.sleep(seconds)
            woken.append((seconds, asyncio.get_running_loop().time()))

        async def main():
            await asyncio.gather(*(sleeper(s) for s in (3.0, 1.0, 2.0)))

        run_virtual(main)

        assert [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)] == woken

    def test_asyncio_timeout_fires_in_virtual_time(self):
        """asyncio.timeout cancels at the virtual deadline."""

        async def main():
            loop = asyncio.get_running_loop()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(5):
                    await asyncio.sleep(10)
            return loop.time()

        assert 5.0 == run_virtual(main)

    def test_current_clock_reads_the_loop(self):
        """current_clock() is a Clock whose now() is the loop's time."""

        async def main():
            clock = current_clock()
            await clock.sleep_async(2.5)
            clock.sleep(0.5)  # a blocking sleep blocks the loop: time moves
            return clock.now(), asyncio.get_running_loop().time()

        assert (3.0, 3.0) == run_virtual(main)

    def test_current_clock_needs_a_virtual_loop(self):
        """Outside a virtual loop there is no virtual clock."""

        async def main():
            current_clock()

        with pytest.raises(RuntimeError, match="run_virtual"):
            asyncio.run(main())

    def test_run_virtual_refuses_a_non_callable(self):
        """run_virtual takes a coroutine function, not a coroutine."""
        with pytest.raises(ConfigError) as info:
            run_virtual(42)

        assert "fn" == info.value.parameter


class TestKeepingTime:
    def test_breaker_recovery_timeout_passes_in_virtual_seconds(self):
        """An open breaker turns half-open after recovery_timeout, virtual."""
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=30.0)
        executor = AsyncResilientExecutor("db", circuit_breaker=breaker)

        async def main():
            with keeping_time([executor], current_clock()):
                with pytest.raises(Boom):
                    await executor.run("k", fail)
                await asyncio.sleep(29.5)
                with pytest.raises(CircuitOpenError) as info:
                    await executor.run("k", ok)
                assert 0.5 == pytest.approx(info.value.retry_after)
                await asyncio.sleep(0.5)
                return await executor.run("k", ok), breaker.state

        started = time.perf_counter()
        assert ("ok", CircuitState.CLOSED) == run_virtual(main)
        assert time.perf_counter() - started < 0.5

    def test_bucket_refill_passes_in_virtual_seconds(self):
        """A token bucket refills at refill_rate per virtual second."""
        bucket = TokenBucket(capacity=1, refill_rate=0.1)
        executor = AsyncResilientExecutor(
            "api", limiter=bucket, limiter_timeout=0
        )
        waiting = AsyncResilientExecutor("api-wait", limiter=bucket)

        async def main():
            loop = asyncio.get_running_loop()
            with keeping_time([executor, waiting], current_clock()):
                await executor.run("k", ok)
                with pytest.raises(RateLimitedError) as info:
                    await executor.run("k", ok)
                assert 10.0 == pytest.approx(info.value.retry_after)
                await waiting.run("k", ok)  # waits for its token
                return loop.time()

        assert 10.0 == pytest.approx(run_virtual(main))

    def test_budget_window_passes_in_virtual_seconds(self):
        """A retry budget's window ages calls out after ttl virtual seconds."""
        budget = RetryBudget(ratio=0.5, min_per_second=0, ttl=10.0)
        executor = AsyncResilientExecutor(
            "api",
            retry_policy=RetryPolicy(
                max_attempts=2, base_delay=0, budget=budget
            ),
        )

        async def main():
            with keeping_time([executor], current_clock()):
                for _ in range(4):
                    with pytest.raises(Boom):
                        await executor.run("k", fail)
                during = budget.statistics()
                await asyncio.sleep(10.0)
                after = budget.statistics()
            return during, after

        during, after = run_virtual(main)

        assert (4, 2, 2) == (during.calls, during.retries, during.total_denied)
        assert (0, 0, 4) == (after.calls, after.retries, after.total_calls)

    def test_attempt_timeout_fires_in_virtual_seconds(self):
        """A per-attempt timeout cancels a slow attempt at virtual 5 s."""
        executor = AsyncResilientExecutor("api", timeout=5.0)

        async def slow():
            await asyncio.sleep(60)

        async def main():
            loop = asyncio.get_running_loop()
            with (
                keeping_time([executor], current_clock()),
                pytest.raises(AttemptTimeoutError),
            ):
                await executor.run("k", slow)
            return loop.time()

        assert 5.0 == run_virtual(main)

    def test_bulkhead_hands_a_freed_slot_on_at_once(self):
        """A bulkhead waiter gets a freed slot when it is freed, virtual."""
        executor = AsyncResilientExecutor(
            "api", bulkhead=Bulkhead(1, max_wait=10.0)
        )
        ended = []

        async def work():
            await asyncio.sleep(2)

        async def call():
            await executor.run("k", work)
            ended.append(asyncio.get_running_loop().time())

        async def main():
            with keeping_time([executor], current_clock()):
                await asyncio.gather(call(), call())

        run_virtual(main)

        assert [2.0, 4.0] == ended

    def test_back_off_sleeps_in_virtual_seconds(self):
        """Retry back-off is slept on the virtual clock."""
        executor = AsyncResilientExecutor(
            "api",
            retry_policy=RetryPolicy(
                max_attempts=3, base_delay=10.0, max_delay=60, jitter=None
            ),
        )

        async def main():
            loop = asyncio.get_running_loop()
            with (
                keeping_time([executor], current_clock()),
                pytest.raises(Boom),
            ):
                await executor.run("k", fail)
            return loop.time()

        assert 30.0 == run_virtual(main)

    def test_everything_gets_its_own_clock_and_state_back(self):
        """After the block: the default clock and the production state."""
        breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=60.0)
        tiers = (TokenBucket(2, 1), SlidingWindow(5, 1.0))
        limiter = CompositeLimiter(*tiers)
        budget = RetryBudget()
        bulkhead = Bulkhead(2)
        policy = RetryPolicy(budget=budget, base_delay=0)
        own_rng = policy.rng
        executor = AsyncResilientExecutor(
            "api",
            circuit_breaker=breaker,
            limiter=limiter,
            bulkhead=bulkhead,
            retry_policy=policy,
        )
        breaker.force_open()
        tiers[0].try_acquire("k")
        seen = {}

        async def main():
            with keeping_time([executor], current_clock(), seed=1):
                seen["state"] = breaker.state
                seen["tokens"] = tiers[0].tokens("k")
                seen["clocks"] = {
                    type(c.clock).__name__
                    for c in (executor, breaker, limiter, *tiers, bulkhead)
                } | {type(budget.clock).__name__}
                seen["rng"] = policy.rng is own_rng
                await executor.run("k", ok)

        run_virtual(main)

        assert CircuitState.CLOSED == seen["state"]
        assert 2.0 == seen["tokens"]
        assert {"VirtualClock"} == seen["clocks"]
        assert seen["rng"] is False
        assert CircuitState.FORCED_OPEN == breaker.state
        assert tiers[0].tokens("k") < 2.0
        assert policy.rng is own_rng
        for component in (
            executor,
            breaker,
            limiter,
            *tiers,
            bulkhead,
            budget,
        ):
            assert isinstance(component.clock, MonotonicClock)
        assert 0 == bulkhead.statistics().acquired

    @pytest.mark.parametrize(
        "build",
        [
            pytest.param(
                lambda: AsyncResilientExecutor("a", clock=MockClock()),
                id="executor-clock",
            ),
            pytest.param(
                lambda: AsyncResilientExecutor(
                    "a", circuit_breaker=CircuitBreaker(clock=MockClock())
                ),
                id="component-clock",
            ),
        ],
    )
    def test_an_explicit_clock_is_refused(self, build):
        """Only an executor on the default clock can keep virtual time."""
        executor = build()

        async def main():
            with keeping_time([executor], current_clock()):
                pass

        with pytest.raises(ConfigError) as info:
            run_virtual(main)

        assert "executor" == info.value.parameter
        with pytest.raises(ConfigError):
            sim.run(executor, rate=1, duration=1)
