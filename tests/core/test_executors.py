"""
The sync and async executors over the ``harness`` fixture: canonical
scenarios, timeouts, cancellation, retry rules, admission, configuration,
half-open probe slots, hooks and interrupts, async misuse.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from stormwall import (
    AsyncResilientExecutor,
    AttemptTimeoutError,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import (
    AttemptEnded,
    AttemptStarted,
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    CallEnded,
    CallStarted,
    ExecutorObserved,
    FallbackUsed,
    LimiterAllowed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)


class Boom(Exception):
    pass


def policy(clock=None, **kwargs):
    kwargs.setdefault("max_attempts", 3)
    kwargs.setdefault("base_delay", 1.0)
    kwargs.setdefault("jitter", None)
    return RetryPolicy(**kwargs)


CALL = [CallStarted, AttemptStarted, AttemptEnded, CallEnded]


def types(executor):
    return [type(e) for e in executor.recorder.events]


class TestCanonicalScenarios:
    """Each scenario is asserted as an exact event sequence, sync and async."""

    def test_success_first_try(self, harness):
        """A healthy call: one attempt, no retry, value returned."""
        ex = harness.executor(
            retry_policy=policy(),
            circuit_breaker=CircuitBreaker("b"),
            clock=MockClock(),
        )

        assert "ok" == harness.run(ex, "k", ["ok"])

        assert [ExecutorObserved, *CALL] == types(ex)
        ended = ex.recorder.assert_emitted(
            CallEnded, outcome="success", attempts=1
        )
        assert ("svc", "k") == (ended.executor, ended.key)
        assert ex.recorder.of_type(ExecutorObserved)[0].breaker == "b"

    def test_success_on_attempt_3(self, harness):
        """Two failures are retried with back-off, the third attempt wins."""
        clock = MockClock()
        ex = harness.executor(retry_policy=policy(), clock=clock)

        assert "ok" == harness.run(ex, "k", [Boom(1), Boom(2), "ok"])

        assert [
            ExecutorObserved,
            CallStarted,
            AttemptStarted,
            AttemptEnded,
            RetryScheduled,
            AttemptStarted,
            AttemptEnded,
            RetryScheduled,
            AttemptStarted,
            AttemptEnded,
            CallEnded,
        ] == types(ex)
        delays = [e.delay for e in ex.recorder.of_type(RetryScheduled)]
        assert [1.0, 2.0] == delays
        assert [1, 2] == [
            e.attempt for e in ex.recorder.of_type(RetryScheduled)
        ]
        assert 3.0 == clock.now()
        ex.recorder.assert_emitted(CallEnded, outcome="success", attempts=3)

    def test_exhausted_retries_raise_the_original(self, harness):
        """When retries run out, the function's own last exception is raised
        unchanged."""
        ex = harness.executor(retry_policy=policy(), clock=MockClock())
        last = Boom("third")

        with pytest.raises(Boom) as info:
            harness.run(ex, "k", [Boom(1), Boom(2), last])

        assert last is info.value
        ended = ex.recorder.assert_emitted(
            CallEnded, outcome="failure", attempts=3
        )
        assert last is ended.error
        assert 2 == len(ex.recorder.of_type(RetryScheduled))

    def test_limiter_wait_then_success(self, harness):
        """A call waits for a token (on the clock), then runs."""
        clock = MockClock()
        bucket = TokenBucket(1, 0.5, name="tb")
        ex = harness.executor(limiter=bucket, clock=clock)
        harness.run(ex, "k", ["first"])
        ex.recorder.clear()

        assert "second" == harness.run(ex, "k", ["second"])

        assert [
            CallStarted,
            LimiterWaited,
            AttemptStarted,
            AttemptEnded,
            CallEnded,
        ] == types(ex)
        waited = ex.recorder.of_type(LimiterWaited)[0]
        assert ("tb", 2.0, "k") == (waited.limiter, waited.waited, waited.key)
        assert 2.0 == clock.now()

    def test_limiter_rejection_is_not_a_breaker_failure(self, harness):
        """A limiter rejection fails fast, is never retried and never counts
        against the breaker."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = harness.executor(
            limiter=TokenBucket(1, 0.1, name="tb"),
            limiter_timeout=0,
            retry_policy=policy(),
            circuit_breaker=breaker,
            clock=clock,
        )
        harness.run(ex, "k", ["ok"])
        ex.recorder.clear()

        with pytest.raises(RateLimitedError) as info:
            harness.run(ex, "k", ["never"])

        assert [CallStarted, LimiterRejected, CallEnded] == types(ex)
        assert ("tb", "k") == (info.value.limiter, info.value.key)
        assert 10.0 == pytest.approx(info.value.retry_after)
        ex.recorder.assert_emitted(CallEnded, outcome="rejected", attempts=0)
        assert CircuitState.CLOSED == breaker.state
        assert 1 == harness.calls

    def test_breaker_trips_mid_retry(self, harness):
        """A breaker that opens mid-retry stops the retries: CircuitOpenError
        chained to the last real failure."""
        breaker = CircuitBreaker("b", failure_threshold=2)
        ex = harness.executor(
            retry_policy=policy(max_attempts=5),
            circuit_breaker=breaker,
            clock=MockClock(),
        )
        second = Boom(2)

        with pytest.raises(CircuitOpenError) as info:
            harness.run(ex, "k", [Boom(1), second, "unreached"])

        assert second is info.value.__cause__
        assert "b" == info.value.breaker
        assert [
            ExecutorObserved,
            CallStarted,
            AttemptStarted,
            AttemptEnded,
            RetryScheduled,
            AttemptStarted,
            AttemptEnded,
            BreakerStateChanged,
            BreakerRejected,
            CallEnded,
        ] == types(ex)
        ex.recorder.assert_emitted(
            BreakerStateChanged, from_state="closed", to_state="open"
        )
        assert 1 == breaker.statistics().rejected
        ex.recorder.assert_emitted(CallEnded, outcome="failure", attempts=2)
        assert 2 == harness.calls

    def test_open_half_open_closed_recovery(self, harness):
        """After recovery_timeout a probe passes, and its success closes the
        breaker."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1, recovery_timeout=30)
        ex = harness.executor(circuit_breaker=breaker, clock=clock)
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        with pytest.raises(CircuitOpenError) as info:
            harness.run(ex, "k", ["unreached"])
        assert 30.0 == info.value.retry_after
        ex.recorder.clear()

        clock.advance(30)
        assert "ok" == harness.run(ex, "k", ["ok"])

        changes = [
            (e.from_state, e.to_state, e.reason)
            for e in ex.recorder.of_type(BreakerStateChanged)
        ]
        assert [
            ("open", "half_open", "recovery_timeout"),
            ("half_open", "closed", "probe_succeeded"),
        ] == changes
        assert CircuitState.CLOSED == breaker.state

    def test_half_open_probe_failure_reopens(self, harness):
        """A failed probe sends the breaker back to open."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1, recovery_timeout=5)
        ex = harness.executor(circuit_breaker=breaker, clock=clock)
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        clock.advance(5)
        ex.recorder.clear()

        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom("probe")])

        changes = [
            (e.from_state, e.to_state)
            for e in ex.recorder.of_type(BreakerStateChanged)
        ]
        assert [("open", "half_open"), ("half_open", "open")] == changes
        assert CircuitState.OPEN == breaker.state

    def test_breaker_rejection_event(self, harness):
        """An open breaker rejects without calling, and says so."""
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = harness.executor(circuit_breaker=breaker, clock=MockClock())
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        ex.recorder.clear()

        with pytest.raises(CircuitOpenError):
            harness.run(ex, "k", ["unreached"])

        assert [CallStarted, BreakerRejected, CallEnded] == types(ex)
        ex.recorder.assert_emitted(BreakerRejected, breaker="b", state="open")
        ex.recorder.assert_emitted(CallEnded, outcome="rejected", attempts=0)

    def test_fallback_used(self, harness):
        """The fallback supplies the value of a call that failed for good."""
        seen = []

        def fallback(error):
            seen.append(error)
            return "cached"

        ex = harness.executor(
            retry_policy=policy(max_attempts=2),
            fallback=fallback,
            clock=MockClock(),
        )
        last = Boom(2)

        assert "cached" == harness.run(ex, "k", [Boom(1), last])

        assert [last] == seen
        assert [
            ExecutorObserved,
            CallStarted,
            AttemptStarted,
            AttemptEnded,
            RetryScheduled,
            AttemptStarted,
            AttemptEnded,
            FallbackUsed,
            CallEnded,
        ] == types(ex)
        ex.recorder.assert_emitted(CallEnded, outcome="fallback", error=last)

    def test_fallback_on_rejection(self, harness):
        """An open circuit is a classic place for a fallback value."""
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = harness.executor(
            circuit_breaker=breaker,
            fallback=lambda e: type(e).__name__,
            clock=MockClock(),
        )

        assert "Boom" == harness.run(ex, "k", [Boom()])
        assert "CircuitOpenError" == harness.run(ex, "k", ["unreached"])

    def test_same_sequence_sync_and_async(self):
        """Both executors report the very same event names for a scenario."""
        names = {}
        for kind in ("sync", "async"):
            from tests.support.harness import Harness

            h = Harness(kind)
            ex = h.executor(
                retry_policy=policy(),
                circuit_breaker=CircuitBreaker("b", failure_threshold=5),
                limiter=TokenBucket(5, 1.0, name="tb"),
                clock=MockClock(),
            )
            h.run(ex, "k", [Boom(), "ok"])
            names[kind] = ex.recorder.names()

        assert names["sync"] == names["async"]
        assert "stormwall.rate_limiter.allowed" in names["sync"]


class TestAsyncTimeout:
    @pytest.mark.asyncio
    async def test_attempt_timeout_then_success(self):
        """An attempt that outlives its timeout fails with AttemptTimeoutError
        (in virtual time), is retried, and the next attempt succeeds."""
        clock = MockClock()
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append)
        ex = AsyncResilientExecutor(
            "svc", timeout=1.0, retry_policy=policy(), clock=clock, bus=bus
        )
        calls = []

        async def fn():
            calls.append(clock.now())
            if len(calls) == 1:
                await clock.sleep_async(10)
            return "ok"

        assert "ok" == await ex.run("k", fn)

        ended = [e for e in seen if isinstance(e, AttemptEnded)]
        assert ["timeout", "success"] == [e.outcome for e in ended]
        assert isinstance(ended[0].error, AttemptTimeoutError)
        assert 1.0 == ended[0].duration
        assert [0.0, 2.0] == calls  # timed out at 1.0, back-off 1.0

    @pytest.mark.asyncio
    async def test_timeout_exhausted_raises_attempt_timeout(self):
        """Timeouts on every attempt end in AttemptTimeoutError, a
        TimeoutError."""
        clock = MockClock()
        ex = AsyncResilientExecutor(
            "svc",
            timeout=0.5,
            retry_policy=policy(max_attempts=2),
            clock=clock,
        )

        async def slow():
            await clock.sleep_async(60)

        with pytest.raises(TimeoutError) as info:
            await ex.run("k", slow)

        assert isinstance(info.value, AttemptTimeoutError)
        assert 0.5 + 1.0 + 0.5 == clock.now()

    @pytest.mark.asyncio
    async def test_timeout_is_a_breaker_failure(self):
        """A timed-out attempt counts as a breaker failure by default."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = AsyncResilientExecutor(
            "svc", timeout=0.5, circuit_breaker=breaker, clock=clock
        )

        async def slow():
            await clock.sleep_async(60)

        with pytest.raises(AttemptTimeoutError):
            await ex.run("k", slow)

        assert CircuitState.OPEN == breaker.state

    @pytest.mark.asyncio
    async def test_real_clock_timeout(self):
        """With the real clock the timeout uses asyncio's own machinery."""
        ex = AsyncResilientExecutor("svc", timeout=0.001)

        async def slow():
            await asyncio.sleep(5)

        with pytest.raises(AttemptTimeoutError):
            await ex.run("k", slow)

    @pytest.mark.asyncio
    async def test_fast_call_under_timeout(self):
        """A call that finishes in time is untouched by its timeout."""
        ex = AsyncResilientExecutor("svc", timeout=5, clock=MockClock())

        async def fast():
            return 42

        assert 42 == await ex.run("k", fast)

    def test_sync_executor_refuses_timeout(self):
        """A sync executor cannot interrupt a thread: timeout= is refused with
        a pointer to the alternatives."""
        with pytest.raises(ConfigError, match="deadline") as info:
            ResilientExecutor("svc", timeout=1.0)

        assert "timeout" == info.value.parameter


class TestCancellation:
    @pytest.mark.asyncio
    async def test_cancel_during_call_releases_everything(self):
        """A call cancelled mid-flight frees its bulkhead slot and its
        half-open probe slot."""
        clock = MockClock(autojump=False)
        breaker = CircuitBreaker(
            "b", failure_threshold=1, recovery_timeout=1, clock=clock
        )
        bulkhead = Bulkhead(1, name="bh")
        ex = AsyncResilientExecutor(
            "svc", circuit_breaker=breaker, bulkhead=bulkhead, clock=clock
        )

        async def boom():
            raise Boom

        with pytest.raises(Boom):
            await ex.run("k", boom)
        await clock.advance_async(1)
        started = asyncio.Event()

        async def hang():
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(ex.run("k", hang))
        await started.wait()
        assert 1 == bulkhead.statistics().in_flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert 0 == bulkhead.statistics().in_flight
        assert CircuitState.HALF_OPEN == breaker.state

        async def ok():
            return "probe"

        assert "probe" == await ex.run("k", ok)  # the slot was freed
        assert CircuitState.CLOSED == breaker.state

    @pytest.mark.asyncio
    async def test_cancel_during_limiter_wait_refunds(self):
        """A call cancelled while waiting for a token gives it back."""
        clock = MockClock(autojump=False)
        bucket = TokenBucket(1, 1.0, name="tb")
        ex = AsyncResilientExecutor("svc", limiter=bucket, clock=clock)

        async def ok():
            return clock.now()

        assert 0.0 == await ex.run("k", ok)
        waiting = asyncio.create_task(ex.run("k", ok))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

        await clock.advance_async(1)
        assert bucket.try_acquire("k")  # the refunded token is available

    @pytest.mark.asyncio
    async def test_cancel_during_backoff(self):
        """Cancelling a call during its back-off sleep ends it as cancelled."""
        clock = MockClock(autojump=False)
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, CallEnded)
        ex = AsyncResilientExecutor(
            "svc", retry_policy=policy(), clock=clock, bus=bus
        )

        async def boom():
            raise Boom

        task = asyncio.create_task(ex.run("k", boom))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert ["cancelled"] == [e.outcome for e in seen]

    @pytest.mark.asyncio
    async def test_cancel_during_bulkhead_wait(self):
        """A call cancelled while queued for the bulkhead leaves the queue."""
        clock = MockClock(autojump=False)
        bulkhead = Bulkhead(1, max_wait=None, name="bh")
        ex = AsyncResilientExecutor("svc", bulkhead=bulkhead, clock=clock)
        gate = asyncio.Event()

        async def hold():
            await gate.wait()
            return "held"

        holder = asyncio.create_task(ex.run("k", hold))
        await asyncio.sleep(0)
        queued = asyncio.create_task(ex.run("k", hold))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()

        assert "held" == await holder
        assert 0 == bulkhead.statistics().in_flight


class TestRetryRules:
    def test_non_retryable_error_not_retried(self, harness):
        """An exception outside retry_on fails at once."""
        ex = harness.executor(
            retry_policy=policy(retry_on=KeyError), clock=MockClock()
        )

        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom(), "ok"])

        assert 1 == harness.calls

    def test_retry_on_result(self, harness):
        """A result rejected by retry_on_result is retried; when retries run
        out the last result is returned as is."""
        ex = harness.executor(
            retry_policy=policy(retry_on_result=lambda r: r == "busy"),
            clock=MockClock(),
        )

        assert "ok" == harness.run(ex, "k", ["busy", "ok"])
        assert "busy" == harness.run(ex, "k", ["busy", "busy", "busy"])

        ex.recorder.assert_emitted(CallEnded, outcome="failure", attempts=3)

    def test_deadline_stops_retrying(self, harness):
        """A retry whose back-off would pass the deadline is not taken."""
        clock = MockClock()
        ex = harness.executor(
            retry_policy=policy(max_attempts=10, deadline=3.5), clock=clock
        )

        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()] * 10)

        assert 3 == harness.calls  # sleeps 1 + 2; the next 4 would pass 3.5
        assert 3.0 == clock.now()

    def test_budget_exhausted(self, harness):
        """A retry denied by the budget raises the original error and says
        so."""
        budget = RetryBudget(ratio=0.1, min_per_second=0.1, ttl=10)
        ex = harness.executor(
            retry_policy=policy(max_attempts=5, budget=budget),
            clock=MockClock(),
        )
        last = Boom("denied")

        with pytest.raises(Boom) as info:
            harness.run(ex, "k", [Boom(1), last, "unreached"])

        assert last is info.value
        ex.recorder.assert_emitted(RetryBudgetExhausted, error=last)

    def test_five_long_backoffs_run_in_milliseconds(self, harness):
        """Five retries of 30 s back-off take milliseconds of real time."""
        clock = MockClock()
        ex = harness.executor(
            retry_policy=policy(
                max_attempts=6, base_delay=30, multiplier=1, max_delay=30
            ),
            clock=clock,
        )
        before = time.perf_counter()

        assert "ok" == harness.run(ex, "k", [Boom()] * 5 + ["ok"])

        assert 150.0 == clock.now()
        assert time.perf_counter() - before < 1.0

    def test_cancellation_is_never_retried(self, harness):
        """KeyboardInterrupt passes through at once, the call ends as
        cancelled."""
        ex = harness.executor(retry_policy=policy(), clock=MockClock())

        with pytest.raises(KeyboardInterrupt):
            harness.run(ex, "k", [KeyboardInterrupt(), "ok"])

        assert 1 == harness.calls
        ex.recorder.assert_emitted(CallEnded, outcome="cancelled")

    def test_jittered_delays_seeded(self, harness):
        """An injected rng makes jittered back-off reproducible."""
        clock = MockClock()
        ex = harness.executor(
            retry_policy=RetryPolicy(
                max_attempts=3, base_delay=1, rng=random.Random(7)
            ),
            clock=clock,
        )

        harness.run(ex, "k", [Boom(), Boom(), "ok"])

        delays = [e.delay for e in ex.recorder.of_type(RetryScheduled)]
        assert all(0 <= d <= 2 for d in delays)
        assert sum(delays) == pytest.approx(clock.now())


class TestAdmission:
    def test_bulkhead_full(self, harness):
        """A call finding no bulkhead slot is rejected and never counts as a
        failure."""
        bulkhead = Bulkhead(1, name="bh")
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = harness.executor(
            bulkhead=bulkhead, circuit_breaker=breaker, clock=MockClock()
        )
        assert bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        bulkhead.release()
        assert CircuitState.CLOSED == breaker.state
        assert "ok" == harness.run(ex, "k", ["ok"])

    def test_limiter_keyed_per_call(self, harness):
        """Keys are limited apart."""
        ex = harness.executor(
            limiter=TokenBucket(1, 0.001),
            limiter_timeout=0,
            clock=MockClock(),
        )

        assert "a" == harness.run(ex, "alice", ["a"])
        assert "b" == harness.run(ex, "bob", ["b"])
        with pytest.raises(RateLimitedError):
            harness.run(ex, "alice", ["unreached"])

    def test_no_events_built_without_subscribers(self, harness):
        """With nobody listening the executor reports nothing at all."""
        bus = EventBus()
        ex = harness.executor(
            bus=bus, retry_policy=policy(), clock=MockClock()
        )
        ex.recorder.close()

        assert "ok" == harness.run(ex, "k", [Boom(), "ok"])

        assert [] == ex.recorder.events


class TestConfiguration:
    def test_clock_adopted_from_components(self):
        """An executor without clock= uses the clock its components carry."""
        clock = MockClock()
        breaker = CircuitBreaker(clock=clock)
        bucket = TokenBucket(1, 1)

        ex = ResilientExecutor(circuit_breaker=breaker, limiter=bucket)

        assert clock is ex.clock
        assert clock is bucket.clock

    def test_clock_mismatch_is_config_error(self):
        """Two clocks in one pipeline are refused, naming the component."""
        with pytest.raises(ConfigError) as info:
            ResilientExecutor(
                circuit_breaker=CircuitBreaker(clock=MockClock()),
                limiter=TokenBucket(1, 1, clock=MockClock()),
            )

        assert "limiter" == info.value.parameter

    def test_executor_clock_vs_component_clock(self):
        """The executor's clock must match a component's explicit one."""
        with pytest.raises(ConfigError) as info:
            AsyncResilientExecutor(
                clock=MockClock(),
                bulkhead=Bulkhead(1, clock=MockClock()),
            )

        assert "bulkhead" == info.value.parameter

    def test_budget_clock_checked_too(self):
        """The retry budget's clock is part of the pipeline."""
        with pytest.raises(ConfigError) as info:
            ResilientExecutor(
                clock=MockClock(),
                retry_policy=RetryPolicy(
                    budget=RetryBudget(clock=MockClock())
                ),
            )

        assert "retry_policy" == info.value.parameter

    def test_protect_with_key_function(self):
        """protect() keys each call from its arguments."""
        bucket = TokenBucket(1, 0.001)
        ex = ResilientExecutor(
            limiter=bucket, limiter_timeout=0, clock=MockClock()
        )

        @ex.protect(key=lambda user, **_: user)
        def greet(user, *, polite=False):
            return f"hi {user}" + ("!" if polite else "")

        assert "hi ann!" == greet("ann", polite=True)
        assert "hi bob" == greet("bob")
        with pytest.raises(RateLimitedError) as info:
            greet("ann")
        assert "ann" == info.value.key
        assert "greet" == greet.__name__

    @pytest.mark.asyncio
    async def test_async_protect_and_awaitable_fallback(self):
        """Async protect works, and an awaitable fallback is awaited."""

        async def fallback(error):
            return "fb"

        ex = AsyncResilientExecutor(fallback=fallback, clock=MockClock())

        @ex.protect()
        async def fail():
            raise Boom

        assert "fb" == await fail()

    def test_repr(self):
        """An executor describes its pipeline."""
        ex = ResilientExecutor("users", circuit_breaker=CircuitBreaker("b"))

        assert "users" in repr(ex)
        assert "circuit_breaker" in repr(ex)

    def test_announce_once_per_subscription(self):
        """ExecutorObserved is reported on the first call after a subscriber
        joins, not on every call."""
        bus = EventBus()
        ex = ResilientExecutor("svc", bus=bus, clock=MockClock())
        seen = []
        bus.subscribe(seen.append, ExecutorObserved)

        ex.run("k", lambda: 1)
        ex.run("k", lambda: 1)
        bus.subscribe(lambda e: None)
        ex.run("k", lambda: 1)

        assert 2 == len(seen)

    def test_component_reports_on_executor_bus(self):
        """A breaker without its own bus reports on its executor's bus, even
        for force_open() outside any call."""
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, BreakerStateChanged)
        breaker = CircuitBreaker("b")
        ResilientExecutor("svc", circuit_breaker=breaker, bus=bus)

        breaker.force_open()

        assert [("closed", "forced_open")] == [
            (e.from_state, e.to_state) for e in seen
        ]
        assert "svc" == seen[0].executor

    def test_component_own_bus_wins(self):
        """A component given bus= reports there, with the call's identity."""
        own = EventBus()
        seen = []
        own.subscribe(seen.append, LimiterAllowed)
        ex = ResilientExecutor(
            "svc", limiter=TokenBucket(5, 1, bus=own), clock=MockClock()
        )

        ex.run("user:1", lambda: None)

        assert [("svc", "user:1")] == [(e.executor, e.key) for e in seen]


class TestHalfOpenProbeSlots:
    """A probe that ends in any way frees its slot: never stuck half-open."""

    def tripped(self, harness, **kwargs):
        clock = MockClock()
        breaker = CircuitBreaker(
            "b", failure_threshold=1, recovery_timeout=5, **kwargs
        )
        ex = harness.executor(circuit_breaker=breaker, clock=clock)
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        clock.advance(5)
        return ex, breaker, clock

    def test_ignored_exception_frees_the_slot(self, harness):
        """A probe raising an ignored exception frees its slot; the next
        probe can close the breaker."""
        ex, breaker, _ = self.tripped(harness, ignore_on=KeyError)

        with pytest.raises(KeyError):
            harness.run(ex, "k", [KeyError("ignored")])

        assert CircuitState.HALF_OPEN == breaker.state
        assert "ok" == harness.run(ex, "k", ["ok"])
        assert CircuitState.CLOSED == breaker.state

    def test_unrecorded_exception_counts_as_success(self, harness):
        """A probe raising an exception outside record_on is a success."""
        ex, breaker, _ = self.tripped(harness, record_on=Boom)

        with pytest.raises(ValueError):
            harness.run(ex, "k", [ValueError("not recorded")])

        assert CircuitState.CLOSED == breaker.state

    def test_interrupted_probe_frees_the_slot(self, harness):
        """A probe interrupted by a BaseException frees its slot."""
        ex, breaker, _ = self.tripped(harness)

        with pytest.raises(KeyboardInterrupt):
            harness.run(ex, "k", [KeyboardInterrupt()])

        assert CircuitState.HALF_OPEN == breaker.state
        assert "ok" == harness.run(ex, "k", ["ok"])

    @pytest.mark.asyncio
    async def test_timed_out_probe_reopens_and_frees(self):
        """A probe that times out is a recorded failure: the breaker reopens,
        and after the next open period a fresh probe may pass."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1, recovery_timeout=5)
        ex = AsyncResilientExecutor(
            "svc", circuit_breaker=breaker, timeout=1, clock=clock
        )

        async def slow():
            await clock.sleep_async(60)

        async def ok():
            return "ok"

        with pytest.raises(AttemptTimeoutError):
            await ex.run("k", slow)
        clock.advance(5)
        with pytest.raises(AttemptTimeoutError):
            await ex.run("k", slow)

        assert CircuitState.OPEN == breaker.state
        clock.advance(5)
        assert "ok" == await ex.run("k", ok)
        assert CircuitState.CLOSED == breaker.state


class TestHooksAndInterrupts:
    """User hooks that raise, and interrupts inside event handlers, never
    leak a permit or leave a call without its CallEnded."""

    def test_raising_result_predicate_frees_the_probe(self, harness):
        """A raising retry_on_result frees the half-open probe slot and ends
        the call."""
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1, recovery_timeout=5)
        calls = []

        def judge(result):
            calls.append(result)
            if len(calls) == 1:
                raise RuntimeError("predicate bug")
            return False

        ex = harness.executor(
            circuit_breaker=breaker,
            retry_policy=policy(retry_on=KeyError, retry_on_result=judge),
            clock=clock,
        )
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        clock.advance(5)

        with pytest.raises(RuntimeError, match="predicate bug"):
            harness.run(ex, "k", ["probe"])

        assert 0 == breaker.statistics().half_open_in_flight
        assert "ok" == harness.run(ex, "k", ["ok"])  # not stuck half-open
        assert [CallStarted, CallEnded] * 3 == [
            t for t in types(ex) if t in (CallStarted, CallEnded)
        ]

    @pytest.mark.parametrize(
        "hook",
        [
            pytest.param(
                lambda: {
                    "retry_policy": RetryPolicy(retry_on=lambda e: 1 / 0)
                },
                id="retry_on",
            ),
            pytest.param(
                lambda: {
                    "retry_policy": RetryPolicy(retry_after=lambda e: "soon")
                },
                id="retry_after",
            ),
            pytest.param(
                lambda: {
                    "circuit_breaker": CircuitBreaker(
                        record_on=lambda e: 1 / 0
                    )
                },
                id="record_on",
            ),
        ],
    )
    def test_raising_hook_still_ends_the_call(self, harness, hook):
        """A raising user hook surfaces, chained to the failure it judged,
        and the call still ends (no span left open)."""
        ex = harness.executor(clock=MockClock(), **hook())
        original = Boom("upstream")

        with pytest.raises(Exception) as info:
            harness.run(ex, "k", [original, "unreached"])

        assert original is info.value.__context__
        ended = ex.recorder.assert_emitted(CallEnded, outcome="failure")
        assert info.value is ended.error
        assert len(ex.recorder.of_type(AttemptStarted)) == len(
            ex.recorder.of_type(AttemptEnded)
        )

    @pytest.mark.parametrize("event_type", [AttemptStarted, BulkheadAcquired])
    def test_interrupt_in_a_handler_frees_the_bulkhead(
        self, harness, event_type
    ):
        """A KeyboardInterrupt raised inside a handler (the bus isolates only
        Exceptions) does not leak the bulkhead slot."""
        bus = EventBus()
        bulkhead = Bulkhead(1, name="bh")

        def interrupt(event):
            raise KeyboardInterrupt

        sub = bus.subscribe(interrupt, event_type)
        ex = harness.executor(bulkhead=bulkhead, bus=bus, clock=MockClock())

        with pytest.raises(KeyboardInterrupt):
            harness.run(ex, "k", ["unreached"])
        sub.close()

        assert 0 == bulkhead.statistics().in_flight
        assert "ok" == harness.run(ex, "k", ["ok"])

    def test_key_checked_with_or_without_listeners(self, harness):
        """A key that is not a str is refused whether or not anybody
        listens."""
        ex = harness.executor(clock=MockClock())
        ex.recorder.close()

        with pytest.raises(ConfigError, match="key"):
            harness.run_fn(ex, 42, lambda: 1, None)


class TestAsyncMisuse:
    @pytest.mark.asyncio
    async def test_sync_function_is_a_usage_error(self):
        """A plain function given to the async executor runs once, is not
        retried and is not a breaker failure."""
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = AsyncResilientExecutor(
            "svc",
            circuit_breaker=breaker,
            retry_policy=policy(),
            clock=MockClock(),
        )
        calls = []

        def charge():
            calls.append(1)
            return "charged"

        with pytest.raises(TypeError, match="not an awaitable"):
            await ex.run("k", charge)

        assert [1] == calls
        assert CircuitState.CLOSED == breaker.state

    @pytest.mark.asyncio
    async def test_no_stray_cancellation_after_a_late_timeout(self):
        """A timeout that fires while the attempt is finishing leaves no
        pending cancellation on the caller's task."""
        clock = MockClock()
        ex = AsyncResilientExecutor("svc", timeout=1.0, clock=clock)

        async def blocking():
            clock.sleep(5)  # sync sleep: the timeout cannot interrupt it
            return "done"

        assert "done" == await ex.run("k", blocking)
        await asyncio.sleep(0)  # would raise CancelledError if one leaked

        assert 0 == asyncio.current_task().cancelling()

    @pytest.mark.asyncio
    async def test_work_finishing_before_the_timeout_wins(self):
        """With manual time, work due at 0.5 s beats a 1 s timeout when time
        advances past both at once."""
        clock = MockClock(autojump=False)
        ex = AsyncResilientExecutor("svc", timeout=1.0, clock=clock)

        async def work():
            await clock.sleep_async(0.5)
            return "done"

        task = asyncio.create_task(ex.run("k", work))
        await asyncio.sleep(0)
        await clock.advance_async(1.0)

        assert "done" == await task


class TestAsyncOnlyComponents:
    def test_sync_executor_refuses_an_async_only_limiter(self):
        """A limiter behind an asyncio client cannot serve sync calls: the
        sync executor refuses it at construction, naming the parameter."""

        class AsyncOnlyBucket(TokenBucket):
            _async_only = True

        with pytest.raises(ConfigError, match="asyncio client") as info:
            ResilientExecutor(limiter=AsyncOnlyBucket(1, 1))

        assert "limiter" == info.value.parameter
        AsyncResilientExecutor(limiter=AsyncOnlyBucket(1, 1))  # fine here
