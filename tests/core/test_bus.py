"""The event bus: subscribe, emit, routed subscriptions, error isolation."""

from __future__ import annotations

import logging
import threading

import pytest

from stormwall import ConfigError, EventBus, Subscription, default_bus
from stormwall.events import (
    AttemptEnded,
    CallEnded,
    CallStarted,
    Event,
    RetryScheduled,
)


def started(i=0):
    return CallStarted(time=float(i), executor="x", key="k", call_id=i)


def ended():
    return CallEnded(time=1.0, outcome="success", attempts=1, duration=1.0)


class TestSubscribe:
    def test_handler_receives_subscribed_types_only(self):
        """A handler subscribed to a type sees only events of that type."""
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, CallStarted)

        bus.emit(started())
        bus.emit(ended())

        assert [CallStarted] == [type(e) for e in seen]

    def test_no_types_means_every_event(self):
        """A handler subscribed without types sees everything."""
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append)

        bus.emit(started())
        bus.emit(ended())

        assert 2 == len(seen)

    def test_base_class_subscription_matches_subclasses(self):
        """Subscribing to Event matches every concrete event."""
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, Event)

        bus.emit(ended())

        assert 1 == len(seen)

    def test_handlers_run_in_subscription_order(self):
        """Handlers run inline, in the order they subscribed."""
        bus = EventBus()
        order = []
        bus.subscribe(lambda e: order.append("a"))
        bus.subscribe(lambda e: order.append("b"), CallStarted)

        bus.emit(started())

        assert ["a", "b"] == order

    def test_close_unsubscribes(self):
        """A closed subscription receives nothing more; close is idempotent."""
        bus = EventBus()
        seen = []
        sub = bus.subscribe(seen.append)

        sub.close()
        sub.close()
        bus.emit(started())

        assert [] == seen
        assert sub.active is False

    def test_context_manager_unsubscribes(self):
        """Leaving the with block ends the subscription."""
        bus = EventBus()
        seen = []

        with bus.subscribe(seen.append) as sub:
            bus.emit(started())
            assert sub.active
        bus.emit(started())

        assert 1 == len(seen)

    def test_unsubscribe_during_emission(self):
        """A handler may close a subscription while an event is delivered."""
        bus = EventBus()
        seen = []
        subs = []

        def closer(event):
            subs[1].close()

        subs.append(bus.subscribe(closer))
        subs.append(bus.subscribe(seen.append))

        bus.emit(started(1))  # delivered to the snapshot taken at emission
        bus.emit(started(2))

        assert [1] == [e.call_id for e in seen]

    def test_subscribe_during_emission(self):
        """A handler added during an emission sees the next event."""
        bus = EventBus()
        seen = []

        def adder(event):
            if not seen and event.call_id == 1:
                bus.subscribe(seen.append)

        bus.subscribe(adder)
        bus.emit(started(1))
        bus.emit(started(2))

        assert [2] == [e.call_id for e in seen]

    @pytest.mark.parametrize(
        ("args", "param"),
        [
            pytest.param((42,), "handler", id="handler-not-callable"),
            pytest.param((print, int), "event_types", id="type-not-event"),
            pytest.param((print, "x"), "event_types", id="type-str"),
        ],
    )
    def test_bad_subscriptions(self, args, param):
        """Bad arguments raise ConfigError naming them."""
        with pytest.raises(ConfigError) as info:
            EventBus().subscribe(*args)

        assert param == info.value.parameter

    def test_repr(self):
        """Subscriptions and buses describe themselves."""
        bus = EventBus()
        sub = bus.subscribe(print, CallStarted)

        assert "CallStarted" in repr(sub)
        assert "active" in repr(sub)
        assert "subscriptions=1" in repr(bus)


class TestWants:
    def test_nobody_listening(self):
        """wants() is False with no subscriber at all."""
        assert EventBus().wants(CallStarted) is False

    def test_only_subscribed_types(self):
        """wants() follows the subscribed types and unsubscription."""
        bus = EventBus()
        sub = bus.subscribe(print, RetryScheduled)

        assert bus.wants(RetryScheduled) is True
        assert bus.wants(AttemptEnded) is False
        sub.close()
        assert bus.wants(RetryScheduled) is False


class TestIsolation:
    def test_raising_handler_isolated(self, caplog):
        """A raising handler stops neither the others nor the emitter."""
        bus = EventBus()
        seen = []

        def broken(event):
            raise RuntimeError("exporter down")

        bus.subscribe(broken)
        bus.subscribe(seen.append)

        with caplog.at_level(logging.ERROR, logger="stormwall"):
            bus.emit(started(1))
            bus.emit(started(2))

        assert [1, 2] == [e.call_id for e in seen]
        assert 2 == bus.statistics().handler_errors
        records = [r for r in caplog.records if r.name == "stormwall"]
        assert 1 == len(records)  # reported once, then only counted
        assert "exporter down" in records[0].exc_text

    def test_each_broken_handler_reported_once(self, caplog):
        """Two different broken handlers are each reported once."""
        bus = EventBus()
        bus.subscribe(lambda e: 1 / 0)
        bus.subscribe(lambda e: {}["missing"])

        with caplog.at_level(logging.ERROR, logger="stormwall"):
            for _ in range(3):
                bus.emit(started())

        assert 2 == len(caplog.records)
        assert 6 == bus.statistics().handler_errors

    def test_broken_logging_does_not_break_the_report(self):
        """When the stormwall logger itself raises, emit still returns."""

        class Broken(logging.Handler):
            def emit(self, record):
                raise RuntimeError("logging down")

        stormwall_logger = logging.getLogger("stormwall")
        broken = Broken()
        old_raise, logging.raiseExceptions = logging.raiseExceptions, True
        stormwall_logger.addHandler(broken)
        try:
            bus = EventBus()
            bus.subscribe(lambda e: 1 / 0)
            bus.subscribe(lambda e: {}["x"])

            bus.emit(started())
        finally:
            stormwall_logger.removeHandler(broken)
            logging.raiseExceptions = old_raise

        assert 2 == bus.statistics().handler_errors


class TestConcurrency:
    def test_emit_while_subscribing_from_threads(self):
        """Concurrent emits and (un)subscriptions lose no event of a stable
        subscriber and never raise."""
        bus = EventBus()
        seen = []
        bus.subscribe(seen.append, CallStarted)
        stop = threading.Event()
        errors = []

        def churn():
            try:
                while not stop.is_set():
                    bus.subscribe(lambda e: None).close()
            except Exception as exc:
                errors.append(exc)

        def emitter():
            for i in range(5000):
                bus.emit(started(i))

        churners = [threading.Thread(target=churn) for _ in range(2)]
        emitters = [threading.Thread(target=emitter) for _ in range(2)]
        for t in churners + emitters:
            t.start()
        for t in emitters:
            t.join(30)
        stop.set()
        for t in churners:
            t.join(30)

        assert [] == errors
        assert 10_000 == len(seen)


class TestDefaultBus:
    def test_default_bus_is_an_event_bus(self):
        """stormwall.default_bus is the process-wide EventBus."""
        assert isinstance(default_bus, EventBus)

    def test_generation_counts_subscriptions(self):
        """generation bumps on subscribe, so executors can re-announce."""
        bus = EventBus()
        before = bus.statistics().generation

        bus.subscribe(print).close()

        assert before + 1 == bus.statistics().generation


class TestRoutes:
    def test_routes_call_one_handler_per_type(self):
        """A routed subscription delivers each type to its own handler, the
        most specific subscribed base winning, and closes as one."""
        bus = EventBus()
        seen = []
        sub = bus.subscribe_routes(
            {
                CallStarted: lambda e: seen.append(("started", e.call_id)),
                Event: lambda e: seen.append(("other", e.name)),
            }
        )

        bus.emit(started(1))
        bus.emit(ended())
        sub.close()
        bus.emit(started(2))

        assert [("started", 1), ("other", "stormwall.call.ended")] == seen
        assert bus.wants(CallStarted) is False

    def test_subscribe_routes_is_public_and_returns_a_subscription(self):
        """Subscribing by route is a public bus method: it returns a
        Subscription that ends every route at once, also as a context
        manager."""
        bus = EventBus()
        seen = []

        with bus.subscribe_routes({CallEnded: seen.append}) as sub:
            bus.emit(ended())
            assert isinstance(sub, Subscription)
            assert sub.active is True
        bus.emit(ended())

        assert 1 == len(seen)
        assert sub.active is False
        assert bus.wants(CallEnded) is False

    def test_subscribe_routes_first_and_last(self):
        """A route marked first runs before the handlers subscribed
        earlier, one marked last after those subscribed later."""
        bus = EventBus()
        seen = []
        bus.subscribe(lambda e: seen.append(("plain", e.name)))
        bus.subscribe_routes(
            {CallStarted: lambda e: seen.append(("open", e.name))},
            first=(CallStarted,),
        )
        bus.subscribe_routes(
            {CallEnded: lambda e: seen.append(("close", e.name))},
            last=(CallEnded,),
        )
        bus.subscribe(lambda e: seen.append(("late", e.name)))

        bus.emit(started())
        bus.emit(ended())

        assert [
            ("open", "stormwall.call.started"),
            ("plain", "stormwall.call.started"),
            ("late", "stormwall.call.started"),
            ("plain", "stormwall.call.ended"),
            ("late", "stormwall.call.ended"),
            ("close", "stormwall.call.ended"),
        ] == seen

    @pytest.mark.parametrize(
        ("routes", "kwargs", "parameter"),
        [
            ({int: print}, {}, "event_types"),
            ({CallEnded: "print"}, {}, "handler"),
            ({CallEnded: print}, {"first": (int,)}, "event_types"),
            ({CallEnded: print}, {"last": (str,)}, "event_types"),
        ],
    )
    def test_subscribe_routes_config_errors(self, routes, kwargs, parameter):
        """A route key that is not an Event type, or a handler that is
        not callable, is a ConfigError naming the parameter."""
        with pytest.raises(ConfigError) as info:
            EventBus().subscribe_routes(routes, **kwargs)

        assert parameter == info.value.parameter

    def test_routed_errors_reported_once_per_subscription(self, caplog):
        """Several failing routes of one subscription are logged once."""
        bus = EventBus()
        bus.subscribe_routes(
            {CallStarted: lambda e: 1 / 0, CallEnded: lambda e: {}["x"]}
        )

        with caplog.at_level(logging.ERROR, logger="stormwall"):
            bus.emit(started())
            bus.emit(ended())

        assert 1 == len(caplog.records)
        assert 2 == bus.statistics().handler_errors


def ended_with(outcome, call_id=1):
    return CallEnded(
        time=1.0,
        call_id=call_id,
        outcome=outcome,
        attempts=1,
        duration=1.0,
    )


class TestOutcomes:
    """A subscription may take only some outcomes of calls and attempts."""

    def test_only_the_declared_outcomes_are_delivered(self):
        """A plain subscription with outcomes for CallEnded sees only
        those; its other types are unfiltered."""
        bus = EventBus()
        seen = []
        bus.subscribe(
            seen.append,
            CallEnded,
            CallStarted,
            outcomes={CallEnded: {"failure"}},
        )

        bus.emit(ended_with("success", 1))
        bus.emit(ended_with("failure", 2))
        bus.emit(started(3))

        assert [2, 3] == [e.call_id for e in seen]

    def test_routes_take_declared_outcomes_only(self):
        """A routed subscription filters its routed type the same way."""
        bus = EventBus()
        seen = []
        bus.subscribe_routes(
            {CallEnded: seen.append},
            last=(CallEnded,),
            outcomes={CallEnded: ("rejected", "failure")},
        )

        for i, outcome in enumerate(("success", "rejected", "fallback")):
            bus.emit(ended_with(outcome, i))

        assert ["rejected"] == [e.outcome for e in seen]

    def test_wants_outcome(self):
        """wants_outcome() is True when any handler takes that outcome:
        an unfiltered one takes them all."""
        bus = EventBus()
        assert bus.wants_outcome(CallEnded, "success") is False

        sub = bus.subscribe(
            print, CallEnded, outcomes={CallEnded: {"failure"}}
        )

        assert bus.wants(CallEnded) is True
        assert bus.wants_outcome(CallEnded, "failure") is True
        assert bus.wants_outcome(CallEnded, "success") is False
        assert bus.wants_outcome(AttemptEnded, "failure") is False

        bus.subscribe(print, CallEnded)
        assert bus.wants_outcome(CallEnded, "success") is True
        sub.close()
        assert bus.wants_outcome(CallEnded, "failure") is True

    def test_a_failing_filtered_handler_is_isolated_and_reported_once(
        self, caplog
    ):
        """A filtered handler that raises is isolated like any other,
        logged once however many times it fails."""
        bus = EventBus()
        bus.subscribe(
            lambda e: 1 / 0, CallEnded, outcomes={CallEnded: {"failure"}}
        )

        with caplog.at_level(logging.ERROR, logger="stormwall"):
            bus.emit(ended_with("failure"))
            bus.emit(ended_with("failure"))
            bus.emit(ended_with("success"))

        assert 1 == len(caplog.records)
        assert 2 == bus.statistics().handler_errors

    @pytest.mark.parametrize(
        ("types", "outcomes"),
        [
            pytest.param((CallEnded,), [CallEnded], id="not-a-mapping"),
            pytest.param(
                (CallStarted,), {CallStarted: {"x"}}, id="no-outcome-field"
            ),
            pytest.param(
                (AttemptEnded,), {CallEnded: {"failure"}}, id="not-subscribed"
            ),
            pytest.param((CallEnded,), {CallEnded: "failure"}, id="a-str"),
            pytest.param((CallEnded,), {CallEnded: {1}}, id="not-str"),
            pytest.param((CallEnded,), {int: {"failure"}}, id="not-event"),
        ],
    )
    def test_bad_outcomes_are_config_errors(self, types, outcomes):
        """outcomes= that is not a mapping of subscribed types with an
        outcome to collections of str is refused, naming it."""
        with pytest.raises(ConfigError) as info:
            EventBus().subscribe(print, *types, outcomes=outcomes)

        assert "outcomes" == info.value.parameter
