"""
OpenTelemetry's Prometheus bridge bound to a registry of the test's own.

``PrometheusMetricReader(registry=..., scope_info_enabled=False)`` exists
from opentelemetry-exporter-prometheus 0.63b0 on. Older releases (which the
oldest declared versions resolve to) always register on the global
``prometheus_client.REGISTRY`` and always add ``otel_scope_*`` labels (the
tests that compare label sets drop those). Either way the reader returned
here serves ``registry``, so tests read only their own series.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from opentelemetry.exporter.prometheus import PrometheusMetricReader


if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def prometheus_reader(registry: CollectorRegistry) -> PrometheusMetricReader:
    """A reader served on ``registry`` (scope labels off where possible)."""
    params = inspect.signature(PrometheusMetricReader).parameters
    if "registry" in params:
        return PrometheusMetricReader(
            registry=registry, scope_info_enabled=False
        )
    reader = PrometheusMetricReader()
    # Served on the test's registry too; it leaves the global one at
    # shutdown. It has no describe(), so it claims no names in either.
    registry.register(reader._collector)  # no public handle before 0.63b0
    return reader
