"""
The OpenTelemetry API, imported once for both OTel exporters.

Without the ``otel`` extra, importing it (so either exporter) raises an
`ImportError` that says what to install.
"""

from __future__ import annotations


try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stormwall.exporters.otel needs OpenTelemetry: "
        "pip install 'stormwall[otel]'"
    ) from None


__all__ = [
    "SpanKind",
    "Status",
    "StatusCode",
    "metrics",
    "otel_context",
    "trace",
]
