"""
A Redis outage is visible: metrics on both paths, span events, log lines.

Most tests point a Redis limiter (or the shared breaker's store) at a
loopback port nobody listens on (the connection is refused at once, no
server needed) and drive the cooldown with a `MockClock`; the last ones kill
and restart a real redis-server and read the counters from a served
``/metrics`` page. The breaker store is counted exactly like the limiters.
"""

from __future__ import annotations

import logging
import socket
import urllib.request

import pytest


pytest.importorskip("redis")
pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.prometheus")

import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stormwall import (
    BackendUnavailableError,
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
)
from stormwall.backends.redis import RedisBreakerStore, RedisTokenBucket
from stormwall.exporters.logging import LoggingExporter
from stormwall.exporters.otel import MetricsExporter, TracingExporter
from stormwall.exporters.prometheus import PrometheusExporter, serve_metrics
from tests.support.otel_compat import prometheus_reader


def nobody_listens() -> int:
    """A loopback port with no server behind it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_client():
    """A sync client of a port where the connection is refused."""
    c = redis.Redis(port=nobody_listens())
    try:
        yield c
    finally:
        c.close()


def outage(limiter, clock, calls=5, step=0.5):
    """``calls`` decisions, ``step`` virtual seconds apart; their results."""
    results = []
    for _ in range(calls):
        try:
            results.append(limiter.try_acquire("k"))
        except RateLimitedError:  # pragma: no cover - try_acquire returns
            results.append("raised")
        clock.advance(step)
    return results


def breaker_outage(executor, clock, calls=5, step=0.5):
    """`outage` through an executor with a shared breaker: its results."""
    results = []
    for _ in range(calls):
        try:
            results.append(executor.run("k", lambda: True))
        except CircuitOpenError:
            results.append(False)
        clock.advance(step)
    return results


def both_paths(bus):
    """A Prometheus and an OTel metrics exporter on ``bus``: registries."""
    prom_registry = CollectorRegistry()
    PrometheusExporter(prom_registry).attach(bus)
    otel_registry = CollectorRegistry()
    provider = MeterProvider(metric_readers=[prometheus_reader(otel_registry)])
    MetricsExporter(provider).attach(bus)
    return prom_registry, otel_registry, provider


def series(text):
    """(name, sorted labels) -> value of the stormwall_backend_* samples."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if not s.name.startswith("stormwall_backend_"):
                continue
            if s.name.endswith("_created"):
                continue
            labels = tuple(
                sorted(
                    (k, v)
                    for k, v in s.labels.items()
                    if not k.startswith("otel_scope_")
                )
            )
            out[(s.name, labels)] = s.value
    return out


class TestMetrics:
    def test_both_paths_count_errors_and_decisions_alike(self, dead_client):
        """
        5 decisions over 2 s with retry_interval=1: 2 failed round trips
        (errors), 5 fail_open decisions, the same on both metric paths.
        """
        bus = EventBus()
        prom_registry = CollectorRegistry()
        PrometheusExporter(prom_registry).attach(bus)
        otel_registry = CollectorRegistry()
        provider = MeterProvider(
            metric_readers=[prometheus_reader(otel_registry)]
        )
        MetricsExporter(provider).attach(bus)
        clock = MockClock()
        limiter = RedisTokenBucket(
            dead_client,
            3,
            10,
            name="api",
            on_backend_error="fail_open",
            clock=clock,
            bus=bus,
        )
        try:
            assert [True] * 5 == outage(limiter, clock)
            prom = series(generate_latest(prom_registry).decode())
            otel = series(generate_latest(otel_registry).decode())
        finally:
            provider.shutdown()

        assert {
            (
                "stormwall_backend_errors_total",
                (("component", "api"), ("error_type", "ConnectionError")),
            ): 3.0,
            (
                "stormwall_backend_decisions_total",
                (("component", "api"), ("decision", "fail_open")),
            ): 5.0,
        } == prom
        assert prom == otel

    def test_breaker_store_counted_like_the_limiters(self, dead_client):
        """
        The shared breaker over a dead Redis: 5 calls over 2 s with
        retry_interval=1, on both paths alike. As for a limiter, only the
        round trips that failed are errors (one per retry_interval), and
        every decision taken by the policy is counted: the 5 admissions,
        plus the state the executor reads before its first call (a poll
        answered by fail_open with the in-process breaker's state).
        """
        bus = EventBus()
        prom_registry, otel_registry, provider = both_paths(bus)
        clock = MockClock()
        breaker = CircuitBreaker(
            "api",
            store=RedisBreakerStore(
                dead_client, on_backend_error="fail_open", retry_interval=1
            ),
            clock=clock,
            bus=bus,
        )
        executor = ResilientExecutor(
            "svc", circuit_breaker=breaker, clock=clock, bus=bus
        )
        try:
            assert [True] * 5 == breaker_outage(executor, clock)
            prom = series(generate_latest(prom_registry).decode())
            otel = series(generate_latest(otel_registry).decode())
        finally:
            provider.shutdown()

        assert {
            (
                "stormwall_backend_errors_total",
                (("component", "api"), ("error_type", "ConnectionError")),
            ): 3.0,
            (
                "stormwall_backend_decisions_total",
                (("component", "api"), ("decision", "fail_open")),
            ): 6.0,
        } == prom
        assert prom == otel


class TestTraces:
    @pytest.fixture
    def tracing(self):
        memory = InMemorySpanExporter()
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        try:
            yield provider, memory
        finally:
            provider.shutdown()

    def test_the_call_span_says_the_backend_failed(self, dead_client, tracing):
        """Inside an executor: an event on the call span, with the policy."""
        provider, memory = tracing
        bus = EventBus()
        TracingExporter(provider).attach(bus)
        limiter = RedisTokenBucket(
            dead_client, 3, 10, on_backend_error="fail_open"
        )
        ex = ResilientExecutor("svc", limiter=limiter, bus=bus)

        assert "ok" == ex.run("k", lambda: "ok")

        (span,) = [s for s in memory.get_finished_spans() if s.name == "svc"]
        (event,) = [
            e for e in span.events if e.name == "stormwall.backend.error"
        ]
        assert {
            "stormwall.backend.component": "svc",  # unnamed: the executor's
            "stormwall.backend.name": "redis",
            "stormwall.backend.operation": "acquire",
            "stormwall.backend.policy": "fail_open",
            "stormwall.backend.cooldown": False,
            "error.type": "ConnectionError",
        } == dict(event.attributes)

    def test_outside_an_executor_the_current_span(self, dead_client, tracing):
        """A limiter used on its own marks the span current at the time."""
        provider, memory = tracing
        bus = EventBus()
        TracingExporter(provider).attach(bus)
        limiter = RedisTokenBucket(
            dead_client, 3, 10, on_backend_error="fail_closed", bus=bus
        )

        with provider.get_tracer("test").start_as_current_span("request"):
            assert False is limiter.try_acquire("k")

        (span,) = memory.get_finished_spans()
        assert ["stormwall.backend.error"] == [e.name for e in span.events]
        assert (
            "fail_closed"
            == span.events[0].attributes["stormwall.backend.policy"]
        )


class TestLogs:
    def test_stdlib_logs_a_failure_as_error_a_cooldown_as_debug(
        self, dead_client, caplog
    ):
        """One ERROR line per failed round trip, DEBUG while cooling down."""
        caplog.set_level(logging.DEBUG, logger="stormwall.events")
        bus = EventBus()
        LoggingExporter().attach(bus)
        clock = MockClock()
        limiter = RedisTokenBucket(
            dead_client,
            3,
            10,
            on_backend_error="fail_open",
            clock=clock,
            bus=bus,
        )

        outage(limiter, clock, calls=3)

        lines = [
            (r.levelno, r.stormwall)
            for r in caplog.records
            if r.name == "stormwall.events"
        ]
        assert [logging.ERROR, logging.DEBUG, logging.ERROR] == [
            level for level, _ in lines
        ]
        _, fields = lines[0]
        assert {
            "event": "stormwall.backend.error",
            "component": "token_bucket",
            "backend": "redis",
            "operation": "acquire",
            "policy": "fail_open",
            "cooldown": False,
            "error_type": "ConnectionError",
        }.items() <= fields.items()

    def test_structlog_logs_it_too(self, dead_client):
        """The structlog exporter writes the same line."""
        pytest.importorskip("structlog")
        import structlog.testing

        from stormwall.exporters.structlog import StructlogExporter

        structlog.reset_defaults()
        bus = EventBus()
        StructlogExporter().attach(bus)
        limiter = RedisTokenBucket(
            dead_client, 3, 10, on_backend_error="raise", bus=bus
        )
        with (
            structlog.testing.capture_logs() as entries,
            pytest.raises(BackendUnavailableError, match="redis backend"),
        ):
            limiter.try_acquire("k")

        (entry,) = entries
        assert "stormwall.backend.error" == entry["event"]
        assert "error" == entry["log_level"]
        assert "raise" == entry["policy"]
        assert "ConnectionError" == entry["error_type"]


@pytest.mark.integration
def test_killed_server_counted_on_metrics_then_recovery(redis_server):
    """
    A killed redis-server: decisions follow the policy, BackendError is
    counted on a served /metrics page; restarted, Redis decides again.
    """
    registry = CollectorRegistry()
    bus = EventBus()
    PrometheusExporter(registry).attach(bus)
    clock = MockClock()
    client = redis.Redis.from_url(redis_server.url)
    limiter = RedisTokenBucket(
        client, 3, 10, on_backend_error="fail_closed", clock=clock, bus=bus
    )
    try:
        with serve_metrics(registry=registry) as server:
            assert True is limiter.try_acquire("k")
            redis_server.stop()
            assert [False] * 4 == outage(limiter, clock, calls=4)

            with urllib.request.urlopen(server.url, timeout=5) as page:  # noqa: S310 - loopback
                text = page.read().decode()
            assert {
                (
                    "stormwall_backend_errors_total",
                    (
                        ("component", "token_bucket"),
                        ("error_type", "ConnectionError"),
                    ),
                ): 2.0,
                (
                    "stormwall_backend_decisions_total",
                    (
                        ("component", "token_bucket"),
                        ("decision", "fail_closed"),
                    ),
                ): 4.0,
            } == series(text)

            redis_server.start()
            clock.advance(limiter.retry_interval)
            # Restarted empty: a full bucket, and Redis decides again.
            assert [True, True, True, False] == [
                limiter.try_acquire("k") for _ in range(4)
            ]
            assert (4, 1) == (
                limiter.statistics().allowed,
                limiter.statistics().rejected,
            )
            assert (2.0, 4.0) == (
                registry.get_sample_value(
                    "stormwall_backend_errors_total",
                    {
                        "component": "token_bucket",
                        "error_type": "ConnectionError",
                    },
                ),
                registry.get_sample_value(
                    "stormwall_backend_decisions_total",
                    {"component": "token_bucket", "decision": "fail_closed"},
                ),
            )
    finally:
        client.close()


@pytest.mark.integration
def test_killed_server_under_breaker_store_counted_on_metrics(redis_server):
    """
    The shared breaker over a killed redis-server: every decision follows
    fail_closed, counted on a served /metrics page and on the OTel path
    alike, as for a limiter; restarted, Redis decides again.
    """
    bus = EventBus()
    prom_registry, otel_registry, provider = both_paths(bus)
    clock = MockClock()
    client = redis.Redis.from_url(redis_server.url)
    breaker = CircuitBreaker(
        "payments",
        store=RedisBreakerStore(
            client,
            on_backend_error="fail_closed",
            retry_interval=1,
            sync_interval=1e-6,  # every admission asks Redis
        ),
        clock=clock,
        bus=bus,
    )
    executor = ResilientExecutor(
        "svc", circuit_breaker=breaker, clock=clock, bus=bus
    )
    expected = {
        (
            "stormwall_backend_errors_total",
            (("component", "payments"), ("error_type", "ConnectionError")),
        ): 2.0,
        (
            "stormwall_backend_decisions_total",
            (("component", "payments"), ("decision", "fail_closed")),
        ): 4.0,
    }
    try:
        with serve_metrics(registry=prom_registry) as server:
            assert True is executor.run("k", lambda: True)
            redis_server.stop()
            assert [False] * 4 == breaker_outage(executor, clock, calls=4)

            with urllib.request.urlopen(server.url, timeout=5) as page:  # noqa: S310 - loopback
                text = page.read().decode()
            assert expected == series(text)
            assert expected == series(generate_latest(otel_registry).decode())

            redis_server.start()
            clock.advance(1)  # retry_interval: Redis is probed again
            # Restarted empty: closed, and Redis decides again.
            assert [True, True] == breaker_outage(executor, clock, calls=2)
            assert "closed" == breaker.state.value
            assert expected == series(text)
            assert expected == series(generate_latest(prom_registry).decode())
    finally:
        provider.shutdown()
        client.close()
