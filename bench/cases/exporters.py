"""
What each exporter adds per successful call, next to the raw cost of the
same operations done by hand against the same library.

Every ``run()`` is stormwall's executor with breaker + token bucket + retry.
"Raw" cases do by hand what the exporter must do for one successful call:
a call span and an attempt span, each made current (OTel tracing); 3 counter
adds and 2 histogram records (OTel metrics, and prometheus_client on
pre-resolved children); two structlog ``.debug`` lines with the event's
fields. The span exporter and the metric reader do nothing, so the numbers
are instrumentation cost, not a backend's. The one-retry path is measured
with every exporter attached (and stamina with its structlog + Prometheus
retry hooks, the closest peer instrumentation).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import structlog
from _harness import Case
from opentelemetry import context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import CollectorRegistry, Counter, Histogram

from cases.common import AsyncFailOnce, FailOnce, async_executor, executor, fn
from stormwall import EventBus, tally
from stormwall.exporters import _vocabulary as vocab
from stormwall.exporters.otel import MetricsExporter, TracingExporter
from stormwall.exporters.prometheus import PrometheusExporter
from stormwall.exporters.structlog import StructlogExporter


GROUP = "exporters, success path, sync"
RETRY = "one-retry path, sync"
ARETRY = "one-retry path, async"
FIELDS = {
    "executor": "bench",
    "key": "k",
    "call_id": 1,
    "attempt": 1,
    "outcome": "success",
    "duration": 1e-6,
}
DEVNULL = Path(os.devnull).open("w")  # noqa: SIM115 - lives for the run


class NullSpanExporter(SpanExporter):
    def export(self, spans):  # noqa: ARG002 - the SDK passes them by name
        return SpanExportResult.SUCCESS


def tracer_provider() -> TracerProvider:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(NullSpanExporter()))
    return provider


def meter_provider() -> MeterProvider:
    return MeterProvider(
        metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False
    )


def structlog_logger(level: int):
    return structlog.wrap_logger(
        structlog.PrintLogger(DEVNULL),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.KeyValueRenderer(),
        ],
    ).bind()  # a concrete logger: a lazy proxy would re-bind on every call


def hand_spans(provider: TracerProvider):
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

    return spans


def hand_metrics(provider: MeterProvider):
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

    return adds


def hand_prometheus():
    registry = CollectorRegistry()
    counter = Counter("c", "c", ["a", "b"], registry=registry)
    histogram = Histogram(
        "h", "h", ["a", "b"], registry=registry, buckets=vocab.DURATION_BUCKETS
    )
    c1, c2, c3 = (counter.labels("x", str(i)) for i in range(3))
    h1, h2 = (histogram.labels("x", str(i)) for i in range(2))

    def work() -> None:
        c1.inc()
        h1.observe(0.001)
        c2.inc()
        h2.observe(0.001)
        c3.inc()

    return work


def hand_structlog(logger):
    def lines() -> None:
        logger.debug("stormwall.attempt.ended", **FIELDS)
        logger.debug("stormwall.call.ended", **FIELDS)

    return lines


def attached(*exporters, cls=executor, **kwargs):
    bus = EventBus()
    for exporter in exporters:
        exporter.attach(bus)
    return cls(bus=bus, **kwargs)


def all_exporters():
    return (
        TracingExporter(tracer_provider()),
        MetricsExporter(meter_provider()),
        PrometheusExporter(CollectorRegistry()),
        StructlogExporter(structlog_logger(logging.DEBUG)),
    )


def stormwall_cases() -> list[Case]:
    tp, mp = tracer_provider(), meter_provider()
    debug, info = (
        structlog_logger(logging.DEBUG),
        structlog_logger(logging.INFO),
    )
    counting = attached()
    tally.attach(counting.bus)  # what always-on counting would cost
    runs = {
        "stormwall run(), no exporter": attached(),
        "stormwall run(), counting on, no exporter": counting,
        "stormwall run() + OTel TracingExporter": attached(
            TracingExporter(tp)
        ),
        "stormwall run() + OTel MetricsExporter": attached(
            MetricsExporter(mp)
        ),
        "stormwall run() + PrometheusExporter": attached(
            PrometheusExporter(CollectorRegistry())
        ),
        "stormwall run() + StructlogExporter, DEBUG to /dev/null": attached(
            StructlogExporter(debug)
        ),
        "stormwall run() + StructlogExporter, DEBUG filtered": attached(
            StructlogExporter(info)
        ),
        "stormwall run() + all four exporters": attached(*all_exporters()),
    }
    out = [
        Case(GROUP, label, lambda ex=ex: ex.run("k", fn))
        for label, ex in runs.items()
    ]
    out += [
        Case(
            GROUP,
            "raw OTel: call + attempt span, made current",
            hand_spans(tp),
            peer="raw",
        ),
        Case(
            GROUP,
            "raw OTel: 3 counter adds + 2 histogram records",
            hand_metrics(mp),
            peer="raw",
        ),
        Case(
            GROUP,
            "raw prometheus_client: 3 inc + 2 observe",
            hand_prometheus(),
            peer="raw",
        ),
        Case(
            GROUP,
            "raw structlog: 2 x .debug(**6 fields), to /dev/null",
            hand_structlog(debug),
            peer="raw",
        ),
        Case(
            GROUP,
            "raw structlog: 2 x .debug(**6 fields), filtered",
            hand_structlog(info),
            peer="raw",
        ),
    ]
    full = attached(*all_exporters(), zero_wait=True)
    slog_prom = attached(
        StructlogExporter(debug),
        PrometheusExporter(CollectorRegistry()),
        zero_wait=True,
    )
    afull = attached(*all_exporters(), cls=async_executor, zero_wait=True)
    flaky, aflaky = FailOnce(), AsyncFailOnce()
    out += [
        Case(
            RETRY,
            "stormwall run() + all four exporters",
            lambda: full.run("k", flaky),
        ),
        Case(
            RETRY,
            "stormwall run() + structlog + Prometheus exporters",
            lambda: slog_prom.run("k", flaky),
        ),
        Case(
            ARETRY,
            "stormwall run() + all four exporters",
            afn=lambda: afull.run("k", aflaky),
        ),
    ]
    return out


def stamina_cases() -> list[Case]:
    import stamina
    from stamina.instrumentation import (
        PrometheusOnRetryHook,
        StructlogOnRetryHook,
        set_on_retry_hooks,
    )

    # stamina's structlog hook logs through structlog's global configuration.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(DEVNULL),
        cache_logger_on_first_use=True,
    )
    caller = stamina.RetryingCaller(
        attempts=3, timeout=None, wait_initial=0, wait_max=0, wait_jitter=0
    ).on(Exception)
    flaky = FailOnce()
    # Built once: swapping built hooks in and out per call costs a tuple and
    # a lock (about a microsecond), not a hook initialisation.
    hooks = [
        StructlogOnRetryHook.hook_factory(),
        PrometheusOnRetryHook.hook_factory(),
    ]

    def hooked() -> int:
        set_on_retry_hooks(hooks)
        try:
            return caller(flaky)
        finally:
            set_on_retry_hooks([])

    return [
        Case(
            RETRY,
            "stamina RetryingCaller(no wait) + structlog + Prometheus hooks",
            hooked,
            peer="stamina",
        ),
    ]


def cases(smoke: bool) -> list[Case]:  # noqa: ARG001 - same cases either way
    out = stormwall_cases()
    with contextlib.suppress(ImportError):
        out.extend(stamina_cases())
    return out
