"""
Prove that an outage cannot turn into a retry storm, in virtual time.

Run it with ``python -m pytest examples/test_retry_storm.py``. It uses only
stormwall's public testing kit: the ``mock_clock`` and ``stormwall_events``
fixtures (registered by stormwall's pytest plugin), `EventRecorder` and the
event classes of `stormwall.events`. No test sleeps for real: minutes of
back-off run in microseconds.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from stormwall import (
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    MockClock,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
)
from stormwall.events import (
    AttemptStarted,
    BreakerStateChanged,
    CallEnded,
    RetryBudgetExhausted,
    RetryScheduled,
)
from stormwall.testing import EventRecorder


CALLS = 1_000


class Outage:
    """A dependency that is down: every call raises, and is counted."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        """Fail, as the dependency does during the outage."""
        self.calls += 1
        raise ConnectionError("upstream unavailable")


def hammer(
    executor: ResilientExecutor, clock: MockClock, outage: Outage
) -> None:
    """Send CALLS calls, 100 a second, swallowing the failures."""
    for _ in range(CALLS):
        with contextlib.suppress(ConnectionError):
            executor.run("k", outage)
        clock.advance(0.01)


@pytest.fixture
def outage() -> Outage:
    """A fresh outage for every test."""
    return Outage()


def test_without_a_budget_an_outage_multiplies_the_load(
    mock_clock: MockClock, outage: Outage
) -> None:
    """With retries alone, every failing call costs max_attempts calls."""
    executor = ResilientExecutor(
        "no-budget",
        retry_policy=RetryPolicy(max_attempts=4, base_delay=0.05),
        clock=mock_clock,
        bus=EventBus(),
    )

    hammer(executor, mock_clock, outage)

    assert 4 * CALLS == outage.calls


def test_a_retry_budget_keeps_retries_a_fraction_of_the_traffic(
    mock_clock: MockClock,
    outage: Outage,
    stormwall_events: EventRecorder,
) -> None:
    """A RetryBudget caps retries at ratio * calls plus a small floor."""
    budget = RetryBudget(ratio=0.1, min_per_second=1, ttl=10)
    executor = ResilientExecutor(
        "with-budget",
        retry_policy=RetryPolicy(
            max_attempts=4,
            base_delay=0.05,
            budget=budget,
            rng=random.Random(7),  # deterministic jitter
        ),
        clock=mock_clock,
    )

    hammer(executor, mock_clock, outage)

    retries = len(stormwall_events.of_type(RetryScheduled))
    attempts = len(stormwall_events.of_type(AttemptStarted))
    assert attempts == outage.calls
    assert CALLS + retries == attempts
    # Without the budget this outage cost 4x the traffic (test above);
    # with it, retries add about ratio (10 %) plus the small per-second
    # floor: well under 20 %.
    assert attempts <= 1.2 * CALLS
    assert stormwall_events.of_type(RetryBudgetExhausted)
    # Every call still ended, and as a failure: nothing was hidden.
    outcomes = {e.outcome for e in stormwall_events.of_type(CallEnded)}
    assert {"failure"} == outcomes
    # Back-off ran in virtual time: the test took no real second.
    assert mock_clock.now() >= CALLS * 0.01


def test_an_open_breaker_stops_calls_reaching_the_dependency(
    mock_clock: MockClock,
    outage: Outage,
    stormwall_events: EventRecorder,
) -> None:
    """Once the breaker opens, calls fail fast and retries stop."""
    executor = ResilientExecutor(
        "with-breaker",
        retry_policy=RetryPolicy(max_attempts=4, base_delay=0.05),
        circuit_breaker=CircuitBreaker(
            "upstream", failure_threshold=5, recovery_timeout=30
        ),
        clock=mock_clock,
    )

    rejected = 0
    for _ in range(CALLS):
        try:
            executor.run("k", outage)
        except CircuitOpenError:
            rejected += 1
        except ConnectionError:
            pass
        mock_clock.advance(0.01)

    opened = stormwall_events.assert_emitted(
        BreakerStateChanged, breaker="upstream", to_state="open"
    )
    assert "closed" == opened.from_state
    # 10 s of traffic with a 30 s recovery timeout: it opened once, and
    # only the calls that tripped it reached the dependency.
    assert 5 == outage.calls
    assert CALLS - 1 <= rejected


def test_the_recorder_also_works_on_a_private_bus(
    mock_clock: MockClock, outage: Outage
) -> None:
    """An EventRecorder listens on any bus, not only the default one."""
    bus = EventBus()
    executor = ResilientExecutor(
        "private",
        retry_policy=RetryPolicy(max_attempts=3, base_delay=1, jitter=None),
        clock=mock_clock,
        bus=bus,
    )

    with EventRecorder(bus) as events, pytest.raises(ConnectionError):
        executor.run("k", outage)

    assert [1.0, 2.0] == [e.delay for e in events.of_type(RetryScheduled)]
    events.assert_sequence(
        AttemptStarted, RetryScheduled, AttemptStarted, RetryScheduled
    )
    assert 3.0 == mock_clock.now()
