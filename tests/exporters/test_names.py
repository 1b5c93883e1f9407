"""
One dashboard serves both metric paths: prometheus_client and the OTel SDK
with its Prometheus reader expose the very same metric names, label sets and
values for the same scenario.
"""

from __future__ import annotations

import pytest


pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.prometheus")

from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stormwall import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    EventBus,
    MockClock,
    RateLimitedError,
    ResilientExecutor,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
)
from stormwall.events import BackendError
from stormwall.exporters import _vocabulary as vocab
from stormwall.exporters.otel import MetricsExporter
from stormwall.exporters.prometheus import PrometheusExporter
from tests.support.otel_compat import prometheus_reader


class Boom(Exception):
    pass


def scenario(bus: EventBus) -> ResilientExecutor:
    """Every metric of the table gets at least one sample; returns the
    executor (a scrape reads the live components: keep it alive)."""
    clock = MockClock()
    breaker = CircuitBreaker(
        "upstream", failure_threshold=2, recovery_timeout=10
    )
    bulkhead = Bulkhead(1, name="pool")
    ex = ResilientExecutor(
        "svc",
        limiter=TokenBucket(2, 1, name="per-user"),
        limiter_timeout=0.95,
        retry_policy=RetryPolicy(
            max_attempts=3,
            base_delay=0.1,
            jitter=None,
            budget=RetryBudget(ratio=0.1, min_per_second=0.1, ttl=10),
        ),
        circuit_breaker=breaker,
        bulkhead=bulkhead,
        fallback=None,
        clock=clock,
        bus=bus,
    )
    ex.run("u1", lambda: "ok")  # success, limiter allowed
    calls = iter([Boom(), "ok"])

    def flaky():
        step = next(calls)
        if isinstance(step, Exception):
            raise step
        return step

    ex.run("u2", flaky)  # a retry, then success
    ex.run("u1", lambda: "ok")  # limiter allowed (second token)
    ex.run("u1", lambda: "ok")  # limiter waited
    with pytest.raises(RateLimitedError):
        ex.run("u1", lambda: "ok")  # limiter rejected (1 s > 0.95 s)
    with pytest.raises(Boom):
        ex.run("u3", lambda: (_ for _ in ()).throw(Boom()))  # budget denies
    with pytest.raises((Boom, CircuitOpenError)):
        ex.run("u4", lambda: (_ for _ in ()).throw(Boom()))  # breaker opens
    with pytest.raises(CircuitOpenError):
        ex.run("u5", lambda: "never")  # breaker rejects
    clock.advance(10)
    ex.run("u6", lambda: "ok")  # half-open probe closes it
    assert bulkhead.try_acquire()
    with pytest.raises(BulkheadFullError):
        ex.run("u7", lambda: "never")  # bulkhead rejects
    bulkhead.release()
    # A shared backend failing: one failed round trip, one decision taken
    # while it cools down (as a Redis limiter reports them).
    for cooldown in (False, True):
        bus.emit(
            BackendError(
                time=clock.now(),
                component="shared",
                backend="redis",
                operation="acquire",
                policy="fail_open",
                error=ConnectionError("down"),
                cooldown=cooldown,
            )
        )
    return ex


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, without exporter-specific
    series (OTel scope labels, target_info, prometheus_client _created)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created") or s.name == "target_info":
                continue
            if not s.name.startswith("stormwall_"):
                continue
            labels = tuple(
                sorted(
                    (k, v)
                    for k, v in s.labels.items()
                    if not k.startswith("otel_scope_")
                    and k not in {"job", "instance"}
                )
            )
            out[(s.name, labels)] = s.value
    return out


@pytest.fixture
def expositions():
    bus = EventBus()
    prom_registry = CollectorRegistry()
    PrometheusExporter(prom_registry).attach(bus)
    otel_registry = CollectorRegistry()
    reader = prometheus_reader(otel_registry)
    provider = MeterProvider(metric_readers=[reader])
    MetricsExporter(provider).attach(bus)

    alive = scenario(bus)

    try:
        yield (
            generate_latest(prom_registry).decode(),
            generate_latest(otel_registry).decode(),
        )
    finally:
        provider.shutdown()
        del alive


class TestSameNamesOnBothPaths:
    def test_identical_names_and_label_sets(self, expositions):
        """Both paths expose the same series: names and label sets."""
        prom, otel = (samples(text) for text in expositions)

        assert sorted(prom) == sorted(otel)

    def test_identical_values(self, expositions):
        """The same scenario gives the same values on both paths."""
        prom, otel = (samples(text) for text in expositions)

        assert prom == pytest.approx(otel)

    def test_every_metric_of_the_table_is_exposed(self, expositions):
        """Every documented metric appears, on each path."""
        for text in expositions:
            names = {name for name, _ in samples(text)}
            for spec in vocab.METRICS:
                if spec.kind == "histogram":
                    assert f"{spec.prometheus_name}_bucket" in names, spec
                else:
                    assert spec.prometheus_name in names, spec


def test_label_outcomes_are_the_outcomes_the_pipeline_reports():
    """
    The outcome labels created at 0 are the outcomes the pipeline reports:
    two tuples, since exporters import only stormwall's public names, held
    together here so neither can drift.
    """
    from stormwall import _pipeline

    assert _pipeline.CALL_OUTCOMES == vocab.CALL_OUTCOMES
    assert _pipeline.ATTEMPT_OUTCOMES == vocab.ATTEMPT_OUTCOMES


class TestObserve:
    def test_observe_attaches_every_exporter_once(self):
        """stormwall.observe wires several exporters in one line, and
        attaching an exporter twice to one bus counts each event once."""
        import stormwall

        bus = EventBus()
        registry = CollectorRegistry()
        prom = PrometheusExporter(registry)
        reader_registry = CollectorRegistry()
        provider = MeterProvider(
            metric_readers=[prometheus_reader(reader_registry)]
        )
        otel = MetricsExporter(provider)
        try:
            with stormwall.observe(prom, otel, prom, bus=bus) as obs:
                ResilientExecutor("svc", bus=bus).run("k", lambda: 1)
                assert 3 == len(obs.subscriptions)
                assert obs.subscriptions[0] is obs.subscriptions[2]

            ResilientExecutor("svc", bus=bus).run("k", lambda: 1)
            texts = [
                generate_latest(reg).decode()
                for reg in (registry, reader_registry)
            ]
        finally:
            provider.shutdown()

        for text in texts:
            value = samples(text)[
                (
                    "stormwall_calls_total",
                    (("executor", "svc"), ("outcome", "success")),
                )
            ]
            assert 1.0 == value  # once, and nothing after close()

    def test_observe_refuses_a_non_exporter(self):
        """Something without attach() is refused with a ConfigError."""
        import stormwall

        with pytest.raises(stormwall.ConfigError) as info:
            stormwall.observe(object())

        assert "exporters" == info.value.parameter
