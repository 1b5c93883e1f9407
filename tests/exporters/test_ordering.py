"""
Gauges keep the newest snapshot even when events arrive out of order.

Components report after releasing their lock, so two threads' events can
reach the exporters in either order; each snapshot carries a sequence.
"""

from __future__ import annotations

import pytest


pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from stormwall import EventBus
from stormwall.events import (
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadReleased,
)
from stormwall.exporters.otel import MetricsExporter
from stormwall.exporters.prometheus import PrometheusExporter


LATE = [
    # newest first, then an older snapshot that arrives late
    BulkheadReleased(time=2, bulkhead="pool", in_flight=0, sequence=2),
    BulkheadAcquired(time=1, bulkhead="pool", in_flight=1, sequence=1),
    BreakerStateChanged(
        time=3,
        breaker="b",
        from_state="closed",
        to_state="open",
        reason="failure_threshold",
        sequence=3,
    ),
    BreakerStateChanged(
        time=2,
        breaker="b",
        from_state="half_open",
        to_state="closed",
        reason="probe_succeeded",
        sequence=2,
    ),
]


def otel_points(reader):
    points = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    attrs = tuple(sorted(p.attributes.items()))
                    points[(metric.name, attrs)] = p.value
    return points


class TestLateSnapshots:
    def test_prometheus_keeps_the_newest(self):
        """A late, older snapshot does not overwrite the gauges."""
        bus = EventBus()
        registry = CollectorRegistry()
        PrometheusExporter(registry).attach(bus)

        for event in LATE:
            bus.emit(event)

        assert 0 == registry.get_sample_value(
            "stormwall_bulkhead_in_flight", {"bulkhead": "pool"}
        )
        assert 1 == registry.get_sample_value(
            "stormwall_circuit_breaker_state",
            {"breaker": "b", "state": "open"},
        )
        assert 0 == registry.get_sample_value(
            "stormwall_circuit_breaker_state",
            {"breaker": "b", "state": "closed"},
        )
        assert 2 == sum(
            registry.get_sample_value(
                "stormwall_circuit_breaker_transitions_total",
                {"breaker": "b", "from_state": f, "to_state": t},
            )
            for f, t in (("closed", "open"), ("half_open", "closed"))
        )

    def test_otel_keeps_the_newest(self):
        """The OTel gauges keep the newest snapshot too."""
        bus = EventBus()
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        MetricsExporter(provider).attach(bus)
        try:
            for event in LATE:
                bus.emit(event)
            points = otel_points(reader)
        finally:
            provider.shutdown()

        assert (
            0
            == points[
                ("stormwall.bulkhead.in_flight", (("bulkhead", "pool"),))
            ]
        )
        state = "stormwall.circuit_breaker.state"
        assert 1 == points[(state, (("breaker", "b"), ("state", "open")))]
        assert 0 == points[(state, (("breaker", "b"), ("state", "closed")))]


class TestSequences:
    def test_components_stamp_increasing_sequences(self):
        """Breaker transitions and bulkhead snapshots carry increasing
        sequence numbers."""
        from stormwall import (
            Bulkhead,
            CircuitBreaker,
            MockClock,
            ResilientExecutor,
        )

        bus = EventBus()
        seen = []
        bus.subscribe(
            seen.append,
            BreakerStateChanged,
            BulkheadAcquired,
            BulkheadReleased,
        )
        clock = MockClock()
        breaker = CircuitBreaker("b", failure_threshold=1, recovery_timeout=1)
        ex = ResilientExecutor(
            "svc",
            circuit_breaker=breaker,
            bulkhead=Bulkhead(2, name="pool"),
            clock=clock,
            bus=bus,
        )
        with pytest.raises(ZeroDivisionError):
            ex.run("k", lambda: 1 / 0)
        clock.advance(1)
        ex.run("k", lambda: 1)

        for kind in (BreakerStateChanged, BulkheadAcquired):
            sequences = [
                e.sequence
                for e in seen
                if isinstance(e, kind)
                or (
                    kind is BulkheadAcquired
                    and isinstance(e, BulkheadReleased)
                )
            ]
            assert sequences == sorted(sequences)
            assert len(set(sequences)) == len(sequences)
            assert all(s > 0 for s in sequences)
