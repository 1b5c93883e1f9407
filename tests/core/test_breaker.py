"""
Tests of the circuit breaker: its rules, its events and its thread safety.

The breaker is driven through the internal methods the executors call
(``_admit``, ``_on_success``, ``_on_failure``, ``_release``), on a
`MockClock`, with a plain `EventBus` whose events land in a list.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import stormwall
from stormwall import (
    AttemptTimeoutError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    ConfigError,
    EventBus,
    MockClock,
)
from stormwall._component import CallContext
from stormwall._core import _breaker as core_breaker
from stormwall._core._health import CountWindow, TimeWindow
from stormwall.events import BreakerRejected, BreakerStateChanged
from tests.support.bad_inputs_breaker import BAD_INPUTS


BOOM = RuntimeError("boom")


@pytest.fixture
def clock():
    return MockClock()


@pytest.fixture
def bus():
    return EventBus()


@pytest.fixture
def events(bus):
    received = []
    bus.subscribe(received.append)
    return received


@pytest.fixture
def make(clock, bus):
    def make(**kwargs):
        return CircuitBreaker("b", clock=clock, bus=bus, **kwargs)

    return make


def succeed(breaker, duration=0.0):
    breaker._on_success(breaker._admit(None), duration, None)


def fail(breaker, error=BOOM, duration=0.0):
    breaker._on_failure(breaker._admit(None), error, duration, None)


def changes(events):
    return [
        (e.from_state, e.to_state, e.reason)
        for e in events
        if isinstance(e, BreakerStateChanged)
    ]


def rejections(events):
    return [
        (e.state, e.retry_after)
        for e in events
        if isinstance(e, BreakerRejected)
    ]


def trip(breaker, times=5):
    for _ in range(times):
        fail(breaker)


class TestConfiguration:
    @pytest.mark.parametrize(("build", "parameter"), BAD_INPUTS)
    def test_bad_inputs(self, build, parameter):
        """An out-of-domain value raises ConfigError naming the parameter."""
        with pytest.raises(ConfigError) as info:
            build()

        assert parameter == info.value.parameter

    def test_defaults(self):
        """The defaults give a closed breaker named circuit_breaker."""
        breaker = CircuitBreaker()

        assert "circuit_breaker" == breaker.name
        assert CircuitState.CLOSED == breaker.state
        assert 0.0 == breaker.retry_after

    def test_state_values(self):
        """CircuitState is a str enum with the documented values."""
        assert [
            "closed",
            "open",
            "half_open",
            "forced_open",
            "disabled",
        ] == [s.value for s in CircuitState]
        assert "open" == CircuitState.OPEN

    def test_rate_rule_alone_is_legal(self):
        """failure_threshold=None is legal when a rate rule can trip."""
        breaker = CircuitBreaker(
            failure_threshold=None, failure_rate_threshold=0.5
        )

        assert CircuitState.CLOSED == breaker.state

    def test_timedelta(self, make, clock):
        """Durations may be given as timedelta."""
        breaker = make(failure_threshold=1, recovery_timeout=timedelta(1))
        fail(breaker)

        assert 86400.0 == breaker.retry_after

    def test_store_must_be_a_breaker_store(self):
        """Anything but a BreakerStore (e.g. RedisBreakerStore) is refused,
        with a hint at stormwall.backends.redis."""
        with pytest.raises(ConfigError, match=r"backends\.redis"):
            CircuitBreaker(store=object())

    def test_exported(self):
        """The public names are re-exported by stormwall."""
        assert stormwall.CircuitBreaker is CircuitBreaker
        assert stormwall.CircuitState is CircuitState
        assert stormwall.BreakerStatistics is type(
            CircuitBreaker().statistics()
        )

    def test_repr(self, make):
        """The repr shows the name and the state."""
        assert "<CircuitBreaker 'b' state=closed>" == repr(make())


class TestConsecutiveFailures:
    def test_trips_at_threshold(self, make, events):
        """The failure_threshold-th failure in a row opens the breaker."""
        breaker = make(failure_threshold=3)
        trip(breaker, 2)
        closed = breaker.state
        fail(breaker)

        assert CircuitState.CLOSED == closed
        assert CircuitState.OPEN == breaker.state
        assert [("closed", "open", "failure_threshold")] == changes(events)

    def test_success_resets_count(self, make):
        """A success in between resets the consecutive count."""
        breaker = make(failure_threshold=3)
        trip(breaker, 2)
        succeed(breaker)
        trip(breaker, 2)

        assert CircuitState.CLOSED == breaker.state
        assert 2 == breaker.statistics().consecutive_failures

    def test_rule_off(self, make):
        """failure_threshold=None never trips on a run of failures."""
        breaker = make(failure_threshold=None, failure_rate_threshold=1.0)
        trip(breaker, 9)

        assert CircuitState.CLOSED == breaker.state

    def test_open_rejects(self, make, clock, events):
        """An open breaker raises CircuitOpenError with the exact wait."""
        breaker = make(failure_threshold=1, recovery_timeout=30)
        fail(breaker)
        clock.advance(10)

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert "b" == info.value.breaker
        assert 20.0 == info.value.retry_after
        assert [("open", 20.0)] == rejections(events)
        assert 1 == breaker.statistics().rejected


class TestFailureRate:
    def test_count_window_trips(self, make, events):
        """The failure rate over the last window_size calls trips it."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=4,
            minimum_calls=4,
        )
        for outcome in (succeed, fail, succeed):
            outcome(breaker)
        closed = breaker.state
        fail(breaker)

        assert CircuitState.CLOSED == closed
        assert [("closed", "open", "failure_rate")] == changes(events)

    def test_below_threshold_stays_closed(self, make):
        """A rate just below the threshold does not trip."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=10,
            minimum_calls=10,
        )
        for i in range(10):
            fail(breaker) if i < 4 else succeed(breaker)
        stats = breaker.statistics()

        assert CircuitState.CLOSED == stats.state
        assert 0.4 == stats.failure_rate

    def test_minimum_calls(self, make):
        """No rate is computed below minimum_calls."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=100,
            minimum_calls=5,
        )
        trip(breaker, 4)
        stats = breaker.statistics()
        fail(breaker)

        assert CircuitState.CLOSED == stats.state
        assert stats.failure_rate is None
        assert 4 == stats.calls_in_window
        assert CircuitState.OPEN == breaker.state

    def test_success_can_trip_at_minimum(self, make):
        """Reaching minimum_calls with a success still evaluates the rate."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            minimum_calls=4,
        )
        trip(breaker, 3)
        succeed(breaker)

        assert CircuitState.OPEN == breaker.state

    def test_minimum_capped_at_window_size(self, make):
        """A count window smaller than minimum_calls still trips when full."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=1.0,
            window_size=3,
            minimum_calls=10,
        )
        trip(breaker, 3)

        assert CircuitState.OPEN == breaker.state

    def test_count_window_slides(self, make):
        """Old failures leave the count window."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=4,
            minimum_calls=4,
        )
        fail(breaker)
        for _ in range(4):
            succeed(breaker)
        fail(breaker)
        stats = breaker.statistics()

        assert CircuitState.CLOSED == stats.state
        assert 0.25 == stats.failure_rate

    def test_time_window_trips(self, make, clock, events):
        """A time window trips on the rate of the last window_duration s."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_duration=10,
            minimum_calls=4,
            window_size=1,
        )
        for outcome in (succeed, fail, succeed, fail):
            outcome(breaker)
            clock.advance(1)

        assert [("closed", "open", "failure_rate")] == changes(events)

    def test_time_window_expires(self, make, clock):
        """Outcomes older than window_duration no longer count."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_duration=10,
            minimum_calls=3,
        )
        trip(breaker, 2)
        clock.advance(10)
        stats = breaker.statistics()
        for _ in range(3):
            succeed(breaker)
        fail(breaker)

        assert 0 == stats.calls_in_window
        assert CircuitState.CLOSED == breaker.state
        assert 4 == breaker.statistics().calls_in_window


class TestSlowCalls:
    def test_slow_rate_trips(self, make, events):
        """The slow-call rate trips it, counting slow successes."""
        breaker = make(
            slow_call_duration=2.0,
            slow_call_rate_threshold=0.5,
            minimum_calls=4,
            window_size=4,
        )
        succeed(breaker, 0.1)
        succeed(breaker, 2.0)
        succeed(breaker, 0.1)
        closed = breaker.state
        succeed(breaker, 5.0)

        assert CircuitState.CLOSED == closed
        assert [("closed", "open", "slow_call_rate")] == changes(events)

    def test_slow_failures_count(self, make):
        """A slow failure counts toward both rates."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=1.0,
            slow_call_duration=1.0,
            minimum_calls=2,
        )
        fail(breaker, duration=3.0)
        succeed(breaker, duration=0.5)
        stats = breaker.statistics()

        assert 0.5 == stats.failure_rate
        assert 0.5 == stats.slow_call_rate
        assert 1 == stats.slow_calls_in_window

    def test_duration_alone_only_measures(self, make):
        """slow_call_duration without a threshold measures but never trips."""
        breaker = make(slow_call_duration=1.0, minimum_calls=2)
        for _ in range(10):
            succeed(breaker, 9.0)
        stats = breaker.statistics()

        assert CircuitState.CLOSED == stats.state
        assert 1.0 == stats.slow_call_rate
        assert 0.0 == stats.failure_rate


class TestRecovery:
    def test_half_open_exactly_at_recovery_timeout(self, make, clock, events):
        """The breaker is half-open from exactly recovery_timeout on."""
        breaker = make(failure_threshold=1, recovery_timeout=30)
        fail(breaker)
        clock.advance(29.999)
        before = breaker.state
        clock.jump_to(30.0)

        assert CircuitState.OPEN == before
        assert CircuitState.HALF_OPEN == breaker.state
        assert CircuitState.HALF_OPEN == breaker.state
        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
        ] == changes(events)

    def test_admit_makes_the_move(self, make, clock, events):
        """A call admitted after the open period is a probe."""
        breaker = make(failure_threshold=1, recovery_timeout=5)
        fail(breaker)
        clock.advance(5)
        permit = breaker._admit(None)
        stats = breaker.statistics()
        breaker._on_success(permit, 0.0, None)

        assert 1 == stats.half_open_in_flight
        assert CircuitState.CLOSED == breaker.state
        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "half_open", "recovery_timeout"),
            ("half_open", "closed", "probe_succeeded"),
        ] == changes(events)

    def test_rejecting(self, make, clock):
        """_rejecting is true while open, false once a probe may pass."""
        breaker = make(failure_threshold=1, recovery_timeout=5)
        closed = breaker._rejecting()
        fail(breaker)
        opened = breaker._rejecting()
        clock.advance(5)

        assert (False, True, False) == (closed, opened, breaker._rejecting())

    def test_retry_after(self, make, clock):
        """retry_after counts down the open period, then is 0."""
        breaker = make(failure_threshold=1, recovery_timeout=10)
        fail(breaker)
        clock.advance(4)
        during = breaker.retry_after
        clock.advance(6)

        assert 6.0 == during
        assert 0.0 == breaker.retry_after

    def test_max_recovery_timeout_doubles(self, make, clock):
        """Each re-trip from half-open doubles the open period to the cap."""
        breaker = make(
            failure_threshold=1, recovery_timeout=10, max_recovery_timeout=35
        )
        fail(breaker)
        periods = []
        for _ in range(4):
            periods.append(breaker.statistics().open_period)
            clock.advance(breaker.retry_after)
            fail(breaker)

        assert [10.0, 20.0, 35.0, 35.0] == periods

    def test_growth_resets_on_close(self, make, clock):
        """Once closed, the next trip opens for recovery_timeout again."""
        breaker = make(
            failure_threshold=1, recovery_timeout=10, max_recovery_timeout=100
        )
        fail(breaker)
        clock.advance(10)
        fail(breaker)
        grown = breaker.statistics().open_period
        clock.advance(20)
        succeed(breaker)
        fail(breaker)

        assert 20.0 == grown
        assert 10.0 == breaker.statistics().open_period

    def test_no_growth_without_max(self, make, clock):
        """Without max_recovery_timeout the open period stays fixed."""
        breaker = make(failure_threshold=1, recovery_timeout=10)
        fail(breaker)
        clock.advance(10)
        fail(breaker)

        assert 10.0 == breaker.retry_after


class TestHalfOpen:
    @pytest.fixture
    def half_open(self, make, clock):
        def half_open(**kwargs):
            breaker = make(failure_threshold=1, recovery_timeout=5, **kwargs)
            fail(breaker, OSError())
            clock.advance(5)
            return breaker

        return half_open

    def test_max_calls_in_flight(self, half_open, events):
        """At most half_open_max_calls probes run; the rest are rejected."""
        breaker = half_open(half_open_max_calls=2, success_threshold=3)
        probes = [breaker._admit(None), breaker._admit(None)]
        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)
        full = (
            breaker.statistics().half_open_in_flight,
            breaker.retry_after,
            breaker._rejecting(),
        )
        breaker._on_success(probes[0], 0.0, None)

        assert info.value.retry_after is None
        assert [("half_open", None)] == rejections(events)
        assert (2, None, False) == full
        assert 0.0 == breaker.retry_after

    def test_success_threshold(self, half_open, events):
        """success_threshold successful probes close the breaker."""
        breaker = half_open(half_open_max_calls=1, success_threshold=3)
        states = []
        for _ in range(3):
            states.append(breaker.state)
            succeed(breaker)

        assert [CircuitState.HALF_OPEN] * 3 == states
        assert CircuitState.CLOSED == breaker.state
        assert ("half_open", "closed", "probe_succeeded") == changes(events)[
            -1
        ]

    def test_failure_reopens(self, half_open, events):
        """The first recorded failure of a probe reopens the breaker."""
        breaker = half_open(success_threshold=2)
        succeed(breaker)
        fail(breaker)

        assert CircuitState.OPEN == breaker.state
        assert ("half_open", "open", "probe_failed") == changes(events)[-1]

    def test_timeout_reopens_and_frees(self, half_open, clock):
        """A probe that times out reopens; the next period probes again."""
        breaker = half_open()
        fail(breaker, AttemptTimeoutError(1.0))
        reopened = breaker.state
        clock.advance(5)
        succeed(breaker)

        assert CircuitState.OPEN == reopened
        assert CircuitState.CLOSED == breaker.state

    def test_non_recorded_error_frees_slot(self, half_open):
        """A probe raising a non-recorded exception is a success."""
        breaker = half_open(record_on=OSError, success_threshold=2)
        fail(breaker, KeyError("k"))
        stats = breaker.statistics()

        assert 0 == stats.half_open_in_flight
        assert 1 == stats.half_open_successes
        assert CircuitState.HALF_OPEN == stats.state

    def test_ignored_error_frees_slot(self, half_open):
        """A probe raising an ignored exception frees its slot, no more."""
        breaker = half_open(ignore_on=KeyError)
        fail(breaker, KeyError("k"))
        stats = breaker.statistics()
        succeed(breaker)

        assert (0, 0) == (
            stats.half_open_in_flight,
            stats.half_open_successes,
        )
        assert CircuitState.CLOSED == breaker.state

    def test_cancelled_probe_frees_slot(self, half_open):
        """A released (cancelled) probe frees its slot."""
        breaker = half_open()
        breaker._release(breaker._admit(None))
        succeed(breaker)

        assert CircuitState.CLOSED == breaker.state

    def test_base_exception_frees_slot(self, half_open):
        """A probe ending in a BaseException is released, not recorded."""
        breaker = half_open()
        fail(breaker, KeyboardInterrupt())
        stats = breaker.statistics()

        assert (CircuitState.HALF_OPEN, 0) == (
            stats.state,
            stats.half_open_in_flight,
        )

    def test_slow_probe_fails(self, make, clock, events):
        """With the slow-call rule on, a slow probe reopens the breaker."""
        breaker = make(
            failure_threshold=1,
            recovery_timeout=5,
            slow_call_duration=1.0,
            slow_call_rate_threshold=1.0,
        )
        fail(breaker)
        clock.advance(5)
        succeed(breaker, duration=1.5)

        assert ("half_open", "open", "probe_failed") == changes(events)[-1]

    def test_slow_probe_without_rule(self, make, clock):
        """Without a slow-call threshold a slow probe is a success."""
        breaker = make(
            failure_threshold=1, recovery_timeout=5, slow_call_duration=1.0
        )
        fail(breaker)
        clock.advance(5)
        succeed(breaker, duration=1.5)

        assert CircuitState.CLOSED == breaker.state

    def test_closing_clears_window(self, half_open):
        """A closed breaker starts over with an empty window."""
        breaker = half_open(failure_rate_threshold=0.5)
        succeed(breaker)
        stats = breaker.statistics()

        assert (0, 0) == (stats.calls_in_window, stats.consecutive_failures)


class TestClassification:
    @pytest.mark.parametrize(
        ("kwargs", "error", "failed"),
        [
            pytest.param({}, ValueError(), True, id="default-records-all"),
            pytest.param({}, None, True, id="rejected-result"),
            pytest.param(
                {"record_on": OSError}, ValueError(), False, id="not-recorded"
            ),
            pytest.param(
                {"record_on": (OSError, ValueError)},
                ValueError(),
                True,
                id="tuple",
            ),
            pytest.param(
                {"record_on": lambda e: "5xx" in str(e)},
                RuntimeError("5xx"),
                True,
                id="predicate-yes",
            ),
            pytest.param(
                {"record_on": lambda e: "5xx" in str(e)},
                RuntimeError("4xx"),
                False,
                id="predicate-no",
            ),
            pytest.param(
                {"ignore_on": ValueError},
                ValueError(),
                None,
                id="ignored",
            ),
            pytest.param(
                {"record_on": ValueError, "ignore_on": ValueError},
                ValueError(),
                None,
                id="ignore-wins",
            ),
            pytest.param(
                {"ignore_on": lambda e: isinstance(e, KeyError)},
                KeyError(),
                None,
                id="ignore-predicate",
            ),
            pytest.param({}, KeyboardInterrupt(), None, id="base-exception"),
            pytest.param(
                {"record_on": BaseException},
                SystemExit(),
                None,
                id="base-exception-never-recorded",
            ),
            pytest.param(
                {}, AttemptTimeoutError(1.0), True, id="attempt-timeout"
            ),
        ],
    )
    def test_classification(self, make, kwargs, error, failed):
        """An error counts as failure, success (True/False) or nothing."""
        breaker = make(
            failure_threshold=None,
            failure_rate_threshold=1.0,
            minimum_calls=100,
            **kwargs,
        )
        fail(breaker, error)
        stats = breaker.statistics()

        if failed is None:
            assert 0 == stats.calls_in_window
        else:
            assert (1, int(failed)) == (
                stats.calls_in_window,
                stats.failures_in_window,
            )

    def test_not_recorded_resets_consecutive(self, make):
        """A non-recorded exception resets the consecutive count."""
        breaker = make(failure_threshold=2, record_on=OSError)
        fail(breaker, OSError())
        fail(breaker, ValueError())
        fail(breaker, OSError())

        assert CircuitState.CLOSED == breaker.state

    def test_raising_predicate_releases(self, make, clock):
        """A predicate that raises propagates, and the probe slot is freed."""

        def broken(error):
            raise LookupError

        breaker = make(failure_threshold=1, recovery_timeout=1)
        fail(breaker)
        clock.advance(1)
        breaker._record_on = broken
        with pytest.raises(LookupError):
            fail(breaker)

        assert 0 == breaker.statistics().half_open_in_flight


class TestManualControl:
    def test_force_open(self, make, events):
        """force_open rejects everything with retry_after None."""
        breaker = make()
        breaker.force_open()
        breaker.force_open()

        with pytest.raises(CircuitOpenError) as info:
            breaker._admit(None)

        assert info.value.retry_after is None
        assert [("closed", "forced_open", "forced_open")] == changes(events)
        assert [("forced_open", None)] == rejections(events)
        assert None is breaker.retry_after
        assert True is breaker._rejecting()

    def test_forced_open_outlives_recovery(self, make, clock):
        """A forced-open breaker does not turn half-open by itself."""
        breaker = make(recovery_timeout=1)
        breaker.force_open()
        clock.advance(100)

        assert CircuitState.FORCED_OPEN == breaker.state

    def test_disable(self, make, events):
        """A disabled breaker admits everything and records nothing."""
        breaker = make(failure_threshold=1)
        breaker.disable()
        breaker.disable()
        trip(breaker, 10)
        stats = breaker.statistics()

        assert CircuitState.DISABLED == stats.state
        assert 0 == stats.consecutive_failures
        assert 0.0 == breaker.retry_after
        assert [("closed", "disabled", "disabled")] == changes(events)

    def test_reset(self, make, events):
        """reset closes and forgets; from closed it reports nothing."""
        breaker = make(failure_threshold=3, failure_rate_threshold=1.0)
        trip(breaker, 2)
        breaker.reset()
        cleared = breaker.statistics()
        trip(breaker, 3)
        breaker.reset()

        assert (0, 0) == (
            cleared.consecutive_failures,
            cleared.calls_in_window,
        )
        assert [
            ("closed", "open", "failure_threshold"),
            ("open", "closed", "reset"),
        ] == changes(events)
        assert CircuitState.CLOSED == breaker.state

    @pytest.mark.parametrize(
        ("first", "second", "expected"),
        [
            pytest.param(
                "force_open",
                "disable",
                ("forced_open", "disabled", "disabled"),
                id="forced-to-disabled",
            ),
            pytest.param(
                "disable",
                "force_open",
                ("disabled", "forced_open", "forced_open"),
                id="disabled-to-forced",
            ),
            pytest.param(
                "disable",
                "reset",
                ("disabled", "closed", "reset"),
                id="disabled-reset",
            ),
            pytest.param(
                "force_open",
                "reset",
                ("forced_open", "closed", "reset"),
                id="forced-reset",
            ),
        ],
    )
    def test_manual_transitions(self, make, events, first, second, expected):
        """Operator actions move between the manual states."""
        breaker = make()
        getattr(breaker, first)()
        getattr(breaker, second)()

        assert expected == changes(events)[-1]

    def test_force_open_from_half_open(self, make, clock, events):
        """force_open while probing drops the probes in flight."""
        breaker = make(failure_threshold=1, recovery_timeout=1)
        fail(breaker)
        clock.advance(1)
        probe = breaker._admit(None)
        breaker.force_open()
        breaker._on_success(probe, 0.0, None)

        assert CircuitState.FORCED_OPEN == breaker.state
        assert ("half_open", "forced_open", "forced_open") == changes(events)[
            -1
        ]


class TestStalePermits:
    def test_closed_permit_after_trip(self, make):
        """A call admitted before a trip cannot affect the open state."""
        breaker = make(failure_threshold=1)
        slow = breaker._admit(None)
        fail(breaker)
        breaker._on_failure(slow, BOOM, 0.0, None)
        breaker._on_success(slow, 0.0, None)
        stats = breaker.statistics()

        assert (CircuitState.OPEN, 1) == (
            stats.state,
            stats.consecutive_failures,
        )

    def test_old_probe_cannot_free_new_slot(self, make, clock):
        """A probe of a past half-open period frees no slot of the next."""
        breaker = make(
            failure_threshold=1, recovery_timeout=1, half_open_max_calls=2
        )
        fail(breaker)
        clock.advance(1)
        old = breaker._admit(None)
        fail(breaker)
        clock.advance(1)
        new = breaker._admit(None)
        breaker._release(old)
        breaker._on_failure(old, BOOM, 0.0, None)
        stats = breaker.statistics()
        breaker._on_success(new, 0.0, None)

        assert (CircuitState.HALF_OPEN, 1) == (
            stats.state,
            stats.half_open_in_flight,
        )
        assert CircuitState.CLOSED == breaker.state

    def test_permit_before_reset(self, make):
        """Outcomes of calls admitted before reset() are not recorded."""
        breaker = make(failure_threshold=2)
        early = [breaker._admit(None), breaker._admit(None)]
        breaker.reset()
        for permit in early:
            breaker._on_failure(permit, BOOM, 0.0, None)

        assert CircuitState.CLOSED == breaker.state
        assert 0 == breaker.statistics().consecutive_failures

    def test_old_closed_permit_in_new_closed_period(self, make, clock):
        """A call from a previous closed period does not count in the next."""
        breaker = make(failure_threshold=1, recovery_timeout=1)
        ancient = breaker._admit(None)
        fail(breaker)
        clock.advance(1)
        succeed(breaker)
        breaker._on_failure(ancient, BOOM, 0.0, None)

        assert CircuitState.CLOSED == breaker.state


class TestEvents:
    def test_context_stamped(self, make, bus, events):
        """Events inside a call carry the call's identity."""
        breaker = make(failure_threshold=1)
        ctx = CallContext("users-api", "user:1", 7, bus, attempt=2)
        breaker._on_failure(breaker._admit(ctx), BOOM, 0.0, ctx)
        with pytest.raises(CircuitOpenError):
            breaker._admit(ctx)

        assert [
            ("users-api", "user:1", 7, 2, "b"),
            ("users-api", "user:1", 7, 2, "b"),
        ] == [
            (e.executor, e.key, e.call_id, e.attempt, e.breaker)
            for e in events
        ]

    def test_standalone_on_own_bus(self, make, events):
        """Outside a call, events go to the breaker's bus, unstamped."""
        breaker = make()
        breaker.force_open()

        assert [(None, None, 0.0)] == [
            (e.executor, e.key, e.time) for e in events
        ]

    def test_listener_may_reenter(self, make, bus, clock):
        """A listener may call back into the breaker (no lock held)."""
        seen = []
        bus.subscribe(
            lambda e: seen.append((e.to_state, breaker.statistics().state)),
            BreakerStateChanged,
        )
        breaker = make(failure_threshold=1, recovery_timeout=1)
        fail(breaker)
        clock.advance(1)
        succeed(breaker)

        assert [
            ("open", "open"),
            ("half_open", "half_open"),
            ("closed", "closed"),
        ] == seen

    def test_no_events_without_listeners(self, make, clock):
        """With nobody listening nothing is built, and nothing breaks."""
        breaker = CircuitBreaker(
            clock=clock, bus=EventBus(), failure_threshold=1
        )
        fail(breaker)

        with pytest.raises(CircuitOpenError):
            breaker._admit(None)


class TestStatistics:
    def test_open_statistics(self, make, clock):
        """While open, statistics show when it opened and until when."""
        breaker = make(failure_threshold=2, recovery_timeout=10)
        clock.advance(3)
        trip(breaker, 2)
        stats = breaker.statistics()

        assert (
            stormwall.BreakerStatistics(
                state=CircuitState.OPEN,
                failure_rate=None,
                slow_call_rate=None,
                calls_in_window=0,
                failures_in_window=0,
                slow_calls_in_window=0,
                consecutive_failures=2,
                rejected=0,
                opened_at=3.0,
                open_until=13.0,
                open_period=10.0,
                half_open_in_flight=0,
                half_open_successes=0,
                retry_after=10.0,
            )
            == stats
        )

    def test_closed_statistics(self, make):
        """A fresh breaker reports nothing open."""
        stats = make().statistics()

        assert (None, None, None, 0.0) == (
            stats.opened_at,
            stats.open_until,
            stats.open_period,
            stats.retry_after,
        )

    def test_frozen(self, make):
        """Statistics are frozen."""
        stats = make().statistics()

        with pytest.raises(AttributeError):
            stats.state = CircuitState.OPEN


class TestCore:
    def test_core_on_plain_values(self):
        """The core decides from permits and now values alone."""
        core = core_breaker.BreakerCore(
            core_breaker.BreakerConfig(failure_threshold=2)
        )
        first, _ = core.admit(0.0)
        core.on_success(first, 0.0, 0.0)
        core.on_failure(core.admit(1.0)[0], 0.0, 1.0)
        change = core.on_failure(core.admit(2.0)[0], 0.0, 2.0)
        rejected = core.admit(3.0)
        probe, moved = core.admit(32.0)

        assert ("closed", "open", "failure_threshold", 1) == change
        assert (None, None) == rejected
        assert ("open", "half_open", "recovery_timeout", 2) == moved
        assert 2 == probe
        assert 1 == core.record.rejected

    def test_transition_is_plain_tuple(self):
        """A transition compares equal to a plain tuple: three strings and
        the breaker's change sequence."""
        change = core_breaker.BreakerCore(
            core_breaker.BreakerConfig()
        ).force_open(5.0)

        assert ("closed", "forced_open", "forced_open", 1) == change


class TestHealthWindows:
    def test_count_window_evicts(self):
        """A count window keeps the last size outcomes."""
        window = CountWindow(3)
        for failed, slow in [(1, 1), (0, 0), (1, 0), (0, 1)]:
            window.record(bool(failed), bool(slow), 0.0)

        assert (3, 1, 1) == window.totals(0.0)

    def test_time_window_buckets(self):
        """A time window drops whole buckets once they are too old."""
        window = TimeWindow(10.0, buckets=10)
        window.record(True, False, 0.5)
        window.record(False, True, 1.5)

        assert (2, 1, 1) == window.totals(9.9)
        assert (1, 0, 1) == window.totals(10.0)
        assert (0, 0, 0) == window.totals(11.0)

    def test_time_window_long_jump(self):
        """A jump far beyond the window clears everything once."""
        window = TimeWindow(1.0, buckets=4)
        for i in range(8):
            window.record(True, True, i * 0.25)
        window.record(False, False, 1e9)

        assert (1, 0, 0) == window.totals(1e9)

    def test_time_window_clock_backwards(self):
        """An outcome from the past lands in the newest bucket."""
        window = TimeWindow(1.0, buckets=4)
        window.record(True, False, 5.0)
        window.record(True, False, 4.0)

        assert (2, 2, 0) == window.totals(5.0)


class TestTransitionTable:
    def test_reasons_match_events(self):
        """Every trigger's value is one of the documented reasons."""
        assert {
            "failure_threshold",
            "failure_rate",
            "slow_call_rate",
            "recovery_timeout",
            "probe_succeeded",
            "probe_failed",
            "forced_open",
            "disabled",
            "reset",
        } == {t.value for t in core_breaker.Trigger}

    def test_no_self_loops(self):
        """No transition leads back to the state it leaves."""
        assert [] == [
            key for key, to in core_breaker.TRANSITIONS.items() if key[0] is to
        ]


class TestThreads:
    def test_stress(self, clock, bus):
        """8 threads x 5,000 calls keep every invariant and never deadlock."""
        max_probes = 2
        breaker = CircuitBreaker(
            "stress",
            clock=clock,
            bus=bus,
            failure_threshold=3,
            failure_rate_threshold=0.5,
            window_size=20,
            minimum_calls=5,
            recovery_timeout=0.01,
            half_open_max_calls=max_probes,
            success_threshold=2,
        )
        transitions = []
        bus.subscribe(transitions.append, BreakerStateChanged)
        in_probe = [0]
        worst = [0]
        counter = threading.Lock()
        errors = []
        barrier = threading.Barrier(8)

        def worker(seed):
            barrier.wait()
            try:
                for i in range(5000):
                    if seed == 0 and i % 50 == 0:
                        clock.advance(0.01)
                    try:
                        permit = breaker._admit(None)
                    except CircuitOpenError:
                        continue
                    probe = breaker.statistics().half_open_in_flight
                    with counter:
                        worst[0] = max(worst[0], probe)
                        in_probe[0] += 1
                    roll = (i * 7 + seed * 13) % 10
                    if roll < 4:
                        breaker._on_failure(permit, BOOM, 0.0, None)
                    elif roll < 5:
                        breaker._release(permit)
                    else:
                        breaker._on_success(permit, 0.0, None)
            except Exception as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=worker, args=(n,)) for n in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

        assert [] == [t for t in threads if t.is_alive()]
        assert [] == errors
        assert worst[0] <= max_probes
        assert in_probe[0] > 0
        stats = breaker.statistics()
        assert 0 <= stats.half_open_in_flight <= max_probes
        table = core_breaker.TRANSITIONS
        assert all(
            any(
                e.from_state == k[0] and e.reason == k[1] and e.to_state == v
                for k, v in table.items()
            )
            for e in transitions
        )
        assert len(transitions) > 2

    def test_no_lost_transition(self, clock, bus, events):
        """Racing threads produce one transition per trip, never two."""
        breaker = CircuitBreaker(
            clock=clock, bus=bus, failure_threshold=1, recovery_timeout=1
        )
        permits = [breaker._admit(None) for _ in range(50)]
        threads = [
            threading.Thread(
                target=breaker._on_failure, args=(p, BOOM, 0.0, None)
            )
            for p in permits
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)

        assert [("closed", "open", "failure_threshold")] == changes(events)


class TestRetryAfterExact:
    @pytest.mark.parametrize("recovery", [0.7, 1.1, 1 / 3, 30.0])
    @pytest.mark.parametrize("start", [0.0, 0.1, 100.0, 1e6 + 0.37])
    def test_sleeping_retry_after_reaches_half_open(self, recovery, start):
        """A caller who sleeps exactly the advertised retry_after gets a
        probe through, never one more rejection from float dust."""
        for offset in (0.1, 0.2, 1 / 7, 0.05):
            clock = MockClock(start=start)
            breaker = CircuitBreaker(
                failure_threshold=1, recovery_timeout=recovery, clock=clock
            )
            permit = breaker._admit(None)
            clock.advance(offset)
            breaker._on_failure(permit, RuntimeError(), 0.0, None)
            clock.advance(offset / 2)
            with pytest.raises(CircuitOpenError) as info:
                breaker._admit(None)

            clock.advance(info.value.retry_after)

            breaker._release(breaker._admit(None))
