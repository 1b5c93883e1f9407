"""
Regression tests for executor defects a new user and an audit found.

Each test fails on the code before its fix: a coroutine function given to
the sync executor, the bare ``@executor.protect``, unnamed components
sharing one metric label, a deadline that did not bound admission waits, a
limiter permit lost to a bulkhead refusal, a raising fallback that lost the
original failure, and a limiter that can never grant the executor's cost.
Every behaviour is checked through both executors where it applies.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitState,
    CompositeLimiter,
    ConfigError,
    EventBus,
    LeakyBucket,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryPolicy,
    SlidingWindow,
    TokenBucket,
)
from stormwall.events import BreakerStateChanged, CallEnded


class Boom(Exception):
    pass


def deadline_policy(deadline, **kwargs):
    kwargs.setdefault("max_attempts", 3)
    kwargs.setdefault("base_delay", 0.5)
    kwargs.setdefault("jitter", None)
    return RetryPolicy(deadline=deadline, **kwargs)


# -- 1. a coroutine function given to the sync executor ----------------------


class _Awaitable:
    def __await__(self):
        yield
        return 1


class TestSyncExecutorRefusesCoroutines:
    def test_run_refuses_a_coroutine_function(self):
        """The coroutine is closed (no "never awaited" warning), the call is
        not retried and is not a breaker failure."""
        breaker = CircuitBreaker("b", failure_threshold=1)
        ex = ResilientExecutor(
            "svc",
            circuit_breaker=breaker,
            retry_policy=deadline_policy(None),
            clock=MockClock(),
        )
        calls = []

        async def fetch():
            calls.append(1)
            return "never"

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(TypeError, match="AsyncResilientExecutor"):
                ex.run("k", fetch)
            gc.collect()

        assert [] == [w for w in caught if "never awaited" in str(w.message)]
        assert [] == calls
        assert CircuitState.CLOSED == breaker.state

    def test_run_refuses_a_returned_awaitable(self):
        """A plain function returning an awaitable is refused too."""
        ex = ResilientExecutor(
            "svc", retry_policy=deadline_policy(None), clock=MockClock()
        )
        calls = []

        def make():
            calls.append(1)
            return _Awaitable()

        with pytest.raises(TypeError, match="AsyncResilientExecutor"):
            ex.run("k", make)

        assert [1] == calls

    def test_refusal_is_reported_as_a_failed_call(self):
        """Listeners see the call end, as for the async twin's misuse."""
        bus = EventBus()
        ex = ResilientExecutor("svc", clock=MockClock(), bus=bus)
        ended = []
        bus.subscribe(ended.append, CallEnded)

        async def fetch():
            return 1

        with pytest.raises(TypeError):
            ex.run("k", fetch)

        assert ["failure"] == [e.outcome for e in ended]

    def test_protect_refuses_an_async_def_at_decoration(self):
        """Both forms of protect refuse a coroutine function at once."""
        ex = ResilientExecutor(clock=MockClock())

        async def fetch():
            return 1

        with pytest.raises(TypeError, match="AsyncResilientExecutor"):
            ex.protect()(fetch)
        with pytest.raises(TypeError, match="AsyncResilientExecutor"):
            ex.protect(fetch)


# -- 2. the bare @executor.protect --------------------------------------------


class TestBareProtect:
    def test_bare_protect_runs_through_the_executor(self, harness):
        """@executor.protect without parentheses protects the function, keyed
        like protect() ("default")."""
        ex = harness.executor(
            retry_policy=deadline_policy(None), clock=MockClock()
        )
        attempts = []

        if harness.kind == "sync":

            @ex.protect
            def fetch(n, *, plus=0):
                attempts.append(n)
                if len(attempts) < 2:
                    raise Boom
                return n + plus

            result = fetch(1, plus=2)
        else:

            @ex.protect
            async def fetch(n, *, plus=0):
                attempts.append(n)
                if len(attempts) < 2:
                    raise Boom
                return n + plus

            result = asyncio.run(fetch(1, plus=2))

        assert 3 == result
        assert [1, 1] == attempts
        assert "fetch" == fetch.__name__
        ended = ex.recorder.assert_emitted(CallEnded, outcome="success")
        assert ("default", 2) == (ended.key, ended.attempts)

    def test_bare_and_called_forms_agree(self, harness):
        """@protect and @protect() share the limiter key "default"."""
        ex = harness.executor(
            limiter=TokenBucket(1, 0.001),
            limiter_timeout=0,
            clock=MockClock(),
        )

        if harness.kind == "sync":

            @ex.protect
            def one():
                return 1

            @ex.protect()
            def two():
                return 2

            assert 1 == one()
            with pytest.raises(RateLimitedError) as info:
                two()
        else:

            @ex.protect
            async def one():
                return 1

            @ex.protect()
            async def two():
                return 2

            assert 1 == asyncio.run(one())
            with pytest.raises(RateLimitedError) as info:
                asyncio.run(two())

        assert "default" == info.value.key

    def test_a_non_callable_key_is_still_refused(self, harness):
        """protect(42) is a ConfigError naming key, whatever the form."""
        ex = harness.executor(clock=MockClock())

        with pytest.raises(ConfigError) as info:
            ex.protect(42)

        assert "key" == info.value.parameter


# -- 3. unnamed components share one metric label -----------------------------


class TestComponentNames:
    def test_unnamed_components_take_the_executor_name(self, harness):
        """An unnamed breaker, limiter and bulkhead report under their
        executor's name."""
        ex = harness.executor(
            "users-api",
            circuit_breaker=CircuitBreaker(failure_threshold=1),
            limiter=TokenBucket(10, 1),
            bulkhead=Bulkhead(2),
            clock=MockClock(),
        )

        assert "users-api" == ex.circuit_breaker.name
        assert "users-api" == ex.limiter.name
        assert "users-api" == ex.bulkhead.name
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])
        changed = ex.recorder.assert_emitted(BreakerStateChanged)
        assert "users-api" == changed.breaker

    def test_two_executors_report_two_breakers(self, harness):
        """The README's breaker in two executors: two names, two series."""
        bus = EventBus()
        a = harness.executor(
            "a", circuit_breaker=CircuitBreaker(failure_threshold=5), bus=bus
        )
        b = harness.executor(
            "b", circuit_breaker=CircuitBreaker(failure_threshold=5), bus=bus
        )

        assert ("a", "b") == (a.circuit_breaker.name, b.circuit_breaker.name)

    def test_named_and_standalone_components_keep_their_names(self):
        """A given name is kept; a component never wired keeps its kind."""
        breaker = CircuitBreaker("payments")
        ResilientExecutor("svc", circuit_breaker=breaker)

        assert "payments" == breaker.name
        assert "circuit_breaker" == CircuitBreaker().name
        assert "token_bucket" == TokenBucket(1, 1).name

    def test_a_shared_component_keeps_its_first_executor_name(self):
        """One unnamed breaker in two executors keeps the first name."""
        breaker = CircuitBreaker()
        bus = EventBus()
        ResilientExecutor("first", circuit_breaker=breaker, bus=bus)
        ResilientExecutor("second", circuit_breaker=breaker, bus=bus)

        assert "first" == breaker.name

    def test_unnamed_composite_tiers_get_distinct_names(self):
        """Unnamed tiers are named after the composite and their kind,
        numbered when a kind repeats."""
        per_user, everyone = TokenBucket(5, 1), TokenBucket(50, 10)
        window = SlidingWindow(100, 60)
        named = LeakyBucket(1, name="shaper")
        ex = ResilientExecutor(
            "api",
            limiter=CompositeLimiter(per_user, everyone, window, named),
        )

        assert (
            "api.token_bucket.1",
            "api.token_bucket.2",
            "api.sliding_window",
            "shaper",
        ) == ex.limiter._names()

    def test_same_name_twice_on_one_bus_is_reported(self, caplog):
        """Two distinct breakers named alike on one bus blend one series:
        the wiring logs a warning on the stormwall logger."""
        bus = EventBus()
        first = CircuitBreaker("payments")
        ResilientExecutor("a", circuit_breaker=first, bus=bus)

        with caplog.at_level(logging.WARNING, logger="stormwall"):
            AsyncResilientExecutor(
                "b", circuit_breaker=CircuitBreaker("payments"), bus=bus
            )

        [record] = caplog.records
        assert "stormwall" == record.name
        assert logging.WARNING == record.levelno
        assert "'payments'" in record.getMessage()
        assert "circuit breaker" in record.getMessage()

    def test_same_unnamed_kind_in_two_same_named_executors(self, caplog):
        """Two executors both left "default" give their unnamed limiters one
        name: reported."""
        bus = EventBus()
        first = ResilientExecutor(limiter=TokenBucket(1, 1), bus=bus)

        with caplog.at_level(logging.WARNING, logger="stormwall"):
            ResilientExecutor(limiter=SlidingWindow(1, 1), bus=bus)

        assert 1 == len(caplog.records)
        assert "limiter" in caplog.records[0].getMessage()
        assert "default" == first.limiter.name

    def test_a_name_is_free_again_once_its_component_is_gone(self, caplog):
        """Names are held weakly: rebuilding a pipeline (a reload, a test)
        reports nothing."""
        bus = EventBus()

        with caplog.at_level(logging.WARNING, logger="stormwall"):
            for _ in range(3):
                ResilientExecutor(
                    "svc", circuit_breaker=CircuitBreaker("b"), bus=bus
                )
                gc.collect()

        assert [] == caplog.records

    def test_a_shared_component_is_not_reported(self, caplog):
        """One component object in two executors is legitimate."""
        bus = EventBus()
        breaker = CircuitBreaker("payments")
        bucket = TokenBucket(1, 1, name="quota")

        with caplog.at_level(logging.WARNING, logger="stormwall"):
            ResilientExecutor(
                "a", circuit_breaker=breaker, limiter=bucket, bus=bus
            )
            AsyncResilientExecutor(
                "b", circuit_breaker=breaker, limiter=bucket, bus=bus
            )
            ResilientExecutor(
                "c",
                limiter=CompositeLimiter(bucket, TokenBucket(9, 9)),
                bus=bus,
            )

        assert [] == caplog.records

    def test_different_kinds_or_buses_are_not_reported(self, caplog):
        """A breaker and a bulkhead may share a name; so may components on
        two different buses."""
        with caplog.at_level(logging.WARNING, logger="stormwall"):
            ResilientExecutor(
                "a",
                circuit_breaker=CircuitBreaker("x"),
                bulkhead=Bulkhead(1, name="x"),
                bus=EventBus(),
            )
            ResilientExecutor(
                "a", circuit_breaker=CircuitBreaker("x"), bus=EventBus()
            )

        assert [] == caplog.records


# -- 5. the deadline bounds every wait ---------------------------------------


class TestDeadlineBoundsWaits:
    def test_a_limiter_wait_past_the_deadline_is_refused_at_once(
        self, harness
    ):
        """A 50 s wait for a token under a 1 s deadline: RateLimitedError at
        once, no time spent, nothing consumed."""
        clock = MockClock()
        bucket = TokenBucket(1, 0.02)
        ex = harness.executor(
            limiter=bucket, retry_policy=deadline_policy(1.0), clock=clock
        )
        assert "first" == harness.run(ex, "k", ["first"])

        with pytest.raises(RateLimitedError) as info:
            harness.run(ex, "k", ["unreached"])

        assert 0.0 == clock.now()
        assert 50.0 == pytest.approx(info.value.retry_after)
        assert 0.0 == pytest.approx(bucket.tokens("k"))

    def test_a_limiter_wait_within_the_deadline_waits(self, harness):
        """The deadline only refuses waits that would pass it."""
        clock = MockClock()
        ex = harness.executor(
            limiter=TokenBucket(1, 2.0),
            retry_policy=deadline_policy(1.0),
            clock=clock,
        )
        assert "first" == harness.run(ex, "k", ["first"])

        assert "second" == harness.run(ex, "k", ["second"])

        assert 0.5 == clock.now()

    def test_the_deadline_left_after_a_retry_bounds_the_wait(self, harness):
        """After a failure and a 0.5 s back-off, the next token comes at
        1.2 s, past the 1 s deadline: refused at once, chained to the
        failure."""
        clock = MockClock()
        bucket = TokenBucket(1, 1 / 1.2)  # a token every 1.2 s
        ex = harness.executor(
            limiter=bucket, retry_policy=deadline_policy(1.0), clock=clock
        )
        first = Boom("first")

        with pytest.raises(RateLimitedError) as info:
            harness.run(ex, "k", [first, "unreached"])

        assert first is info.value.__cause__
        assert 0.5 == clock.now()

    def test_a_bulkhead_wait_ends_at_the_deadline(self, harness):
        """A bulkhead allowing a 50 s wait gives up at the 1 s deadline."""
        clock = MockClock()
        bulkhead = Bulkhead(1, max_wait=50)
        ex = harness.executor(
            bulkhead=bulkhead, retry_policy=deadline_policy(1.0), clock=clock
        )
        assert bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        assert 1.0 == clock.now()
        bulkhead.release()
        assert 0 == bulkhead.statistics().in_flight

    def test_no_deadline_left_refuses_a_full_bulkhead_at_once(self, harness):
        """When the deadline has passed, a full bulkhead refuses at once."""
        clock = MockClock()
        bulkhead = Bulkhead(1, max_wait=50)
        bucket = TokenBucket(1, 1.0)
        ex = harness.executor(
            limiter=bucket,
            bulkhead=bulkhead,
            retry_policy=deadline_policy(1.0),
            clock=clock,
        )
        assert bucket.try_acquire("k")
        assert bulkhead.try_acquire()

        # The limiter wait (1 s) ends exactly at the deadline.
        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        assert 1.0 == clock.now()


# -- 6. a permit is refunded when the bulkhead refuses the attempt ------------


LIMITERS = {
    "token_bucket": lambda: TokenBucket(2, 0.001),
    "sliding_window": lambda: SlidingWindow(2, 1000),
    "leaky_bucket": lambda: LeakyBucket(0.001, capacity=None),
    "composite": lambda: CompositeLimiter(
        TokenBucket(2, 0.001), SlidingWindow(2, 1000)
    ),
}


class TestPermitRefund:
    @pytest.mark.parametrize("kind", sorted(LIMITERS))
    def test_bulkhead_refusal_refunds_the_permit(self, harness, kind):
        """The refused attempt leaves the limiter as it found it."""
        clock = MockClock()
        limiter = LIMITERS[kind]()
        bulkhead = Bulkhead(1)
        ex = harness.executor(
            limiter=limiter, bulkhead=bulkhead, limiter_timeout=0, clock=clock
        )
        assert bulkhead.try_acquire()

        for _ in range(5):
            with pytest.raises(BulkheadFullError):
                harness.run(ex, "k", ["unreached"])

        bulkhead.release()
        assert "ok" == harness.run(ex, "k", ["ok"])
        if kind != "leaky_bucket":  # one request per 1000 s
            assert "ok" == harness.run(ex, "k", ["ok"])
        with pytest.raises(RateLimitedError):
            harness.run(ex, "k", ["unreached"])

    def test_a_waited_permit_is_refunded_too(self, harness):
        """A permit waited for, then refused by the bulkhead, is given back:
        the bucket is as full as if the call had never come."""
        clock = MockClock()
        bucket = TokenBucket(1, 1.0)
        bulkhead = Bulkhead(1)
        ex = harness.executor(limiter=bucket, bulkhead=bulkhead, clock=clock)
        assert bucket.try_acquire("k")
        assert bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        assert 1.0 == clock.now()
        assert 1.0 == pytest.approx(bucket.tokens("k"))

    def test_a_waited_window_permit_is_refunded_too(self, harness):
        """The sliding window forgets exactly the refused request."""
        clock = MockClock()
        window = SlidingWindow(1, 1.0)
        bulkhead = Bulkhead(1)
        ex = harness.executor(limiter=window, bulkhead=bulkhead, clock=clock)
        assert window.try_acquire("k")
        assert bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        assert 1.0 == clock.now()
        assert window.try_acquire("k")
        assert not window.try_acquire("k")

    def test_a_call_cancelled_while_waiting_for_a_slot_gives_back(self):
        """A task cancelled in the bulkhead queue returns its token."""
        bucket = TokenBucket(2, 0.001)
        bulkhead = Bulkhead(1, max_wait=None)
        ex = AsyncResilientExecutor(
            "svc", limiter=bucket, bulkhead=bulkhead, clock=MockClock()
        )
        assert bulkhead.try_acquire()

        async def work():
            return "unreached"

        async def scenario():
            task = asyncio.create_task(ex.run("k", work))
            for _ in range(10):  # the task reaches the bulkhead queue
                await asyncio.sleep(0)
            assert 1 == bulkhead.statistics().waiting
            assert 1.0 == pytest.approx(bucket.tokens("k"))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())

        assert 2.0 == pytest.approx(bucket.tokens("k"))
        bulkhead.release()


# -- 7. a raising fallback keeps the original failure -------------------------


class TestFallbackChaining:
    def test_a_raising_fallback_chains_the_failure(self, harness):
        """The fallback's own error has the call's failure as context."""
        original = Boom("upstream")

        def fallback(error):
            msg = "fallback broke"
            raise RuntimeError(msg)

        ex = harness.executor(fallback=fallback, clock=MockClock())

        with pytest.raises(RuntimeError, match="fallback broke") as info:
            harness.run(ex, "k", [original])

        assert original is info.value.__context__

    def test_a_rejection_is_chained_too(self, harness):
        """A fallback raising over a rejection keeps the rejection."""

        def fallback(error):
            raise KeyError(error)

        bulkhead = Bulkhead(1)
        ex = harness.executor(
            fallback=fallback, bulkhead=bulkhead, clock=MockClock()
        )
        assert bulkhead.try_acquire()

        with pytest.raises(KeyError) as info:
            harness.run(ex, "k", ["unreached"])

        assert isinstance(info.value.__context__, BulkheadFullError)

    def test_an_explicit_cause_is_kept(self, harness):
        """A fallback's own ``raise ... from`` wins."""
        mine = ValueError("mine")

        def fallback(error):
            raise RuntimeError from mine

        ex = harness.executor(fallback=fallback, clock=MockClock())

        with pytest.raises(RuntimeError) as info:
            harness.run(ex, "k", [Boom()])

        assert mine is info.value.__cause__


# -- 11. a limiter that can never grant the executor's cost -------------------


class TestLimiterBelowOnePermit:
    @pytest.mark.parametrize(
        ("build", "word"),
        [
            (lambda: TokenBucket(0.5, 1), "capacity"),
            (lambda: SlidingWindow(0.5, 1), "limit"),
            (
                lambda: CompositeLimiter(
                    TokenBucket(5, 1), TokenBucket(0.5, 1)
                ),
                "capacity",
            ),
        ],
    )
    @pytest.mark.parametrize(
        "executor", [ResilientExecutor, AsyncResilientExecutor]
    )
    def test_refused_when_the_executor_is_built(self, executor, build, word):
        """Each attempt costs 1 permit: a limiter granting less is a
        ConfigError naming the limiter and its parameter."""
        with pytest.raises(ConfigError) as info:
            executor(limiter=build())

        assert "limiter" == info.value.parameter
        assert word in str(info.value)
        assert "0.5" in str(info.value)

    def test_exactly_one_permit_is_fine(self):
        """A capacity of 1 grants the executor's cost."""
        ResilientExecutor(limiter=TokenBucket(1, 0.5))
        AsyncResilientExecutor(limiter=SlidingWindow(1.0, 1))
