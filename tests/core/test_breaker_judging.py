"""
When a rate breaker judges its window: on failures and slow calls only.

A success that is not slow can only lower the failure and slow-call rates,
so judging the window after it is wasted work, except in the two cases
where the rate can still cross a threshold on a success: the window has
just reached ``minimum_calls``, or outcomes have aged out of a time window
since the last judgement. These tests count the judgements, and check with
hypothesis that the breaker decides exactly as the old rule (judge after
every outcome) does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stormwall import CircuitBreaker, CircuitState, MockClock
from stormwall._core._breaker import BreakerConfig, BreakerCore


@pytest.fixture
def judgements(monkeypatch):
    """Count every call of the core's window judgement."""
    calls = []
    original = BreakerCore._check_rates

    def counting(self, window, now):
        calls.append(now)
        return original(self, window, now)

    monkeypatch.setattr(BreakerCore, "_check_rates", counting)
    return calls


def _succeed(breaker, clock, n, duration=0.0):
    for _ in range(n):
        permit = breaker._admit(None)
        clock.advance(duration)
        breaker._on_success(permit, duration, None)


def _fail(breaker):
    breaker._on_failure(breaker._admit(None), ValueError(), 0.0, None)


class TestJudgedOnFailuresOnly:
    def test_successes_past_minimum_calls_are_not_judged(self, judgements):
        """Successes are judged until the window holds minimum_calls, then
        not at all; each failure is judged."""
        clock = MockClock()
        breaker = CircuitBreaker(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            minimum_calls=10,
            clock=clock,
        )

        _succeed(breaker, clock, 10)
        below_minimum = len(judgements)
        _succeed(breaker, clock, 1000)
        after_successes = len(judgements)
        _fail(breaker)

        assert 10 == below_minimum
        assert 10 == after_successes
        assert 11 == len(judgements)
        assert "closed" == breaker.state

    def test_a_slow_success_is_judged(self, judgements):
        """A slow success can raise the slow-call rate: it is judged."""
        clock = MockClock()
        breaker = CircuitBreaker(
            failure_threshold=None,
            slow_call_duration=1.0,
            slow_call_rate_threshold=0.5,
            minimum_calls=2,
            clock=clock,
        )
        _succeed(breaker, clock, 2)
        before = len(judgements)

        _succeed(breaker, clock, 2, duration=1.0)  # 2 slow calls of 4

        assert 2 == len(judgements) - before
        assert "open" == breaker.state

    def test_success_that_reaches_minimum_calls_trips(self):
        """The old rule tripped on the success that brought the window to
        minimum_calls with the rate already at the threshold; so does the
        new one."""
        clock = MockClock()
        breaker = CircuitBreaker(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            minimum_calls=4,
            clock=clock,
        )
        _fail(breaker)
        _fail(breaker)
        _succeed(breaker, clock, 1)
        assert "closed" == breaker.state

        _succeed(breaker, clock, 1)

        assert "open" == breaker.state

    def test_time_window_judges_once_outcomes_age_out(self, judgements):
        """In a time window, successes within one bucket are not judged;
        the first one after old outcomes aged out is (the rate may have
        risen), and it trips when it did."""
        clock = MockClock()
        breaker = CircuitBreaker(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_duration=20,  # 20 buckets of one second
            minimum_calls=4,
            clock=clock,
        )
        _succeed(breaker, clock, 4)  # t=0: judged up to minimum_calls
        before = len(judgements)
        _succeed(breaker, clock, 100)  # t=0, same bucket: never judged
        unjudged = len(judgements) - before
        clock.advance(10)
        for _ in range(4):
            _fail(breaker)  # t=10: 4 failures of 108 calls
        assert "closed" == breaker.state
        clock.advance(15)  # t=25: the 104 successes of t=0 age out

        _succeed(breaker, clock, 1)  # 4 failures of 5 calls

        assert 0 == unjudged
        assert "open" == breaker.state


class _JudgeEveryOutcome(BreakerCore):
    """The old rule: a core that judges the window after every success."""

    def on_success(self, permit, duration, now):
        window = self.window
        if self._current(permit) is not CircuitState.CLOSED or window is None:
            return super().on_success(permit, duration, now)
        self.record.consecutive_failures = 0
        window.record(False, self.is_slow(duration), now)
        return self._check_rates(window, now)


_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["success", "failure", "statistics"]),
        st.sampled_from([0.0, 0.5, 2.0]),  # duration: slow from 1.0
        st.sampled_from([0.0, 0.0, 0.0, 0.3, 0.6, 40.0]),  # time step
    ),
    max_size=120,
)

_CONFIGS = st.builds(
    BreakerConfig,
    failure_threshold=st.sampled_from([None, 3, 50]),
    recovery_timeout=st.just(5.0),
    failure_rate_threshold=st.sampled_from([None, 0.2, 0.5, 1.0]),
    window_size=st.sampled_from([1, 3, 10]),
    window_duration=st.sampled_from([None, 1.0, 30.0]),
    minimum_calls=st.sampled_from([1, 2, 5, 12]),
    slow_call_duration=st.sampled_from([None, 1.0]),
    half_open_max_calls=st.just(2),
).filter(lambda c: c.failure_threshold is not None or c.keeps_window)


@settings(max_examples=600, deadline=None)
@given(_CONFIGS, st.sampled_from([None, 0.5]), _STEPS)
def test_same_decisions_as_judging_every_outcome(config, slow_rate, steps):
    """Fed the same outcomes at the same times, the breaker and a core
    that judges after every outcome make the same transitions and keep
    the same record and window."""
    if slow_rate is not None and config.slow_call_duration is not None:
        config = BreakerConfig(
            **{
                **{f: getattr(config, f) for f in config.__dataclass_fields__},
                "slow_call_rate_threshold": slow_rate,
            }
        )
    new, old = BreakerCore(config), _JudgeEveryOutcome(config)
    now = 0.0
    for kind, duration, step in steps:
        now += step
        if kind == "statistics":
            assert old.totals(now) == new.totals(now)
            continue
        (permit, moved), (old_permit, old_moved) = (
            new.admit(now),
            old.admit(now),
        )
        assert (old_permit, old_moved) == (permit, moved)
        if permit is None:
            continue
        if kind == "success":
            change = new.on_success(permit, duration, now)
            old_change = old.on_success(permit, duration, now)
        else:
            change = new.on_failure(permit, duration, now)
            old_change = old.on_failure(permit, duration, now)
        assert old_change == change
        assert old.record == new.record
    assert old.totals(now) == new.totals(now)
