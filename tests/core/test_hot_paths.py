"""
The hot-path shortcuts keep the behaviour of the paths they shortcut.

Events built by the generated ``__init__`` are the same values as the
dataclass would build; limiter states share one empty queue until somebody
waits; a call nobody listens to reads the clock only where time is used.
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

import stormwall.events as events_module
from stormwall import (
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall._core._limiters import BucketState, TokenBucketPolicy
from stormwall._events import builder
from stormwall.events import AttemptEnded, ExecutorObserved
from stormwall.testing import MockClock


ALL = [getattr(events_module, n) for n in events_module.__all__]


class CountingClock(MockClock):
    """A MockClock that counts its reads."""

    reads = 0

    def now(self) -> float:
        self.reads += 1
        return super().now()


class TestEventConstruction:
    @pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
    def test_signature_is_keyword_only(self, cls):
        """Every event's ``__init__`` takes keyword arguments only."""
        params = list(inspect.signature(cls).parameters.values())

        assert params
        assert all(p.kind is p.KEYWORD_ONLY for p in params)
        assert [f.name for f in dataclasses.fields(cls)] == [
            p.name for p in params
        ]

    def test_defaults_equality_replace_pickle(self):
        """Defaults, ==, replace and pickling behave as for a dataclass."""
        e = AttemptEnded(time=1.0, outcome="success", duration=0.5)
        again = AttemptEnded(time=1.0, outcome="success", duration=0.5)

        assert (None, None, None, None) == (
            e.executor,
            e.key,
            e.call_id,
            e.error,
        )
        assert again == e
        assert hash(again) == hash(e)
        assert 3 == dataclasses.replace(e, attempt=3).attempt
        assert e == pickle.loads(pickle.dumps(e))  # noqa: S301 - our own
        assert () == ExecutorObserved(time=0.0).limiters
        assert repr(e).startswith("AttemptEnded(time=1.0, executor=None")

    def test_positional_and_missing_arguments_refused(self):
        """Positional or missing arguments raise TypeError, as before."""
        with pytest.raises(TypeError):
            AttemptEnded(1.0, "success", 0.5)  # type: ignore[misc]
        with pytest.raises(TypeError, match="outcome"):
            AttemptEnded(time=1.0, duration=0.5)  # type: ignore[call-arg]

    def test_still_frozen(self):
        """Assigning a field of a built event raises FrozenInstanceError."""
        e = AttemptEnded(time=1.0, outcome="success", duration=0.5)

        with pytest.raises(dataclasses.FrozenInstanceError):
            e.time = 2.0  # type: ignore[misc]


class TestBucketQueue:
    def test_queue_shared_until_a_booking_and_after_it(self):
        """A state has no list of its own until a request waits on it."""
        policy = TokenBucketPolicy(1.0, 1.0)
        a, b = BucketState(), BucketState()

        assert a.pending is b.pending
        assert 0.0 == policy.admit(a, 0.0, 1.0)
        res = policy.take(a, 0.0, 1.0, policy.earliest(a, 0.0, 1.0, -1e300))
        assert res is not None
        assert [res] == a.pending
        policy.complete(a, res)
        assert a.pending is b.pending


class TestClockReads:
    def build(self, clock, **kwargs):
        return ResilientExecutor(
            "x",
            limiter=TokenBucket(10, 10),
            retry_policy=RetryPolicy(max_attempts=3, **kwargs),
            circuit_breaker=CircuitBreaker(),
            clock=clock,
            bus=EventBus(),
        )

    def test_unobserved_success_reads_the_clock_once(self):
        """Nobody listening: only the limiter reads the clock."""
        clock = CountingClock()
        ex = self.build(clock)

        assert 1 == ex.run("k", lambda: 1)
        assert 1 == clock.reads

    def test_deadline_and_slow_calls_still_timed(self):
        """A deadline or a slow-call rule gets the times it needs."""
        clock = CountingClock()
        ex = ResilientExecutor(
            "x",
            retry_policy=RetryPolicy(max_attempts=2, deadline=5.0),
            circuit_breaker=CircuitBreaker(
                failure_threshold=None,
                failure_rate_threshold=0.5,
                minimum_calls=1,
                slow_call_duration=1.0,
                slow_call_rate_threshold=0.5,
            ),
            clock=clock,
            bus=EventBus(),
        )

        def slow():
            clock.advance(2.0)
            return 1

        assert 1 == ex.run("k", slow)
        assert "open" == ex.circuit_breaker.state


class TestBuilder:
    @pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
    def test_builder_builds_what_the_class_builds(self, cls):
        """builder(cls)(**fields) equals cls(**fields), of the same type."""
        fields = {
            f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(cls))
        }
        built = builder(cls)(**fields)

        assert cls is type(built)
        assert cls(**fields) == built
        with pytest.raises(dataclasses.FrozenInstanceError):
            built.time = 0.0
