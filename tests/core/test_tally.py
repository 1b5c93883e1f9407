"""
Counting (`_tally.py`) on the executors' quick way in.

While a pull exporter counts, the plainest call still takes the quick way
(a `QuickCall`, no context, two clock reads) and counts exactly what a
`Call` counts: the same calls, attempts, retries and budget denials, the
same durations, whoever listens; and the counts stay exact when many
threads bump them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

import pytest

from stormwall import (
    AsyncResilientExecutor,
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
    tally,
)
from stormwall._pipeline import QuickCall
from stormwall._tally import BUCKETS, Tally
from stormwall.events import (
    AttemptEnded,
    AttemptStarted,
    CallEnded,
    CallStarted,
    RetryScheduled,
)
from stormwall.testing import MockClock


N = len(BUCKETS) + 1


class Boom(Exception):
    pass


class CountingClock(MockClock):
    """A MockClock that counts its reads."""

    reads = 0

    def now(self) -> float:
        self.reads += 1
        return super().now()


def _executor(clock=None, **parts):
    parts.setdefault("limiter", TokenBucket(100, 100))
    parts.setdefault("circuit_breaker", CircuitBreaker(failure_threshold=3))
    parts.setdefault(
        "retry_policy",
        RetryPolicy(max_attempts=3, base_delay=0.25, jitter=None),
    )
    return ResilientExecutor(
        "svc", clock=clock or MockClock(), bus=EventBus(), **parts
    )


def _numbers(bus):
    counts = tally.read(bus).tally
    return (counts.calls, counts.attempts, counts.retries, counts.exhausted)


class TestQuickWay:
    def test_a_counted_call_takes_the_quick_way(self):
        """Counting on and nobody listening: a QuickCall, no context."""
        ex = _executor()
        sub = tally.attach(ex.bus)
        try:
            call = ex._pipeline.enter("k")
            assert QuickCall is call.__class__
            assert call.ctx is None
            assert ex.bus._tally is call.tally
        finally:
            sub.close()
        assert ex._pipeline.enter("k").__class__ is int

    def test_a_counted_success_reads_the_clock_twice(self):
        """Its start and its end (and the token bucket its own time)."""
        clock = CountingClock()
        ex = _executor(clock)
        tally.attach(ex.bus)
        assert 1 == ex.run("k", lambda: 1)
        assert 3 == clock.reads


# What each workload's attempts do: return, or raise.
WORKLOADS = {
    "success": [None],
    "retried": [Boom, None],
    "exhausted": [Boom, Boom, Boom],
    "budget": [Boom, Boom],
    "breaker-opens": [Boom, Boom, Boom, None],
    "fallback": [Boom, Boom, Boom],
    "interrupted": [KeyboardInterrupt],
}


def _counted(workload, quick, listener):
    """Run ``workload`` (and a plain success) counted; every number."""
    clock = MockClock()
    parts = {}
    if workload == "budget":
        parts["retry_policy"] = RetryPolicy(
            max_attempts=3,
            base_delay=0,
            budget=RetryBudget(ratio=0.01, min_per_second=0.1, ttl=10.0),
        )
    if workload == "breaker-opens":
        parts["circuit_breaker"] = CircuitBreaker(failure_threshold=2)
        parts["retry_policy"] = RetryPolicy(
            max_attempts=4, base_delay=0.25, jitter=None
        )
    if workload == "fallback":
        parts["fallback"] = lambda error: "fell back"
    ex = _executor(clock, **parts)
    if not quick:
        ex._pipeline.quick = False
    tally.attach(ex.bus)
    if listener == "hushed":
        ex.bus.subscribe(
            lambda _: None,
            AttemptEnded,
            CallEnded,
            outcomes={
                AttemptEnded: {"failure"},
                CallEnded: {"failure", "fallback"},
            },
        )
    elif listener == "all":
        ex.bus.subscribe(
            lambda _: None,
            CallStarted,
            AttemptStarted,
            AttemptEnded,
            RetryScheduled,
            CallEnded,
        )
    ex.run("k", lambda: 1)  # a listener hears the executor announced

    steps = iter(WORKLOADS[workload])

    def attempt():
        clock.advance(0.03)
        error = next(steps)
        if error is not None:
            raise error
        return 1

    # A budget dates every call: the full way in, whatever ``quick`` says.
    entered = ex._pipeline.enter("k").__class__
    assert (quick and workload != "budget") is (entered is QuickCall)
    with contextlib.suppress(Boom, KeyboardInterrupt, CircuitOpenError):
        ex.run("k", attempt)
    return _numbers(ex.bus)


class TestSameNumbers:
    # "all": every call event (not the limiter's grants: a QuickCall).
    @pytest.mark.parametrize("listener", [None, "hushed", "all"])
    @pytest.mark.parametrize("workload", list(WORKLOADS))
    def test_a_quick_call_counts_what_a_call_counts(self, workload, listener):
        """Calls, attempts (counts and duration sums per bucket), retries
        and budget denials: the same numbers either way in."""
        quick = _counted(workload, True, listener)

        assert _counted(workload, False, listener) == quick
        won = 2 if workload in ("success", "retried") else 1  # a warm-up
        assert won == sum(quick[0]["svc", "success"][:N])


async def _counted_async(quick, slow_first):
    """One async call counted (its first attempt past the timeout, or
    failing), then a plain success; every number."""
    clock = MockClock()
    ex = AsyncResilientExecutor(
        "svc",
        limiter=TokenBucket(100, 100),
        circuit_breaker=CircuitBreaker(),
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.25, jitter=None),
        timeout=0.1 if slow_first else None,
        clock=clock,
        bus=EventBus(),
    )
    if not quick:
        ex._pipeline.quick = False
    tally.attach(ex.bus)
    attempts = []

    async def work():
        attempts.append(1)
        if len(attempts) == 1:
            if slow_first:
                await clock.sleep_async(1.0)
            raise Boom
        await clock.sleep_async(0.03)
        return 1

    assert quick is (ex._pipeline.enter("k").__class__ is QuickCall)
    assert 1 == await ex.run("k", work)
    assert 1 == await ex.run("k", work)
    return _numbers(ex.bus)


class TestAsync:
    @pytest.mark.parametrize("slow_first", [False, True])
    def test_an_async_quick_call_counts_what_a_call_counts(self, slow_first):
        """The async driver: a failed or timed-out first attempt, retried,
        then a plain success, counted alike either way in."""
        quick = asyncio.run(_counted_async(True, slow_first))

        assert asyncio.run(_counted_async(False, slow_first)) == quick
        attempts = quick[1]
        failed = "timeout" if slow_first else "failure"
        assert 1 == sum(attempts["svc", failed][:N])
        assert 2 == sum(attempts["svc", "success"][:N])


class TestThreads:
    def test_counts_stay_exact_under_16_threads(self):
        """16 threads counting at once on one executor, quick calls and
        full ones (a retried failure): no count is lost, and each
        histogram's sum is the sum of what it counted."""
        threads, rounds = 16, 300
        ex = _executor(
            limiter=TokenBucket(10**9, 10**9),
            circuit_breaker=CircuitBreaker(failure_threshold=10**9),
            retry_policy=RetryPolicy(max_attempts=2, base_delay=0),
        )
        tally.attach(ex.bus)
        barrier = threading.Barrier(threads)

        def worker(n):
            fails = [False]

            def flaky():
                fails[0] = not fails[0]
                if fails[0]:
                    raise Boom
                return 1

            barrier.wait()
            for i in range(rounds):
                ex.run("k", lambda: 1)
                if (i + n) % 3 == 0:
                    ex.run("k", flaky)  # fails once, then succeeds

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            pool = [
                threading.Thread(target=worker, args=(n,))
                for n in range(threads)
            ]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        finally:
            sys.setswitchinterval(switch)

        calls, attempts, retries, _ = _numbers(ex.bus)
        flaky = sum(
            1
            for n in range(threads)
            for i in range(rounds)
            if (i + n) % 3 == 0
        )
        total = threads * rounds + flaky
        assert total == sum(calls["svc", "success"][:N])
        assert total == sum(attempts["svc", "success"][:N])
        assert flaky == sum(attempts["svc", "failure"][:N])
        assert flaky == retries["svc", "Boom"]
        assert ("svc", "failure") not in calls

    def test_won_is_exact_under_16_threads(self):
        """`Tally.won` alone, bumped from 16 threads with durations in
        every bucket: counts and sums exact, in both series."""
        counts = Tally()
        threads, rounds = 16, 2000
        durations = [*BUCKETS, 20.0]
        barrier = threading.Barrier(threads)

        def worker():
            barrier.wait()
            for i in range(rounds):
                counts.won("svc", durations[i % len(durations)])

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            pool = [threading.Thread(target=worker) for _ in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        finally:
            sys.setswitchinterval(switch)

        snapshot = counts.snapshot()
        expected = [0] * N
        for i in range(rounds):
            expected[i % len(durations)] += threads
        for series in (snapshot.calls, snapshot.attempts):
            cell = series["svc", "success"]
            assert expected == cell[:N]
            for i, bound in enumerate(durations):
                assert cell[N + i] == pytest.approx(expected[i] * bound)


def test_a_listener_and_counting_share_the_quick_call():
    """Somebody listening to call starts and counting at once: the quick
    call has its context and counts too."""
    ex = _executor()
    tally.attach(ex.bus)
    seen = []
    ex.bus.subscribe(seen.append, CallStarted)
    ex.run("k", lambda: 1)
    call = ex._pipeline.enter("k")
    assert QuickCall is call.__class__
    assert call.ctx is not None
    assert call.tally is ex.bus._tally
