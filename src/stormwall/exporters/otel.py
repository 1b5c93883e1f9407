"""
OpenTelemetry exporters: spans per call and attempt, and the metrics.

`TracingExporter` makes one span per call and one child span per attempt;
`MetricsExporter` records the stormwall metrics through the OTel metrics API.

Needs ``pip install 'stormwall[otel]'``. One line at startup, after the OTel
SDK is configured, observes every executor of the process::

    from stormwall.exporters.otel import MetricsExporter, TracingExporter

    TracingExporter().attach()
    MetricsExporter().attach()

Traces (`TracingExporter`):

- The **call span** is INTERNAL, named after the executor, started at
  `CallStarted` as a child of whatever span is current (the user's request
  span), and current until `CallEnded`. Attributes: ``stormwall.executor``,
  ``stormwall.attempts``, ``stormwall.outcome`` and, only with
  ``record_key=True``, ``stormwall.key``. Status: Unset when the call
  succeeds (retries included) or a fallback supplied the value; ERROR with
  ``error.type`` when it fails or is rejected; Unset for a cancelled call
  (the caller chose to stop, the upstream did not fail).
- An **attempt span** ``"<executor> attempt"`` per call of the function,
  current while the function runs, so a span the function opens (an HTTP
  client span) nests under the attempt that made it. Attributes:
  ``stormwall.attempt`` (1-based), ``stormwall.outcome``; a failed or timed
  out attempt has status ERROR, ``error.type`` and an ``exception`` span
  event with the exception's type (``exception.type``) only: its message and
  stack trace are recorded only with ``record_exception_messages=True``, as
  they may carry the call's arguments.
- Everything the pipeline decides is a **span event on the call span**,
  named like the stormwall event: ``stormwall.retry.scheduled``
  (``stormwall.retry.delay`` seconds, ``error.type``),
  ``stormwall.rate_limiter.waited``, ``stormwall.rate_limiter.rejected``,
  ``stormwall.circuit_breaker.rejected``,
  ``stormwall.circuit_breaker.state_changed``,
  ``stormwall.bulkhead.rejected``, ``stormwall.bulkhead.acquired`` (only
  when the call queued for its slot), ``stormwall.retry_budget.exhausted``
  and ``stormwall.fallback.used``. They go on the call span because they
  happen between attempts: admission runs before an attempt starts, and the
  breaker records an attempt after it ended.
- A shared-state backend failing (Redis down, full, denying) is a
  ``stormwall.backend.error`` span event (``stormwall.backend.component``,
  ``.name``, ``.operation``, ``.policy``, ``.cooldown``, ``error.type``) on
  the call span, or on the current span when the component is used outside
  an executor.

Span timestamps are OpenTelemetry's own wall-clock time (epoch nanoseconds),
not the event's ``time``: that is the executor's clock (monotonic, or a
`MockClock` in tests), which has no epoch. Durations in metrics, on the other
hand, are the events' own, measured on the executor's clock.

Metrics (`MetricsExporter`): every instrument of the shared vocabulary
(``stormwall.calls``, ``stormwall.call.duration``, ...) with its unit,
description and attributes, so the OTel path and the ``prometheus_client``
path expose the same names; histograms advise seconds-shaped buckets.
"""

from __future__ import annotations

from ._otel_metrics import MetricsExporter
from ._otel_tracing import TracingExporter


__all__ = ["MetricsExporter", "TracingExporter"]
