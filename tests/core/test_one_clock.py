"""
The one-clock rule (``stormwall._clock.one_clock``) and everywhere it holds.

The function itself, then each place that applies it: an executor and its
components, a composite limiter and its tiers, and a component wired into a
second executor after adopting the first one's clock.
"""

from __future__ import annotations

import pytest

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    CircuitBreaker,
    CompositeLimiter,
    ConfigError,
    MockClock,
    ResilientExecutor,
    TokenBucket,
)
from stormwall._clock import one_clock


class TestOneClock:
    def test_none_given(self):
        """No clock given: None (the caller picks its default)."""
        assert None is one_clock(("a", None), ("b", None))

    def test_the_one_clock_given(self):
        """The same clock given several times, with gaps, is returned."""
        clock = MockClock()

        assert clock is one_clock(("a", None), ("b", clock), ("c", clock))

    def test_a_second_clock_names_its_parameter(self):
        """The first clock that differs names its parameter and the hint."""
        first, second = MockClock(), MockClock()

        with pytest.raises(ConfigError) as info:
            one_clock(("a", first), ("b", first), ("c", second), hint="fix it")

        assert "c" == info.value.parameter
        assert str(info.value).endswith("fix it")
        assert " a uses " in str(info.value)


class TestWhereTheRuleHolds:
    def test_executor_components(self):
        """Two components on two clocks: the second is named."""
        with pytest.raises(ConfigError) as info:
            ResilientExecutor(
                circuit_breaker=CircuitBreaker(clock=MockClock()),
                bulkhead=Bulkhead(1, clock=MockClock()),
            )

        assert "bulkhead" == info.value.parameter

    def test_executor_adopts_its_components_clock(self):
        """No executor clock: the components' one clock is the pipeline's."""
        clock = MockClock()
        bulkhead = Bulkhead(1)
        ex = AsyncResilientExecutor(
            circuit_breaker=CircuitBreaker(clock=clock), bulkhead=bulkhead
        )

        assert (clock, clock) == (ex.clock, bulkhead.clock)

    def test_composite_tiers(self):
        """A composite's tiers and its own clock= agree."""
        clock = MockClock()
        tier = TokenBucket(1, 1)
        composite = CompositeLimiter(
            TokenBucket(1, 1, clock=clock), tier, clock=clock
        )

        assert (clock, clock) == (composite.clock, tier.clock)

    def test_component_already_wired_elsewhere(self):
        """A component that adopted one executor's clock refuses another's,
        naming its parameter and the first executor."""
        breaker = CircuitBreaker("db")
        ResilientExecutor("first", circuit_breaker=breaker, clock=MockClock())

        with pytest.raises(ConfigError) as info:
            ResilientExecutor(
                "second", circuit_breaker=breaker, clock=MockClock()
            )

        assert "circuit_breaker" == info.value.parameter
        assert "'first'" in str(info.value)

    def test_component_wired_twice_on_one_clock(self):
        """The same component in two executors on one clock is fine."""
        clock = MockClock()
        bucket = TokenBucket(1, 1)
        ResilientExecutor("first", limiter=bucket, clock=clock)
        ResilientExecutor("second", limiter=bucket, clock=clock)

        assert clock is bucket.clock
