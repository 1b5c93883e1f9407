"""
What the OpenTelemetry exporters add to a successful ResilientExecutor.run
(breaker + token bucket + retry), next to what the same spans and the same
counter adds cost when written by hand against the same SDK.

Reported, not asserted. The span exporter does nothing, so the numbers are
the instrumentation's cost, not a backend's.

Standalone quick look, not run by ``make bench``: the comparative,
interleaved run against the peers is ``bench/run.py`` (its cases live in
``bench/cases/``; results in docs/performance.md). Run this one with
``python bench/bench_exporters_otel.py`` in any venv that has stormwall[all].
"""

from __future__ import annotations

import sys

from _harness import HEADER, measure, row


try:
    from opentelemetry import context, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
except ImportError:  # a core-only venv: nothing to measure
    print("skipped: needs pip install 'stormwall[otel]'")
    sys.exit(0)

from stormwall import (
    CircuitBreaker,
    EventBus,
    ResilientExecutor,
    RetryPolicy,
    TokenBucket,
)
from stormwall.exporters import _vocabulary as vocab
from stormwall.exporters.otel import MetricsExporter, TracingExporter


NUMBER = 5_000
REPEAT = 5


class NullExporter(SpanExporter):
    def export(self, spans):  # noqa: ARG002 - the SDK passes them by name
        return SpanExportResult.SUCCESS


def build(bus: EventBus) -> ResilientExecutor:
    return ResilientExecutor(
        "bench",
        limiter=TokenBucket(capacity=1e12, refill_rate=1e12),
        retry_policy=RetryPolicy(max_attempts=3),
        circuit_breaker=CircuitBreaker("bench"),
        bus=bus,
    )


def fn() -> int:
    return 1


def tracer_provider() -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
    return provider


def meter_provider() -> MeterProvider:
    return MeterProvider(
        metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
    )


def run_with(*exporters: object) -> tuple[float, float]:
    bus = EventBus()
    for exporter in exporters:
        exporter.attach(bus)  # type: ignore[attr-defined]
    ex = build(bus)
    return measure(lambda: ex.run("k", fn), number=NUMBER, repeat=REPEAT)


def hand_spans(provider: TracerProvider) -> tuple[float, float]:
    """A call span and an attempt span, both made current, by hand."""
    tracer = provider.get_tracer("hand")
    kind = trace.SpanKind.INTERNAL

    def spans() -> None:
        call = tracer.start_span(
            "bench", kind=kind, attributes={"stormwall.executor": "bench"}
        )
        t1 = context.attach(trace.set_span_in_context(call))
        attempt = tracer.start_span(
            "bench attempt", kind=kind, attributes={"stormwall.attempt": 1}
        )
        t2 = context.attach(trace.set_span_in_context(attempt))
        fn()
        context.detach(t2)
        attempt.set_attribute("stormwall.outcome", "success")
        attempt.end()
        context.detach(t1)
        call.set_attributes(
            {"stormwall.attempts": 1, "stormwall.outcome": "success"}
        )
        call.end()

    return measure(spans, number=NUMBER, repeat=REPEAT)


def hand_metrics(provider: MeterProvider) -> tuple[float, float]:
    """The adds and records a successful call needs, by hand."""
    meter = provider.get_meter("hand")
    calls = meter.create_counter(vocab.CALLS.otel_name)
    attempts = meter.create_counter(vocab.ATTEMPTS.otel_name)
    requests = meter.create_counter(vocab.LIMITER_REQUESTS.otel_name)
    call_duration = meter.create_histogram(
        vocab.CALL_DURATION.otel_name,
        explicit_bucket_boundaries_advisory=vocab.DURATION_BUCKETS,
    )
    attempt_duration = meter.create_histogram(
        vocab.ATTEMPT_DURATION.otel_name,
        explicit_bucket_boundaries_advisory=vocab.DURATION_BUCKETS,
    )

    def adds() -> None:
        requests.add(1, {"limiter": "bench", "result": "allowed"})
        attributes = {"executor": "bench", "outcome": "success"}
        attempts.add(1, attributes)
        attempt_duration.record(1e-6, attributes)
        attributes = {"executor": "bench", "outcome": "success"}
        calls.add(1, attributes)
        call_duration.record(1e-6, attributes)

    return measure(adds, number=NUMBER, repeat=REPEAT)


def main() -> None:
    lines = [HEADER]
    base = run_with()
    lines.append(row("ResilientExecutor.run, no subscriber", base))
    tp, mp = tracer_provider(), meter_provider()
    traced = run_with(TracingExporter(tp))
    lines.append(row("run + TracingExporter", traced))
    metered = run_with(MetricsExporter(mp))
    lines.append(row("run + MetricsExporter", metered))
    both = run_with(
        TracingExporter(tracer_provider()), MetricsExporter(meter_provider())
    )
    lines.append(row("run + both", both))
    spans = hand_spans(tp)
    lines.append(row("by hand: call + attempt span, current", spans))
    adds = hand_metrics(mp)
    lines.append(row("by hand: 3 counter adds + 2 records", adds))
    lines.append("")
    lines.append(
        f"added by TracingExporter: {traced[0] - base[0]:,.0f} ns "
        f"(hand-made spans: {spans[0]:,.0f} ns)"
    )
    lines.append(
        f"added by MetricsExporter: {metered[0] - base[0]:,.0f} ns "
        f"(hand-made adds: {adds[0]:,.0f} ns)"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
