"""
Log lines carry the ids of the span their event belongs to, whatever the
order the tracing and log exporters were attached in.

A call's own events (retries, limiter and bulkhead decisions, breaker
transitions, the fallback, its start and end) carry the call span's ids; an
attempt's start and end carry the attempt span's. Checked against a real
OpenTelemetry SDK tracer provider, for both log exporters, through
``observe()`` and ``.attach()``, with the sync and the async executor.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest


pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import stormwall
from stormwall import (
    Bulkhead,
    CircuitBreaker,
    EventBus,
    MockClock,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import AttemptEnded, AttemptStarted, CallEnded
from stormwall.exporters._logs import DEFAULT_LEVELS
from stormwall.exporters.logging import LoggingExporter
from stormwall.exporters.otel import TracingExporter


try:
    import structlog
    import structlog.testing
except ImportError:  # the stdlib half needs nothing
    structlog = None


class Boom(Exception):
    pass


# Every event that may belong to a call logs a line; the announcement
# ExecutorObserved comes before the call's span exists and is left out.
EVERY_LINE = {
    name: "info"
    for name in DEFAULT_LEVELS
    if ":" not in name and name != "stormwall.executor.observed"
}
ATTEMPT_EVENTS = {AttemptStarted.name, AttemptEnded.name}


def script(*items):
    """A function raising or returning ``items`` in turn."""
    it = iter(items)

    def fn():
        item = next(it)
        if isinstance(item, BaseException):
            raise item
        return item

    return fn


class Lines:
    """Log lines as (event name, fields) pairs."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []


@contextmanager
def stdlib_lines(caplog):
    """A LoggingExporter and the lines it wrote."""
    caplog.set_level(logging.DEBUG, logger="stormwall.events")
    lines = Lines()
    yield LoggingExporter(levels=EVERY_LINE), lines
    for record in caplog.records:
        if record.name == "stormwall.events":
            fields = dict(record.stormwall)
            lines.lines.append((fields.pop("event"), fields))


@contextmanager
def structlog_lines(_caplog):
    """A StructlogExporter and the lines it wrote."""
    from stormwall.exporters.structlog import StructlogExporter

    structlog.reset_defaults()
    lines = Lines()
    with structlog.testing.capture_logs() as entries:
        yield StructlogExporter(levels=EVERY_LINE), lines
    for entry in entries:
        fields = dict(entry)
        lines.lines.append((fields.pop("event"), fields))


@pytest.fixture(
    params=[
        pytest.param(
            structlog_lines,
            id="structlog",
            marks=pytest.mark.skipif(
                structlog is None, reason="structlog is not installed"
            ),
        ),
        pytest.param(stdlib_lines, id="logging"),
    ]
)
def log_exporter(request, caplog):
    """One log exporter, logging every call's events, and its lines."""
    return lambda: request.param(caplog)


@pytest.fixture
def provider():
    """A real SDK tracer provider exporting to memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.memory = memory
    yield provider
    provider.shutdown()


def wire(how, bus, exporters):
    """Attach ``exporters`` in order, through observe() or attach()."""
    if how == "observe":
        return stormwall.observe(*exporters, bus=bus)
    subs = [exporter.attach(bus) for exporter in exporters]
    return stormwall.Observation(tuple(subs))


def workload(harness, bus, request_span):
    """
    Retries, a failed call, a breaker trip with fallback, a rejection.

    Every call runs under the outer ``request_span``, so a line that
    carried the request's ids instead of the call's would be caught.
    """
    clock = MockClock()
    svc = harness.executor(
        "svc",
        retry_policy=RetryPolicy(max_attempts=3, base_delay=1, jitter=None),
        limiter=TokenBucket(100, 100, name="tb"),
        bulkhead=Bulkhead(2, name="bh"),
        circuit_breaker=CircuitBreaker("svc-b", failure_threshold=10),
        clock=clock,
        bus=bus,
    )
    guarded = harness.executor(
        "guarded",
        circuit_breaker=CircuitBreaker(
            "guarded-b", failure_threshold=1, recovery_timeout=60
        ),
        fallback=lambda error: "fallback",
        clock=clock,
        bus=bus,
    )
    with request_span():
        assert "ok" == harness.run(svc, "retried", [Boom(), Boom(), "ok"])
        with pytest.raises(Boom):
            harness.run(svc, "failed", [Boom(), Boom(), Boom()])
        assert "fallback" == harness.run(guarded, "tripped", [Boom()])
        assert "fallback" == harness.run(guarded, "rejected", ["never"])


def span_ids(span):
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def expected_ids(spans):
    """{(key, None): call span ids, (key, attempt): attempt span ids}."""
    calls = {
        s.context.span_id: s for s in spans if "stormwall.key" in s.attributes
    }
    ids = {
        (s.attributes["stormwall.key"], None): span_ids(s)
        for s in calls.values()
    }
    for s in spans:
        if s.parent is not None and s.parent.span_id in calls:
            key = calls[s.parent.span_id].attributes["stormwall.key"]
            ids[key, s.attributes["stormwall.attempt"]] = span_ids(s)
    return ids


@pytest.mark.parametrize("how", ["observe", "attach"])
@pytest.mark.parametrize("tracing_first", [True, False], ids=["tf", "lf"])
def test_lines_carry_their_events_span(
    harness, provider, log_exporter, how, tracing_first
):
    """Whatever the order, each line of a call's event carries the call
    span's ids and each attempt line its attempt span's: never the
    request's, never none."""
    bus = EventBus()
    tracer = provider.get_tracer("test")
    with log_exporter() as (logs, lines):
        tracing = TracingExporter(provider, record_key=True)
        exporters = [tracing, logs] if tracing_first else [logs, tracing]
        with wire(how, bus, exporters):
            workload(
                harness, bus, lambda: tracer.start_as_current_span("request")
            )

    spans = provider.memory.get_finished_spans()
    expected = expected_ids(spans)
    seen = set()
    for name, fields in lines.lines:
        attempt = fields.get("attempt") if name in ATTEMPT_EVENTS else None
        want = expected[fields["key"], attempt]
        got = (fields.get("trace_id"), fields.get("span_id"))
        assert want == got, (name, fields)
        seen.add(name)
    assert {
        "stormwall.call.started",
        "stormwall.call.ended",
        "stormwall.attempt.started",
        "stormwall.attempt.ended",
        "stormwall.retry.scheduled",
        "stormwall.rate_limiter.allowed",
        "stormwall.bulkhead.acquired",
        "stormwall.bulkhead.released",
        "stormwall.circuit_breaker.state_changed",
        "stormwall.circuit_breaker.rejected",
        "stormwall.fallback.used",
    } <= seen
    failed = [
        f
        for n, f in lines.lines
        if n == CallEnded.name and f["outcome"] == "failure"
    ]
    assert [expected["failed", None]] == [
        (f["trace_id"], f["span_id"]) for f in failed
    ]


def test_without_tracing_exporter_lines_carry_the_current_span(
    provider, caplog
):
    """With no TracingExporter a line carries the span current in the
    caller (the request), as before."""
    bus = EventBus()
    tracer = provider.get_tracer("test")
    with (
        stdlib_lines(caplog) as (logs, lines),
        stormwall.observe(logs, bus=bus),
        tracer.start_as_current_span("request") as request,
    ):
        stormwall.ResilientExecutor(
            "svc",
            retry_policy=RetryPolicy(max_attempts=2, jitter=None),
            clock=MockClock(),
            bus=bus,
        ).run("k", script(Boom(), "ok"))

    assert lines.lines
    assert {span_ids(request)} == {
        (f["trace_id"], f["span_id"]) for _, f in lines.lines
    }


class TestScopeOrdering:
    """The bus runs scope openers first and closers last, LIFO."""

    def test_first_and_last_whatever_the_subscription_order(self):
        """A route marked first runs before every other handler, one marked
        last after them, and two closers unwind in reverse order."""
        from stormwall.events import CallStarted

        bus = EventBus()
        seen = []

        def note(tag):
            return lambda event: seen.append((tag, type(event).__name__))

        bus.subscribe(note("plain-1"))
        for scope in ("a", "b"):
            bus.subscribe_routes(
                {CallStarted: note(scope), CallEnded: note(scope)},
                first=(CallStarted,),
                last=(CallEnded,),
            )
        bus.subscribe(note("plain-2"))

        bus.emit(CallStarted(time=0, call_id=1))
        bus.emit(
            CallEnded(
                time=0, call_id=1, outcome="success", attempts=1, duration=0
            )
        )

        assert [
            ("a", "CallStarted"),
            ("b", "CallStarted"),
            ("plain-1", "CallStarted"),
            ("plain-2", "CallStarted"),
            ("plain-1", "CallEnded"),
            ("plain-2", "CallEnded"),
            ("b", "CallEnded"),
            ("a", "CallEnded"),
        ] == seen

    def test_bad_scope_type(self):
        """A first or last that is not an Event type is a ConfigError."""
        with pytest.raises(stormwall.ConfigError, match="event_types"):
            EventBus().subscribe_routes({CallEnded: print}, first=(int,))

    def test_two_tracing_exporters_restore_the_context(self, provider):
        """Two tracing exporters on one bus leave no span current after
        the call: their contexts unwind in LIFO order."""
        from opentelemetry import trace

        other = TracerProvider(shutdown_on_exit=False)
        bus = EventBus()
        with stormwall.observe(
            TracingExporter(provider), TracingExporter(other), bus=bus
        ):
            stormwall.ResilientExecutor("svc", bus=bus).run("k", script("ok"))

        assert not trace.get_current_span().get_span_context().is_valid
