"""
``stormwall.testing``: `EventRecorder` and its assertions, and the pytest
plugin's fixtures registered by entry point.
"""

from __future__ import annotations

import pytest

import stormwall
from stormwall import EventBus, MockClock
from stormwall.events import AttemptEnded, CallEnded, CallStarted, Event
from stormwall.testing import EventRecorder


def call_started(i=1):
    return CallStarted(time=0.0, executor="x", key="k", call_id=i)


def call_ended(outcome="success"):
    return CallEnded(time=1.0, outcome=outcome, attempts=1, duration=1.0)


class TestEventRecorder:
    def test_records_while_open(self):
        """A recorder keeps events only between enter and exit."""
        bus = EventBus()

        with EventRecorder(bus) as rec:
            bus.emit(call_started())
        bus.emit(call_ended())

        assert [CallStarted] == [type(e) for e in rec.events]
        assert ["stormwall.call.started"] == rec.names()

    def test_start_close_idempotent(self):
        """start() and close() may be called twice."""
        bus = EventBus()
        rec = EventRecorder(bus).start().start()

        bus.emit(call_started())
        rec.close()
        rec.close()

        assert 1 == len(rec.events)
        assert "1 events" in repr(rec)

    def test_of_type_and_clear(self):
        """of_type filters by class (subclasses too); clear forgets."""
        bus = EventBus()
        with EventRecorder(bus) as rec:
            bus.emit(call_started())
            bus.emit(call_ended())

            assert 1 == len(rec.of_type(CallEnded))
            assert 2 == len(rec.of_type(Event))
            rec.clear()
            assert [] == rec.events

    def test_assert_emitted_returns_match(self):
        """assert_emitted finds an event by field values."""
        bus = EventBus()
        with EventRecorder(bus) as rec:
            bus.emit(call_ended("failure"))
            bus.emit(call_ended("success"))

        found = rec.assert_emitted(CallEnded, outcome="success")

        assert "success" == found.outcome

    def test_assert_emitted_failure_message(self):
        """A failed assert_emitted lists what was seen."""
        bus = EventBus()
        with EventRecorder(bus) as rec:
            bus.emit(call_ended("failure"))

        with pytest.raises(AssertionError, match="outcome='failure'") as info:
            rec.assert_emitted(CallEnded, outcome="success")

        assert "no CallEnded(outcome='success')" in str(info.value)

    def test_assert_not_emitted(self):
        """assert_not_emitted passes on absence and fails on presence."""
        bus = EventBus()
        with EventRecorder(bus) as rec:
            bus.emit(call_started())

        rec.assert_not_emitted(CallEnded)
        with pytest.raises(AssertionError, match="expected no CallStarted"):
            rec.assert_not_emitted(CallStarted)

    def test_assert_sequence_subsequence_and_exact(self):
        """assert_sequence checks order; exact=True forbids extras."""
        bus = EventBus()
        with EventRecorder(bus) as rec:
            bus.emit(call_started())
            bus.emit(AttemptEnded(time=0, outcome="success", duration=0))
            bus.emit(call_ended())

        rec.assert_sequence(CallStarted, CallEnded)
        rec.assert_sequence(CallStarted, AttemptEnded, CallEnded, exact=True)
        with pytest.raises(AssertionError, match="in order"):
            rec.assert_sequence(CallEnded, CallStarted)
        with pytest.raises(AssertionError, match="exactly") as info:
            rec.assert_sequence(CallStarted, CallEnded, exact=True)
        assert "CallStarted, AttemptEnded, CallEnded" in str(info.value)

    def test_default_bus(self):
        """Without bus= the recorder listens on stormwall.default_bus."""
        with EventRecorder() as rec:
            stormwall.default_bus.emit(call_started())

        assert 1 == len(rec.events)


class TestPlugin:
    def test_fixtures_registered_by_entry_point(self, pytester):
        """mock_clock and stormwall_events are available to any test suite
        once stormwall is installed."""
        pytester.makepyfile(
            """
            import stormwall
            from stormwall import MockClock, ResilientExecutor, RetryPolicy
            from stormwall.events import RetryScheduled

            def test_uses_fixtures(mock_clock, stormwall_events):
                assert isinstance(mock_clock, MockClock)
                ex = ResilientExecutor(
                    retry_policy=RetryPolicy(
                        base_delay=30, max_delay=60, jitter=None
                    ),
                    clock=mock_clock,
                )
                calls = []
                def flaky():
                    calls.append(1)
                    if len(calls) < 3:
                        raise OSError("down")
                    return "ok"
                assert ex.run("k", flaky) == "ok"
                delays = [
                    e.delay for e in stormwall_events.of_type(RetryScheduled)
                ]
                assert delays == [30, 60]
                assert mock_clock.now() == 90
            """
        )

        pytester.makeini(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )

        result = pytester.runpytest("-p", "no:cacheprovider")

        result.assert_outcomes(passed=1)

    def test_mock_clock_fixture_fresh(self, mock_clock):
        """The fixture is a MockClock at time zero."""
        assert isinstance(mock_clock, MockClock)
        assert 0.0 == mock_clock.now()
