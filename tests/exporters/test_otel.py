"""
The OpenTelemetry exporters: the span tree of calls and attempts, what spans
record (and, by default, never record: arguments, exception messages), and
the metrics through the OTel SDK, zeroed series included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest


pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import (
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from stormwall import (
    AsyncResilientExecutor,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ConfigError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import (
    AttemptEnded,
    AttemptStarted,
    CallEnded,
    CallStarted,
    RetryScheduled,
)
from stormwall.exporters import _vocabulary as vocab
from stormwall.exporters.otel import (
    MetricsExporter,
    TracingExporter,
)
from tests.support.harness import Harness


class Boom(Exception):
    pass


def policy(**kwargs):
    kwargs.setdefault("max_attempts", 3)
    kwargs.setdefault("base_delay", 1.0)
    kwargs.setdefault("jitter", None)
    return RetryPolicy(**kwargs)


class Tracing:
    """A fresh SDK pipeline: provider -> SimpleSpanProcessor -> memory."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("test")

    def spans(self):
        return list(self.memory.get_finished_spans())

    def named(self, name):
        return [s for s in self.spans() if s.name == name]

    def one(self, name):
        (span,) = self.named(name)
        return span


@pytest.fixture
def tracing():
    """An in-memory tracing pipeline, shut down after the test."""
    t = Tracing()
    yield t
    t.provider.shutdown()


def traced_exporter(harness, tracing, **kwargs):
    """An executor of ``harness`` and the TracingExporter on its bus."""
    record_key = kwargs.pop("record_key", False)
    kwargs.setdefault("clock", MockClock())
    ex = harness.executor(**kwargs)
    exporter = TracingExporter(tracing.provider, record_key=record_key)
    exporter.attach(ex.bus)
    return ex, exporter


def traced(harness, tracing, **kwargs):
    """An executor of ``harness`` traced into ``tracing``."""
    return traced_exporter(harness, tracing, **kwargs)[0]


def parent_of(span):
    return None if span.parent is None else span.parent.span_id


def sid(span):
    return span.context.span_id


def event_names(span):
    return [e.name for e in span.events]


def tree(tracing):
    """Everything a trace shows except ids and timestamps, in end order."""
    spans = tracing.spans()
    names = {sid(s): s.name for s in spans}
    return [
        (
            s.name,
            names.get(parent_of(s)),
            s.kind,
            s.status.status_code,
            dict(s.attributes),
            [
                (e.name, dict(e.attributes))
                for e in s.events
                if e.name != "exception"  # its stack trace differs
            ],
        )
        for s in spans
        if s.name != "request"
    ]


def retry_then_succeed(harness, tracing):
    """Two failures, then success, under an outer request span."""
    ex = traced(harness, tracing, retry_policy=policy())
    with tracing.tracer.start_as_current_span("request"):
        assert "ok" == harness.run(ex, "user:1", [Boom(1), Boom(2), "ok"])
    return ex


class TestCallTree:
    """One call span, one attempt span per attempt, parented correctly."""

    def test_retries_then_success(self, harness, tracing):
        """Two failed attempts and a success: 1 call span, 3 attempt spans,
        retry events with their delays, the call span Unset."""
        retry_then_succeed(harness, tracing)

        request = tracing.one("request")
        call = tracing.one("svc")
        attempts = tracing.named("svc attempt")
        assert 5 == len(tracing.spans())
        assert sid(request) == parent_of(call)
        assert request.context.trace_id == call.context.trace_id
        assert [sid(call)] * 3 == [parent_of(a) for a in attempts]
        assert [1, 2, 3] == [
            a.attributes["stormwall.attempt"] for a in attempts
        ]
        assert SpanKind.INTERNAL == call.kind
        assert {SpanKind.INTERNAL} == {a.kind for a in attempts}
        assert StatusCode.UNSET == call.status.status_code
        assert {
            "stormwall.executor": "svc",
            "stormwall.attempts": 3,
            "stormwall.outcome": "success",
        } == dict(call.attributes)
        retries = [
            e for e in call.events if e.name == "stormwall.retry.scheduled"
        ]
        assert [1.0, 2.0] == [
            e.attributes["stormwall.retry.delay"] for e in retries
        ]
        assert ["Boom", "Boom"] == [
            e.attributes["error.type"] for e in retries
        ]
        assert [1, 2] == [e.attributes["stormwall.attempt"] for e in retries]

    def test_failed_attempts_are_errors(self, harness, tracing):
        """A failed attempt has status ERROR, error.type and the exception;
        the successful one stays Unset."""
        retry_then_succeed(harness, tracing)

        attempts = tracing.named("svc attempt")
        assert [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET] == [
            a.status.status_code for a in attempts
        ]
        assert ["Boom", "Boom", None] == [
            a.attributes.get("error.type") for a in attempts
        ]
        assert ["failure", "failure", "success"] == [
            a.attributes["stormwall.outcome"] for a in attempts
        ]
        assert ["exception"] == event_names(attempts[0])
        exception = attempts[0].events[0].attributes
        assert "tests.exporters.test_otel.Boom" == exception["exception.type"]
        assert [] == event_names(attempts[2])

    def test_span_in_function_is_child_of_attempt(self, harness, tracing):
        """A span the function opens nests under the attempt that made it."""
        ex = traced(harness, tracing, retry_policy=policy())
        calls = []

        def work():
            with tracing.tracer.start_as_current_span("GET /users"):
                calls.append(1)
                if len(calls) < 2:
                    raise Boom

            return "ok"

        async def awork():
            return work()

        with tracing.tracer.start_as_current_span("request"):
            assert "ok" == harness.run_fn(ex, "k", work, awork)

        attempts = tracing.named("svc attempt")
        downstream = tracing.named("GET /users")
        assert [sid(a) for a in attempts] == [parent_of(d) for d in downstream]

    def test_attempt_is_current_in_function(self, harness, tracing):
        """While the function runs the current span is its attempt span;
        afterwards it is the caller's span again."""
        ex = traced(harness, tracing)
        seen = []

        def work():
            seen.append(trace.get_current_span())
            return "ok"

        async def awork():
            return work()

        with tracing.tracer.start_as_current_span("request") as request:
            harness.run_fn(ex, "k", work, awork)
            after = trace.get_current_span()

        assert seen[0].get_span_context() == tracing.one("svc attempt").context
        assert request is after

    def test_sync_and_async_give_the_same_tree(self):
        """The sync and the async executor produce identical traces."""
        shapes = []
        for kind in ("sync", "async"):
            tracing = Tracing()
            retry_then_succeed(Harness(kind), tracing)
            shapes.append(tree(tracing))
            tracing.provider.shutdown()

        assert shapes[0] == shapes[1]

    def test_no_outer_span_makes_a_root(self, harness, tracing):
        """Without a current span the call span is a trace root."""
        ex = traced(harness, tracing)

        harness.run(ex, "k", ["ok"])

        assert None is tracing.one("svc").parent

    def test_nested_executors_nest(self, tracing):
        """A call made inside another call's attempt is a child of it."""
        bus = EventBus()
        TracingExporter(tracing.provider).attach(bus)
        inner = ResilientExecutor("inner", bus=bus, clock=MockClock())
        outer = ResilientExecutor("outer", bus=bus, clock=MockClock())

        outer.run("k", lambda: inner.run("k", lambda: "ok"))

        assert sid(tracing.one("outer attempt")) == parent_of(
            tracing.one("inner")
        )
        assert sid(tracing.one("inner")) == parent_of(
            tracing.one("inner attempt")
        )


class TestOutcomes:
    """The call span tells how the call ended."""

    def test_exhausted_retries_fail_the_call(self, harness, tracing):
        """A call that fails for good is ERROR with the final error type."""
        ex = traced(harness, tracing, retry_policy=policy(max_attempts=2))

        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom(1), Boom(2)])

        call = tracing.one("svc")
        assert StatusCode.ERROR == call.status.status_code
        assert "Boom" == call.attributes["error.type"]
        assert "failure" == call.attributes["stormwall.outcome"]
        assert 2 == call.attributes["stormwall.attempts"]

    def test_open_breaker_rejection(self, harness, tracing):
        """A call short-circuited by an open breaker is ERROR, shows the
        rejection, and has no attempt span."""
        ex = traced(
            harness,
            tracing,
            circuit_breaker=CircuitBreaker("b", failure_threshold=1),
        )
        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom()])

        with pytest.raises(CircuitOpenError):
            harness.run(ex, "k", ["unreached"])

        tripped, rejected = tracing.named("svc")
        assert 1 == len(tracing.named("svc attempt"))
        (changed,) = tripped.events
        assert "stormwall.circuit_breaker.state_changed" == changed.name
        assert {
            "stormwall.circuit_breaker.name": "b",
            "stormwall.circuit_breaker.from_state": "closed",
            "stormwall.circuit_breaker.to_state": "open",
            "stormwall.circuit_breaker.reason": "failure_threshold",
        } == dict(changed.attributes)
        assert StatusCode.ERROR == rejected.status.status_code
        assert "CircuitOpenError" == rejected.attributes["error.type"]
        assert "rejected" == rejected.attributes["stormwall.outcome"]
        assert 0 == rejected.attributes["stormwall.attempts"]
        (event,) = rejected.events
        assert "stormwall.circuit_breaker.rejected" == event.name
        assert "b" == event.attributes["stormwall.circuit_breaker.name"]
        assert "open" == event.attributes["stormwall.circuit_breaker.state"]
        assert 30.0 == event.attributes["stormwall.retry_after"]

    def test_fallback_is_unset_with_outcome(self, harness, tracing):
        """A fallback value leaves the call span Unset, outcome fallback."""
        ex = traced(harness, tracing, fallback=lambda error: "cached")

        assert "cached" == harness.run(ex, "k", [Boom()])

        call = tracing.one("svc")
        assert StatusCode.UNSET == call.status.status_code
        assert "fallback" == call.attributes["stormwall.outcome"]
        assert "error.type" not in call.attributes
        assert ["stormwall.fallback.used"] == event_names(call)
        assert "Boom" == call.events[0].attributes["error.type"]

    def test_rejected_result_is_error_type_result(self, harness, tracing):
        """A result rejected by retry_on_result fails its attempt with
        error.type "result"."""
        ex = traced(
            harness,
            tracing,
            retry_policy=policy(retry_on_result=lambda r: r is None),
        )

        assert "ok" == harness.run(ex, "k", [None, "ok"])

        first, second = tracing.named("svc attempt")
        assert StatusCode.ERROR == first.status.status_code
        assert "result" == first.attributes["error.type"]
        assert StatusCode.UNSET == second.status.status_code
        retry = tracing.one("svc").events[0]
        assert "result" == retry.attributes["error.type"]

    def test_limiter_wait_and_rejection(self, harness, tracing):
        """A limiter wait and a limiter rejection are events on the call."""
        ex = traced(harness, tracing, limiter=TokenBucket(1, 1.0, name="tb"))
        strict = traced(
            harness,
            tracing,
            name="strict",
            limiter=TokenBucket(1, 1.0, name="tb0"),
            limiter_timeout=0,
        )
        harness.run(ex, "k", ["first"])
        harness.run(ex, "k", ["waits"])
        harness.run(strict, "k", ["first"])

        with pytest.raises(RateLimitedError):
            harness.run(strict, "k", ["refused"])

        first, waited = tracing.named("svc")
        _, refused = tracing.named("strict")
        assert [] == event_names(first)
        assert ["stormwall.rate_limiter.waited"] == event_names(waited)
        assert {
            "stormwall.rate_limiter.name": "tb",
            "stormwall.rate_limiter.waited": 1.0,
        } == dict(waited.events[0].attributes)
        assert ["stormwall.rate_limiter.rejected"] == event_names(refused)
        assert {
            "stormwall.rate_limiter.name": "tb0",
            "stormwall.retry_after": 1.0,
        } == dict(refused.events[0].attributes)
        assert "RateLimitedError" == refused.attributes["error.type"]
        assert StatusCode.ERROR == refused.status.status_code

    def test_bulkhead_rejection(self, harness, tracing):
        """A full bulkhead's refusal is an event on the call span."""
        bulkhead = Bulkhead(1, name="bh")
        ex = traced(harness, tracing, bulkhead=bulkhead)
        assert bulkhead.try_acquire()

        with pytest.raises(BulkheadFullError):
            harness.run(ex, "k", ["unreached"])

        call = tracing.one("svc")
        assert ["stormwall.bulkhead.rejected"] == event_names(call)
        assert {
            "stormwall.bulkhead.name": "bh",
            "stormwall.bulkhead.in_flight": 1,
        } == dict(call.events[0].attributes)
        assert "BulkheadFullError" == call.attributes["error.type"]

    def test_budget_exhausted(self, harness, tracing):
        """A retry the budget denies is an event on the call span."""
        budget = RetryBudget(ratio=0.1, min_per_second=0.1, ttl=10)
        ex = traced(
            harness,
            tracing,
            retry_policy=policy(max_attempts=5, budget=budget),
        )

        with pytest.raises(Boom):
            harness.run(ex, "k", [Boom(1), Boom(2), "unreached"])

        assert [
            "stormwall.retry.scheduled",
            "stormwall.retry_budget.exhausted",
        ] == event_names(tracing.one("svc"))

    def test_attempt_timeout(self, tracing):
        """An attempt that times out is ERROR with AttemptTimeoutError."""
        ex = traced(Harness("async"), tracing, timeout=1.0)
        clock = ex.clock

        async def slow():
            await clock.sleep_async(5)

        with pytest.raises(TimeoutError):
            asyncio.run(ex.run("k", slow))

        attempt = tracing.one("svc attempt")
        assert StatusCode.ERROR == attempt.status.status_code
        assert "AttemptTimeoutError" == attempt.attributes["error.type"]
        assert "timeout" == attempt.attributes["stormwall.outcome"]


class TestCancellation:
    """A cancelled call ends its spans and leaves nothing behind."""

    def test_sync_interrupt(self, harness, tracing):
        """KeyboardInterrupt ends both spans as cancelled, status Unset, and
        restores the caller's context."""
        ex, exporter = traced_exporter(harness, tracing, retry_policy=policy())

        with tracing.tracer.start_as_current_span("request") as request:
            with pytest.raises(KeyboardInterrupt):
                harness.run(ex, "k", [KeyboardInterrupt()])
            after = trace.get_current_span()

        assert request is after
        call, attempt = tracing.one("svc"), tracing.one("svc attempt")
        assert "cancelled" == call.attributes["stormwall.outcome"]
        assert "cancelled" == attempt.attributes["stormwall.outcome"]
        assert StatusCode.UNSET == call.status.status_code
        assert {} == exporter._calls

    @pytest.mark.asyncio
    async def test_task_cancelled_in_function(self, tracing):
        """A task cancelled while its function runs ends both spans."""
        bus = EventBus()
        exporter = TracingExporter(tracing.provider)
        exporter.attach(bus)
        ex = AsyncResilientExecutor("svc", bus=bus, clock=MockClock())
        started = asyncio.Event()

        async def hang():
            started.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(ex.run("k", hang))
        await started.wait()
        assert 1 == len(exporter._calls)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert {} == exporter._calls
        assert ["svc attempt", "svc"] == [s.name for s in tracing.spans()]
        assert (
            "cancelled" == tracing.one("svc").attributes["stormwall.outcome"]
        )

    @pytest.mark.asyncio
    async def test_task_cancelled_in_backoff(self, tracing):
        """A task cancelled during its back-off sleep ends its call span."""
        clock = MockClock(autojump=False)
        bus = EventBus()
        exporter = TracingExporter(tracing.provider)
        exporter.attach(bus)
        ex = AsyncResilientExecutor(
            "svc", retry_policy=policy(), bus=bus, clock=clock
        )

        async def boom():
            raise Boom

        task = asyncio.create_task(ex.run("k", boom))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert {} == exporter._calls
        call = tracing.one("svc")
        assert ["stormwall.retry.scheduled"] == event_names(call)
        assert "cancelled" == call.attributes["stormwall.outcome"]


class TestLostEvents:
    """Events a component reports by hand, some missing: spans still end,
    and contexts unwind to the caller's."""

    def events(self, tracing):
        bus = EventBus()
        exporter = TracingExporter(tracing.provider)
        exporter.attach(bus)
        ids = {"time": 0.0, "executor": "svc", "key": "k", "call_id": 7}
        return bus, exporter, ids

    def test_attempt_started_twice(self, tracing):
        """An attempt whose AttemptEnded went missing ends as cancelled
        when the next one starts; both are children of the call span."""
        bus, exporter, ids = self.events(tracing)
        with tracing.tracer.start_as_current_span("request") as request:
            bus.emit(CallStarted(**ids))
            bus.emit(AttemptStarted(**ids, attempt=1))
            bus.emit(AttemptStarted(**ids, attempt=2))
            second = trace.get_current_span()
            bus.emit(
                AttemptEnded(**ids, attempt=2, outcome="success", duration=0.0)
            )
            bus.emit(
                CallEnded(**ids, outcome="success", attempts=2, duration=0.0)
            )
            after = trace.get_current_span()

        assert request is after
        first, last = tracing.named("svc attempt")
        assert second.get_span_context() == last.context
        assert [1, "cancelled"] == [
            first.attributes["stormwall.attempt"],
            first.attributes["stormwall.outcome"],
        ]
        assert StatusCode.UNSET == first.status.status_code
        assert [2, "success"] == [
            last.attributes["stormwall.attempt"],
            last.attributes["stormwall.outcome"],
        ]
        call = tracing.one("svc")
        assert [sid(call), sid(call)] == [parent_of(first), parent_of(last)]
        assert {} == exporter._calls
        assert 7 not in vocab.CALL_SPANS

    def test_call_ended_with_an_attempt_open(self, tracing):
        """CallEnded ends an attempt still open as cancelled, first."""
        bus, exporter, ids = self.events(tracing)
        with tracing.tracer.start_as_current_span("request") as request:
            bus.emit(CallStarted(**ids))
            bus.emit(AttemptStarted(**ids, attempt=1))
            bus.emit(
                CallEnded(**ids, outcome="failure", attempts=1, duration=0.0)
            )
            after = trace.get_current_span()

        assert request is after
        assert ["svc attempt", "svc", "request"] == [
            s.name for s in tracing.spans()
        ]
        attempt, call, _ = tracing.spans()
        assert "cancelled" == attempt.attributes["stormwall.outcome"]
        assert StatusCode.UNSET == attempt.status.status_code
        assert "failure" == call.attributes["stormwall.outcome"]
        assert StatusCode.ERROR == call.status.status_code
        assert {} == exporter._calls

    def test_events_outside_a_call(self, tracing):
        """Events without a call id, or of a call never started, make no
        span."""
        bus, exporter, ids = self.events(tracing)
        bus.emit(CallStarted(time=0.0, executor="svc"))
        bus.emit(AttemptStarted(**ids, attempt=1))
        bus.emit(
            AttemptEnded(**ids, attempt=1, outcome="failure", duration=0.0)
        )
        bus.emit(CallEnded(**ids, outcome="success", attempts=1, duration=0.0))

        assert [] == tracing.spans()
        assert {} == exporter._calls


class TestKey:
    """The call key is personal data until asked for."""

    def test_key_off_by_default(self, harness, tracing):
        """Without record_key, no span carries the key."""
        ex = traced(harness, tracing)

        harness.run(ex, "user:42", ["ok"])

        for span in tracing.spans():
            assert "stormwall.key" not in span.attributes
            assert "user:42" not in span.attributes.values()

    def test_key_on_request(self, harness, tracing):
        """With record_key=True the call span has stormwall.key."""
        ex = traced(harness, tracing, record_key=True)

        harness.run(ex, "user:42", ["ok"])

        assert "user:42" == tracing.one("svc").attributes["stormwall.key"]
        assert "stormwall.key" not in tracing.one("svc attempt").attributes


SECRET = "4111-1111-1111-1111"  # noqa: S105 - a card number: must reach no span


def leaky_run(tracing, **exporter_kwargs):
    """
    Calls whose arguments, key and exception messages carry ``SECRET``.

    Retries then failure, retries then fallback, a fallback that raises, and
    an attempt timeout (async), all traced into ``tracing``.
    """
    bus = EventBus()
    TracingExporter(tracing.provider, **exporter_kwargs).attach(bus)

    def charge(card, *, cvv):
        raise Boom(f"card {card} declined (cvv {cvv})")

    failing = ResilientExecutor(
        "pay", retry_policy=policy(), clock=MockClock(), bus=bus
    )
    with pytest.raises(Boom):
        failing.run(SECRET, charge, SECRET, cvv=SECRET)

    def leaky_fallback(error):
        raise ValueError(f"fallback saw {error}")

    for fallback in (lambda error: None, leaky_fallback):
        ex = ResilientExecutor(
            "pay-fb",
            retry_policy=policy(max_attempts=2),
            fallback=fallback,
            clock=MockClock(),
            bus=bus,
        )
        with contextlib.suppress(ValueError):
            ex.run(SECRET, charge, SECRET, cvv=SECRET)

    slow_ex = AsyncResilientExecutor(
        "pay-slow", timeout=1.0, clock=MockClock(), bus=bus
    )

    async def slow(card):
        await slow_ex.clock.sleep_async(5)
        return card

    with pytest.raises(TimeoutError):
        asyncio.run(slow_ex.run(SECRET, slow, SECRET))


class TestPrivacy:
    """By default no argument or exception message reaches a span."""

    def test_no_argument_reaches_any_span(self, tracing):
        """Secrets in arguments, the key and exception messages appear in
        no span's name, attributes, events, status or links."""
        leaky_run(tracing)

        spans = tracing.spans()
        assert 10 <= len(spans)
        for span in spans:
            assert SECRET not in span.to_json(), span.name

    def test_exception_type_only_by_default(self, tracing):
        """A failed attempt records error.type and an exception event with
        exception.type, but no message and no stack trace."""
        leaky_run(tracing)

        failed = [
            s
            for s in tracing.spans()
            if s.status.status_code is StatusCode.ERROR
            and s.name.endswith("attempt")
        ]
        assert failed
        for span in failed:
            (event,) = span.events
            assert "exception" == event.name
            assert {"exception.type"} == set(event.attributes)
            assert (
                span.attributes["error.type"]
                in event.attributes["exception.type"]
            )
        assert {"tests.exporters.test_otel.Boom"} <= {
            s.events[0].attributes["exception.type"] for s in failed
        }

    def test_messages_on_request(self, tracing):
        """With record_exception_messages=True an attempt's exception event
        has the message and the stack trace, as OpenTelemetry records."""
        leaky_run(tracing, record_exception_messages=True)

        event = tracing.named("pay attempt")[0].events[0]
        assert "exception" == event.name
        assert SECRET in event.attributes["exception.message"]
        assert "Traceback" in event.attributes["exception.stacktrace"]
        assert (
            "tests.exporters.test_otel.Boom"
            == event.attributes["exception.type"]
        )


class TestTracingRobustness:
    """The exporter never breaks a call, and keeps nothing it should not."""

    def test_unknown_call_ids_are_ignored(self, tracing):
        """Events of a call the exporter never saw start make no span and
        raise nothing."""
        bus = EventBus()
        TracingExporter(tracing.provider).attach(bus)

        for event in (
            AttemptStarted(time=0, executor="svc", call_id=999, attempt=1),
            AttemptEnded(
                time=0,
                executor="svc",
                call_id=999,
                attempt=1,
                outcome="success",
                duration=0,
            ),
            RetryScheduled(time=0, executor="svc", call_id=999, delay=1),
            CallEnded(
                time=0,
                executor="svc",
                call_id=999,
                outcome="success",
                attempts=1,
                duration=0,
            ),
            AttemptStarted(time=0, executor="svc"),
        ):
            bus.emit(event)

        assert [] == tracing.spans()
        assert 0 == bus.statistics().handler_errors

    def test_call_started_before_attach_is_not_traced(self, tracing):
        """Attaching mid-call traces the next call, not the running one."""
        bus = EventBus()
        bus.subscribe(lambda event: None)  # calls report from the start
        exporter = TracingExporter(tracing.provider)
        ex = ResilientExecutor(
            "svc", retry_policy=policy(), bus=bus, clock=MockClock()
        )
        calls = []

        def attach_then_fail():
            calls.append(1)
            if len(calls) == 1:
                exporter.attach(bus)
                raise Boom
            return "ok"

        assert "ok" == ex.run("k", attach_then_fail)
        assert [] == tracing.spans()
        assert {} == exporter._calls

        assert "ok" == ex.run("k", lambda: "ok")
        assert ["svc attempt", "svc"] == [s.name for s in tracing.spans()]

    def test_failing_span_exporter_changes_nothing(self, harness, tracing):
        """A span exporter that raises never changes a call's result or
        exception."""

        class Broken(SpanExporter):
            def export(self, spans):
                raise RuntimeError("collector down")

        tracing.provider.add_span_processor(SimpleSpanProcessor(Broken()))
        ex = traced(harness, tracing, retry_policy=policy())
        last = Boom("last")

        assert "ok" == harness.run(ex, "k", [Boom(1), "ok"])
        with pytest.raises(Boom) as info:
            harness.run(ex, "k", [Boom(1), Boom(2), last])

        assert last is info.value
        assert 0 == ex.bus.statistics().handler_errors
        assert 7 == len(tracing.spans())  # the healthy processor got all

    def test_handler_error_is_reported_once(self, harness, tracing, caplog):
        """An exporter that raises is isolated: every call goes on, the
        error is logged once and counted each time."""

        class Exploding(SpanProcessor):
            def on_start(self, span, parent_context=None):
                if span.name == "svc":
                    raise RuntimeError("processor bug")

        tracing.provider.add_span_processor(Exploding())
        ex, exporter = traced_exporter(harness, tracing)

        with tracing.tracer.start_as_current_span("request") as request:
            results = [harness.run(ex, "k", [i]) for i in range(3)]
            after = trace.get_current_span()

        assert [0, 1, 2] == results
        assert request is after
        records = [
            r
            for r in caplog.records
            if r.name == "stormwall" and r.levelno == logging.ERROR
        ]
        assert 1 == len(records)
        assert 3 == ex.bus.statistics().handler_errors
        assert {} == exporter._calls

    def test_threads_keep_their_own_trees(self, tracing):
        """Concurrent sync calls from many threads each get a correct tree
        and leave nothing behind."""
        bus = EventBus()
        exporter = TracingExporter(tracing.provider)
        exporter.attach(bus)
        ex = ResilientExecutor("svc", retry_policy=policy(), bus=bus)
        barrier = threading.Barrier(8)

        def worker():
            barrier.wait()
            for _ in range(25):
                ex.run("k", flaky_with_inner_span(tracing))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        ex._policy = policy(base_delay=0)
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        spans = tracing.spans()
        by_id = {sid(s): s for s in spans}
        calls = [s for s in spans if s.name == "svc"]
        assert 200 == len(calls)
        assert {} == exporter._calls
        for span in spans:
            if span.name == "svc attempt":
                assert "svc" == by_id[parent_of(span)].name
            elif span.name == "inner":
                assert "svc attempt" == by_id[parent_of(span)].name
        assert {2} == {s.attributes["stormwall.attempts"] for s in calls}

    @pytest.mark.asyncio
    async def test_tasks_keep_their_own_trees(self, tracing):
        """Concurrent tasks each nest their downstream span under their own
        attempt."""
        bus = EventBus()
        exporter = TracingExporter(tracing.provider)
        exporter.attach(bus)
        ex = AsyncResilientExecutor("svc", bus=bus, clock=MockClock())

        async def fn(i):
            await asyncio.sleep(0)
            with tracing.tracer.start_as_current_span(f"inner {i}"):
                await asyncio.sleep(0)
            return i

        results = await asyncio.gather(
            *(ex.run("k", fn, i) for i in range(10))
        )

        assert list(range(10)) == results
        spans = tracing.spans()
        by_id = {sid(s): s for s in spans}
        attempts = {sid(s) for s in spans if s.name == "svc attempt"}
        inner = [s for s in spans if s.name.startswith("inner")]
        assert 10 == len(attempts)
        assert attempts == {parent_of(s) for s in inner}
        assert {} == exporter._calls
        for s in inner:
            assert "svc attempt" == by_id[parent_of(s)].name

    def test_bad_configuration(self):
        """Wrong types are ConfigErrors naming the parameter."""
        cases = [
            (lambda: TracingExporter(object()), "tracer_provider"),
            (lambda: TracingExporter(record_key="yes"), "record_key"),
            (
                lambda: TracingExporter(record_exception_messages=1),
                "record_exception_messages",
            ),
            (lambda: TracingExporter().attach("bus"), "bus"),
            (lambda: MetricsExporter(object()), "meter_provider"),
            (lambda: MetricsExporter().attach(42), "bus"),
        ]
        for make, parameter in cases:
            with pytest.raises(ConfigError) as info:
                make()
            assert parameter == info.value.parameter

    def test_attach_defaults_to_the_default_bus(self, tracing):
        """attach() with no bus observes every executor on default_bus."""
        sub = TracingExporter(tracing.provider).attach()
        try:
            ResilientExecutor("default-bus").run("k", lambda: "ok")
        finally:
            sub.close()

        assert ["default-bus attempt", "default-bus"] == [
            s.name for s in tracing.spans()
        ]


def flaky_with_inner_span(tracing):
    """Fails once, then succeeds; opens a span "inner" each time."""
    steps = iter([Boom(), "ok"])

    def fn():
        with tracing.tracer.start_as_current_span("inner"):
            step = next(steps)
        if isinstance(step, Exception):
            raise step
        return step

    return fn


# -- metrics ------------------------------------------------------------------


class Metrics:
    """A fresh SDK pipeline: MeterProvider -> InMemoryMetricReader."""

    def __init__(self, reader=None) -> None:
        self.reader = reader or InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader], shutdown_on_exit=False
        )

    def collect(self):
        """{instrument name: Metric} of one collection."""
        data = self.reader.get_metrics_data()
        found = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                assert "stormwall" == sm.scope.name
                for metric in sm.metrics:
                    found[metric.name] = metric
        return found

    def points(self, name, metrics=None):
        """{frozen attributes: value (or histogram point)} of one metric."""
        metric = (metrics or self.collect())[name]
        return {
            frozenset(p.attributes.items()): (
                p if isinstance(p, HistogramDataPoint) else p.value
            )
            for p in metric.data.data_points
        }


@pytest.fixture
def meters():
    """An in-memory metrics pipeline, shut down after the test."""
    m = Metrics()
    yield m
    m.provider.shutdown()


def attrs(**labels):
    return frozenset(labels.items())


def scenario(meters):
    """Every kind of event, scripted on a MockClock; returns the metrics."""
    clock = MockClock()
    bus = EventBus()
    MetricsExporter(meters.provider).attach(bus)
    breaker = CircuitBreaker("b", failure_threshold=3, recovery_timeout=10)
    svc = ResilientExecutor(
        "svc",
        retry_policy=policy(),
        circuit_breaker=breaker,
        bus=bus,
        clock=clock,
    )

    def play(*script):
        it = iter(script)

        def fn():
            clock.sleep(0.02)
            step = next(it)
            if isinstance(step, Exception):
                raise step
            return step

        return fn

    svc.run("k", play("ok"))
    svc.run("k", play(Boom(), Boom(), "ok"))
    with pytest.raises(Boom):
        svc.run("k", play(Boom(), Boom(), Boom()))  # trips the breaker
    with pytest.raises(CircuitOpenError):
        svc.run("k", play("unreached"))
    clock.advance(10)
    svc.run("k", play("ok"))  # the probe closes it

    bucket = TokenBucket(1, 1.0, name="tb")
    limited = ResilientExecutor(
        "limited",
        limiter=bucket,
        limiter_timeout=0.5,
        circuit_breaker=CircuitBreaker("quiet"),
        bus=bus,
        clock=clock,
    )
    limited.run("k", lambda: "allowed")
    with pytest.raises(RateLimitedError):
        limited.run("k", lambda: "rejected")  # 1 s to wait > 0.5
    clock.advance(0.6)
    limited.run("k", lambda: "waits 0.4 s")

    bulkhead = Bulkhead(1, name="bh")
    guarded = ResilientExecutor(
        "guarded", bulkhead=bulkhead, bus=bus, clock=clock
    )
    in_flight_inside = []

    def look():
        in_flight_inside.append(meters.points("stormwall.bulkhead.in_flight"))
        return "ok"

    guarded.run("k", look)
    assert bulkhead.try_acquire()
    with pytest.raises(BulkheadFullError):
        guarded.run("k", lambda: "unreached")
    bulkhead.release()

    budgeted = ResilientExecutor(
        "budgeted",
        retry_policy=policy(
            max_attempts=5,
            budget=RetryBudget(ratio=0.1, min_per_second=0.1, ttl=10),
        ),
        bus=bus,
        clock=clock,
    )
    with pytest.raises(Boom):
        budgeted.run("k", play(Boom(), Boom(), "unreached"))

    fallback = ResilientExecutor(
        "fallback", fallback=lambda error: "fb", bus=bus, clock=clock
    )
    assert "fb" == fallback.run("k", play(Boom()))
    emit_backend_errors(bus, clock)
    return meters.collect(), in_flight_inside


def emit_backend_errors(bus, clock):
    """A shared backend failing: a failed round trip, then a decision
    taken while it cools down (as a Redis limiter reports them)."""
    from stormwall.events import BackendError

    for cooldown in (False, True):
        bus.emit(
            BackendError(
                time=clock.now(),
                component="shared",
                backend="redis",
                operation="acquire",
                policy="fail_closed",
                error=ConnectionError("down"),
                cooldown=cooldown,
            )
        )


class TestMetricsExporter:
    """Every instrument of the vocabulary, fed by a scripted scenario."""

    def test_every_instrument_matches_the_vocabulary(self, meters):
        """Names, units, descriptions and attribute keys are the table's."""
        metrics, _ = scenario(meters)

        # The state gauges (vocab.GAUGES) appear when their state exists:
        # a rate needs a window, permits a global bucket.
        gauges = {s.otel_name for s in vocab.GAUGES}
        assert {s.otel_name for s in vocab.METRICS} == set(metrics) - gauges
        for spec in vocab.ALL_METRICS:
            if spec.otel_name not in metrics:
                continue
            metric = metrics[spec.otel_name]
            assert spec.unit == metric.unit, spec.otel_name
            assert spec.description == metric.description, spec.otel_name
            for point in metric.data.data_points:
                assert set(spec.labels) == set(point.attributes), spec

    def test_calls_and_attempts(self, meters):
        """Calls and attempts are counted by executor and outcome."""
        metrics, _ = scenario(meters)

        calls = meters.points("stormwall.calls", metrics)
        assert 3 == calls[attrs(executor="svc", outcome="success")]
        assert 1 == calls[attrs(executor="svc", outcome="failure")]
        assert 1 == calls[attrs(executor="svc", outcome="rejected")]
        assert 0 == calls[attrs(executor="svc", outcome="fallback")]
        assert 1 == calls[attrs(executor="fallback", outcome="fallback")]
        assert 1 == calls[attrs(executor="limited", outcome="rejected")]
        attempts = meters.points("stormwall.attempts", metrics)
        assert 3 == attempts[attrs(executor="svc", outcome="success")]
        assert 5 == attempts[attrs(executor="svc", outcome="failure")]
        assert 0 == attempts[attrs(executor="svc", outcome="timeout")]

    def test_durations(self, meters):
        """Durations are the executor clock's, in DURATION_BUCKETS."""
        metrics, _ = scenario(meters)

        calls = meters.points("stormwall.call.duration", metrics)
        ok = calls[attrs(executor="svc", outcome="success")]
        # 0.02 + (0.02 + 1 + 0.02 + 2 + 0.02) + 0.02 seconds of virtual time
        assert 3 == ok.count
        assert pytest.approx(3.1) == ok.sum
        assert list(vocab.DURATION_BUCKETS) == list(ok.explicit_bounds)
        attempts = meters.points("stormwall.attempt.duration", metrics)
        failed = attempts[attrs(executor="svc", outcome="failure")]
        assert 5 == failed.count
        assert pytest.approx(0.1) == failed.sum
        assert list(vocab.DURATION_BUCKETS) == list(failed.explicit_bounds)
        wait = meters.points("stormwall.rate_limiter.wait.duration", metrics)
        waited = wait[attrs(limiter="tb")]
        assert (1, pytest.approx(0.4)) == (waited.count, waited.sum)
        assert list(vocab.DURATION_BUCKETS) == list(waited.explicit_bounds)

    def test_retries_and_budget(self, meters):
        """Retries by error type; budget denials by executor."""
        metrics, _ = scenario(meters)

        retries = meters.points("stormwall.retries", metrics)
        assert 4 == retries[attrs(executor="svc", error_type="Boom")]
        assert 1 == retries[attrs(executor="budgeted", error_type="Boom")]
        exhausted = meters.points("stormwall.retry_budget.exhausted", metrics)
        assert 1 == exhausted[attrs(executor="budgeted")]
        assert 0 == exhausted[attrs(executor="svc")]

    def test_breaker_trip_and_recovery(self, meters):
        """The trip, the rejection and the recovery are all counted, and the
        breaker ends closed."""
        metrics, _ = scenario(meters)

        transitions = meters.points(
            "stormwall.circuit_breaker.transitions", metrics
        )
        moves = {
            (dict(k)["from_state"], dict(k)["to_state"]): v
            for k, v in transitions.items()
            if dict(k)["breaker"] == "b"
        }
        assert {
            ("closed", "open"): 1,
            ("open", "half_open"): 1,
            ("half_open", "closed"): 1,
        } == {pair: n for pair, n in moves.items() if n}
        assert set(vocab.BREAKER_TRANSITION_PAIRS) == set(moves)
        rejections = meters.points(
            "stormwall.circuit_breaker.rejections", metrics
        )
        assert 1 == rejections[attrs(breaker="b")]
        state = meters.points("stormwall.circuit_breaker.state", metrics)
        assert {s: int(s == "closed") for s in vocab.BREAKER_STATES} == {
            s: state[attrs(breaker="b", state=s)] for s in vocab.BREAKER_STATES
        }

    def test_untripped_breaker_has_series(self, meters):
        """A breaker that never tripped shows closed = 1, the other states
        0, and every transition and its rejections at 0."""
        metrics, _ = scenario(meters)

        state = meters.points("stormwall.circuit_breaker.state", metrics)
        assert {s: int(s == "closed") for s in vocab.BREAKER_STATES} == {
            s: state[attrs(breaker="quiet", state=s)]
            for s in vocab.BREAKER_STATES
        }
        transitions = meters.points(
            "stormwall.circuit_breaker.transitions", metrics
        )
        assert {0} == {
            v for k, v in transitions.items() if dict(k)["breaker"] == "quiet"
        }
        assert (
            0
            == meters.points("stormwall.circuit_breaker.rejections", metrics)[
                attrs(breaker="quiet")
            ]
        )

    def test_open_breaker_state(self, meters):
        """While open, the gauge says open = 1 and closed = 0."""
        bus = EventBus()
        MetricsExporter(meters.provider).attach(bus)
        ex = ResilientExecutor(
            "svc",
            circuit_breaker=CircuitBreaker("b", failure_threshold=1),
            bus=bus,
            clock=MockClock(),
        )
        with pytest.raises(Boom):
            ex.run("k", play_raise)

        state = meters.points("stormwall.circuit_breaker.state")
        assert 1 == state[attrs(breaker="b", state="open")]
        assert 0 == state[attrs(breaker="b", state="closed")]

    def test_limiter_results(self, meters):
        """Allowed, waited and rejected are each counted once."""
        metrics, _ = scenario(meters)

        requests = meters.points("stormwall.rate_limiter.requests", metrics)
        assert {"allowed": 1, "waited": 1, "rejected": 1} == {
            r: requests[attrs(limiter="tb", result=r)]
            for r in vocab.LIMITER_RESULTS
        }

    def test_bulkhead(self, meters):
        """In flight is 1 during a call and 0 after; the refusal counts."""
        metrics, inside = scenario(meters)

        assert {attrs(bulkhead="bh"): 1} == inside[0]
        in_flight = meters.points("stormwall.bulkhead.in_flight", metrics)
        assert {attrs(bulkhead="bh"): 0} == in_flight
        rejections = meters.points("stormwall.bulkhead.rejections", metrics)
        assert {attrs(bulkhead="bh"): 1} == rejections

    def test_series_exist_at_zero_from_first_use(self, meters):
        """After one successful call every series known in advance exists,
        at 0 where nothing happened yet."""
        bus = EventBus()
        MetricsExporter(meters.provider).attach(bus)
        ex = ResilientExecutor(
            "svc",
            limiter=TokenBucket(10, 1.0, name="tb"),
            circuit_breaker=CircuitBreaker("b"),
            bulkhead=Bulkhead(2, name="bh"),
            bus=bus,
            clock=MockClock(),
        )

        ex.run("k", lambda: "ok")

        metrics = meters.collect()
        calls = meters.points("stormwall.calls", metrics)
        assert {o: int(o == "success") for o in vocab.CALL_OUTCOMES} == {
            o: calls[attrs(executor="svc", outcome=o)]
            for o in vocab.CALL_OUTCOMES
        }
        attempts = meters.points("stormwall.attempts", metrics)
        assert {o: int(o == "success") for o in vocab.ATTEMPT_OUTCOMES} == {
            o: attempts[attrs(executor="svc", outcome=o)]
            for o in vocab.ATTEMPT_OUTCOMES
        }
        transitions = meters.points(
            "stormwall.circuit_breaker.transitions", metrics
        )
        assert {
            attrs(breaker="b", from_state=f, to_state=t): 0
            for f, t in vocab.BREAKER_TRANSITION_PAIRS
        } == transitions
        assert {attrs(breaker="b"): 0} == meters.points(
            "stormwall.circuit_breaker.rejections", metrics
        )
        assert {"allowed": 1, "waited": 0, "rejected": 0} == {
            r: v
            for k, v in meters.points(
                "stormwall.rate_limiter.requests", metrics
            ).items()
            for r in [dict(k)["result"]]
        }
        assert {attrs(bulkhead="bh"): 0} == meters.points(
            "stormwall.bulkhead.rejections", metrics
        )
        assert {attrs(executor="svc"): 0} == meters.points(
            "stormwall.retry_budget.exhausted", metrics
        )
        assert {attrs(bulkhead="bh"): 0} == meters.points(
            "stormwall.bulkhead.in_flight", metrics
        )

    def test_cancelled_series_born_at_zero(self, meters):
        """The cancelled calls and attempts series exist at 0 from the
        executor's first call, so rate() sees the first cancellation."""
        bus = EventBus()
        MetricsExporter(meters.provider).attach(bus)
        ex = ResilientExecutor("svc", bus=bus, clock=MockClock())

        ex.run("k", lambda: "ok")

        metrics = meters.collect()
        assert [0, 0] == [
            meters.points(name, metrics)[
                attrs(executor="svc", outcome="cancelled")
            ]
            for name in ("stormwall.calls", "stormwall.attempts")
        ]

    def test_cancelled_calls_are_counted(self, meters):
        """A cancelled call is counted as outcome "cancelled"."""
        bus = EventBus()
        MetricsExporter(meters.provider).attach(bus)
        ex = ResilientExecutor("svc", bus=bus, clock=MockClock())

        def interrupt():
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            ex.run("k", interrupt)

        calls = meters.points("stormwall.calls")
        assert 1 == calls[attrs(executor="svc", outcome="cancelled")]

    def test_forced_transition_outside_a_call(self, meters):
        """force_open() outside any call still reaches the metrics."""
        bus = EventBus()
        MetricsExporter(meters.provider).attach(bus)
        breaker = CircuitBreaker("b", bus=bus)

        breaker.force_open()

        state = meters.points("stormwall.circuit_breaker.state")
        assert 1 == state[attrs(breaker="b", state="forced_open")]
        assert 0 == state[attrs(breaker="b", state="closed")]
        transitions = meters.points("stormwall.circuit_breaker.transitions")
        assert (
            1
            == transitions[
                attrs(breaker="b", from_state="closed", to_state="forced_open")
            ]
        )

    def test_failing_metric_exporter_changes_nothing(self):
        """A metric exporter that raises never changes a call's result or
        exception."""

        class Broken(MetricExporter):
            def __init__(self):
                super().__init__()

            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                raise RuntimeError("collector down")

            def force_flush(self, timeout_millis=10_000):
                return True

            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        reader = PeriodicExportingMetricReader(
            Broken(), export_interval_millis=3_600_000
        )
        m = Metrics(reader)
        bus = EventBus()
        MetricsExporter(m.provider).attach(bus)
        ex = ResilientExecutor(
            "svc", retry_policy=policy(), bus=bus, clock=MockClock()
        )
        last = Boom("last")

        try:
            assert "ok" == ex.run("k", iter_fn([Boom(), "ok"]))
            reader.force_flush()
            with pytest.raises(Boom) as info:
                ex.run("k", iter_fn([Boom(), Boom(), last]))
            reader.force_flush()
        finally:
            m.provider.shutdown()

        assert last is info.value
        assert 0 == bus.statistics().handler_errors


def play_raise():
    raise Boom


def iter_fn(script):
    it = iter(script)

    def fn():
        step = next(it)
        if isinstance(step, Exception):
            raise step
        return step

    return fn


class TestPublicModule:
    def test_otel_module_only_re_exports_the_two_exporters(self):
        """stormwall.exporters.otel is the public face of the two private
        modules, one per exporter, and holds nothing else."""
        from stormwall.exporters import _otel_metrics, _otel_tracing, otel

        assert ["MetricsExporter", "TracingExporter"] == otel.__all__
        assert otel.TracingExporter is _otel_tracing.TracingExporter
        assert otel.MetricsExporter is _otel_metrics.MetricsExporter

    def test_without_opentelemetry_the_import_names_the_extra(self):
        """Without OpenTelemetry, importing the public module raises
        ImportError with the install hint, whichever part failed."""
        import subprocess
        import sys

        code = (
            "import sys; sys.modules['opentelemetry'] = None\n"
            "try:\n"
            "    import stormwall.exporters.otel\n"
            "except ImportError as e:\n"
            "    print(e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

        assert (
            "stormwall.exporters.otel needs OpenTelemetry: "
            "pip install 'stormwall[otel]'"
        ) == out.strip()
