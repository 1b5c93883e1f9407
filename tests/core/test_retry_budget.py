"""
Tests for `RetryBudget`: the sliding-window cap on retries across calls.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stormwall import ConfigError, EventBus, MockClock, RetryBudget
from stormwall._component import Component
from stormwall._retry import RetryBudgetStatistics


def spend(budget, now, tries):
    """Try ``tries`` withdrawals at ``now``; return how many were allowed."""
    return sum(budget._withdraw(now) for _ in range(tries))


def deposit(budget, now, calls):
    for _ in range(calls):
        budget._deposit(now)


class TestConstruction:
    def test_is_a_component(self):
        """The budget is a Component named "retry_budget", so it can bind."""
        budget = RetryBudget()

        assert isinstance(budget, Component)
        assert "retry_budget" == budget.name

    def test_defaults(self):
        """The defaults are the documented ones: ratio 0.2, 10/s, ttl 10 s."""
        budget = RetryBudget()

        assert (0.2, 10.0, 10.0) == (
            budget.ratio,
            budget.min_per_second,
            budget.ttl,
        )

    def test_ttl_accepts_timedelta(self):
        """A timedelta ttl is stored in seconds."""
        assert 30.0 == RetryBudget(ttl=timedelta(seconds=30)).ttl

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({"ratio": 1}, id="ratio-one"),
            pytest.param({"min_per_second": 0}, id="min_per_second-zero"),
            pytest.param({"ttl": 0.001}, id="ttl-small"),
        ],
    )
    def test_edge_values_are_legal(self, kwargs):
        """Values at the edge of each domain are accepted."""
        RetryBudget(**kwargs)

    def test_repr(self):
        """The repr shows the three tunables."""
        assert "RetryBudget(ratio=0.5, min_per_second=1.0, ttl=3.0)" == repr(
            RetryBudget(ratio=0.5, min_per_second=1, ttl=3)
        )

    def test_bind_adopts_the_executor_clock(self):
        """A budget given no clock keeps time with its executor's."""
        budget = RetryBudget()
        clock = MockClock()

        budget._bind("ex", clock, EventBus(), "retry_policy")

        assert clock is budget.clock

    def test_bind_refuses_a_different_explicit_clock(self):
        """Two explicit clocks that disagree are a ConfigError."""
        budget = RetryBudget(clock=MockClock())

        with pytest.raises(ConfigError) as info:
            budget._bind("ex", MockClock(), EventBus(), "retry_policy")

        assert "retry_policy" == info.value.parameter


class TestArithmetic:
    def test_ratio_of_calls(self):
        """ratio 0.2 after 100 calls allows exactly 20 retries."""
        budget = RetryBudget(ratio=0.2, min_per_second=0, ttl=10)
        deposit(budget, 0.0, 100)

        assert 20 == spend(budget, 0.0, 30)

    def test_denied_withdrawal_spends_nothing(self):
        """A denied retry leaves the window as it was and is counted."""
        budget = RetryBudget(ratio=0.5, min_per_second=0, clock=MockClock())
        deposit(budget, 0.0, 2)
        spend(budget, 0.0, 1)

        assert budget._withdraw(0.0) is False
        assert (
            RetryBudgetStatistics(
                calls=2,
                retries=1,
                available=0,
                total_calls=2,
                total_retries=1,
                total_denied=1,
            )
            == budget.statistics()
        )

    def test_min_per_second_alone(self):
        """With no calls, min_per_second * ttl retries are allowed."""
        budget = RetryBudget(ratio=0.2, min_per_second=2, ttl=5)

        assert 10 == spend(budget, 0.0, 50)

    def test_ratio_and_reserve_add_up(self):
        """The allowance is ratio * calls + min_per_second * ttl."""
        budget = RetryBudget(ratio=0.5, min_per_second=1, ttl=3)
        deposit(budget, 0.0, 10)

        assert 8 == spend(budget, 0.0, 50)

    @pytest.mark.parametrize(
        ("ratio", "calls", "expected"),
        [
            pytest.param(0.57, 100, 57, id="0.57x100-rounds-down-in-float"),
            pytest.param(0.07, 100, 7, id="0.07x100"),
            pytest.param(0.1, 30, 3, id="0.1x30"),
            pytest.param(0.3, 10, 3, id="0.3x10"),
            pytest.param(0.2, 4, 0, id="below-one"),
            pytest.param(1.0, 5, 5, id="ratio-one"),
        ],
    )
    def test_float_rounding_does_not_cost_a_retry(
        self, ratio, calls, expected
    ):
        """An allowance that is an integer on paper is met exactly."""
        budget = RetryBudget(ratio=ratio, min_per_second=0)
        deposit(budget, 0.0, calls)

        assert expected == spend(budget, 0.0, calls + 5)

    def test_calls_after_denial_refill(self):
        """New calls make room for more retries."""
        budget = RetryBudget(ratio=0.2, min_per_second=0)
        deposit(budget, 0.0, 10)
        spend(budget, 0.0, 5)
        deposit(budget, 0.0, 5)

        assert 1 == spend(budget, 0.0, 5)


class TestWindow:
    def test_old_calls_age_out(self):
        """Calls older than ttl stop counting as the clock advances."""
        clock = MockClock()
        budget = RetryBudget(ratio=0.2, min_per_second=0, ttl=10, clock=clock)
        deposit(budget, clock.now(), 100)
        clock.advance(5)
        deposit(budget, clock.now(), 50)
        clock.advance(5)

        assert 50 == budget.statistics().calls
        assert 10 == spend(budget, clock.now(), 30)

    def test_old_retries_age_out(self):
        """Retries older than ttl stop counting against the budget."""
        clock = MockClock()
        budget = RetryBudget(ratio=0.2, min_per_second=0, ttl=10, clock=clock)
        deposit(budget, 0.0, 100)
        spend(budget, 0.0, 20)
        clock.advance(9)
        deposit(budget, clock.now(), 100)

        assert 20 == spend(budget, clock.now(), 30)
        clock.advance(1)
        # The t=0 calls and retries left together: 100 calls, 20 retries.
        assert 0 == spend(budget, clock.now(), 30)

    @pytest.mark.parametrize(
        ("deposited_at", "checked_at", "expected_calls"),
        [
            pytest.param(0.0, 8.99, 1, id="still-counted-before-0.9ttl"),
            pytest.param(0.0, 9.99, 1, id="counted-just-before-ttl"),
            pytest.param(0.0, 10.0, 0, id="gone-at-ttl"),
            pytest.param(0.99, 9.98, 1, id="late-in-slice-counted-0.9ttl"),
            pytest.param(0.99, 10.0, 0, id="late-in-slice-gone-at-slice-end"),
        ],
    )
    def test_a_call_counts_between_0_9_ttl_and_ttl(
        self, deposited_at, checked_at, expected_calls
    ):
        """With ten slices a call counts for 0.9 ttl at least, ttl at most."""
        clock = MockClock()
        budget = RetryBudget(ttl=10, clock=clock)
        budget._deposit(deposited_at)
        clock.jump_to(checked_at)

        assert expected_calls == budget.statistics().calls

    def test_idle_longer_than_ttl_forgets_everything(self):
        """After a long idle period the window is empty again."""
        clock = MockClock()
        budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=1, clock=clock)
        deposit(budget, 0.0, 5)
        spend(budget, 0.0, 5)
        clock.advance(3600)

        stats = budget.statistics()

        assert (0, 0, 0) == (stats.calls, stats.retries, stats.available)
        assert (5, 5) == (stats.total_calls, stats.total_retries)

    def test_late_timestamp_counts_in_the_current_slice(self):
        """A time earlier than the latest seen is counted now, not lost."""
        clock = MockClock(start=5.0)
        budget = RetryBudget(ratio=1.0, min_per_second=0, ttl=10, clock=clock)
        budget._deposit(5.0)
        budget._deposit(1.0)  # read before another thread's 5.0

        assert 2 == budget.statistics().calls
        clock.advance(10.0)
        assert 0 == budget.statistics().calls

    def test_statistics_available(self):
        """available is the whole retries the window allows right now."""
        budget = RetryBudget(ratio=0.25, min_per_second=0.5, ttl=2)
        budget._bind("ex", MockClock(), EventBus(), "retry_policy")
        deposit(budget, 0.0, 9)
        spend(budget, 0.0, 1)

        # 0.25 * 9 + 0.5 * 2 - 1 = 2.25
        assert 2 == budget.statistics().available


class _Model:
    """A per-event reference with the same slice rounding, in exact math."""

    def __init__(self, ratio, min_per_second, ttl):
        self.ratio = Fraction(ratio)
        self.reserve = Fraction(min_per_second) * Fraction(ttl)
        self.width = ttl / 10
        self.epoch = None
        self.events = []

    def _at(self, now):
        e = math.floor(now / self.width)
        if self.epoch is None or e > self.epoch:
            self.epoch = e
        self.events = [(t, k) for t, k in self.events if self.epoch - t < 10]
        return self.epoch

    def deposit(self, now):
        epoch = self._at(now)
        self.events.append((epoch, "call"))

    def withdraw(self, now):
        epoch = self._at(now)
        calls = sum(k == "call" for _, k in self.events)
        retries = len(self.events) - calls
        if retries + 1 > self.ratio * calls + self.reserve:
            return False
        self.events.append((epoch, "retry"))
        return True


class TestAgainstModel:
    @given(
        ratio=st.sampled_from(["0.07", "0.1", "0.2", "0.57", "1"]),
        min_per_second=st.sampled_from(["0", "0.3", "1.5"]),
        ttl=st.sampled_from([1.0, 2.5, 10.0]),
        ops=st.lists(
            st.tuples(
                st.sampled_from(["deposit", "withdraw"]),
                st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3, 1.0, 4.0]),
            ),
            max_size=300,
        ),
    )
    def test_same_decisions_as_a_per_event_log(
        self, ratio, min_per_second, ttl, ops
    ):
        """The ring decides exactly like a per-event log with exact math."""
        budget = RetryBudget(
            ratio=float(ratio), min_per_second=float(min_per_second), ttl=ttl
        )
        model = _Model(Fraction(ratio), Fraction(min_per_second), ttl)
        now = 0.0
        for op, dt in ops:
            now += dt
            if op == "deposit":
                budget._deposit(now)
                model.deposit(now)
            else:
                assert model.withdraw(now) == budget._withdraw(now)


class TestThreads:
    def test_concurrent_withdrawals_respect_the_arithmetic(self):
        """Four threads racing for retries get exactly ratio * calls."""
        budget = RetryBudget(ratio=0.2, min_per_second=0, ttl=10)
        barrier = threading.Barrier(4)
        granted = []

        def worker():
            barrier.wait()
            deposit(budget, 1.0, 1000)
            barrier.wait()
            granted.append(spend(budget, 1.0, 500))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert 800 == sum(granted)
        assert (4000, 800, 1200) == (
            budget.statistics().total_calls,
            budget.statistics().total_retries,
            budget.statistics().total_denied,
        )

    def test_interleaved_traffic_never_exceeds_the_allowance(self):
        """Mixed deposits and withdrawals from 4 threads stay within bounds."""
        budget = RetryBudget(ratio=0.2, min_per_second=0, ttl=10)
        barrier = threading.Barrier(4)

        def worker():
            barrier.wait()
            for _ in range(2000):
                budget._deposit(1.0)
                budget._withdraw(1.0)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        retries = budget._window_retries
        assert 8000 == budget._window_calls
        assert retries <= 0.2 * 8000
        assert 8000 == retries + budget.statistics().total_denied
