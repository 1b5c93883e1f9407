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

import threading
from typing import TYPE_CHECKING, Any, Final

from stormwall import ConfigError, EventBus, __version__
from stormwall.events import (
    AttemptEnded,
    AttemptStarted,
    BackendError,
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    CallStarted,
    Event,
    ExecutorObserved,
    FallbackUsed,
    LimiterAllowed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)

from . import _vocabulary as vocab
from ._attach import Attachments


try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "stormwall.exporters.otel needs OpenTelemetry: "
        "pip install 'stormwall[otel]'"
    ) from None


if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from stormwall import Subscription


__all__ = ["MetricsExporter", "TracingExporter"]

_SCOPE: Final = "stormwall"

# Span attribute keys. ``error.type`` is OTel's semantic-convention key; the
# rest live under ``stormwall.`` and never double as a namespace.
_EXECUTOR: Final = "stormwall.executor"
_KEY: Final = "stormwall.key"
_ATTEMPT: Final = "stormwall.attempt"
_ATTEMPTS: Final = "stormwall.attempts"
_OUTCOME: Final = "stormwall.outcome"
_ERROR_TYPE: Final = "error.type"
_RETRY_DELAY: Final = "stormwall.retry.delay"
_BREAKER_NAME: Final = "stormwall.circuit_breaker.name"
_BREAKER_STATE: Final = "stormwall.circuit_breaker.state"
_BREAKER_FROM: Final = "stormwall.circuit_breaker.from_state"
_BREAKER_TO: Final = "stormwall.circuit_breaker.to_state"
_BREAKER_REASON: Final = "stormwall.circuit_breaker.reason"
_RETRY_AFTER: Final = "stormwall.retry_after"
_LIMITER_NAME: Final = "stormwall.rate_limiter.name"
_LIMITER_WAITED: Final = "stormwall.rate_limiter.waited"
_BULKHEAD_NAME: Final = "stormwall.bulkhead.name"
_BULKHEAD_IN_FLIGHT: Final = "stormwall.bulkhead.in_flight"
_BULKHEAD_WAITED: Final = "stormwall.bulkhead.waited"
# OTel's exception event and its type attribute (semantic conventions).
_EXCEPTION: Final = "exception"
_EXCEPTION_TYPE: Final = "exception.type"
_BACKEND_COMPONENT: Final = "stormwall.backend.component"
_BACKEND_NAME: Final = "stormwall.backend.name"
_BACKEND_OPERATION: Final = "stormwall.backend.operation"
_BACKEND_POLICY: Final = "stormwall.backend.policy"
_BACKEND_COOLDOWN: Final = "stormwall.backend.cooldown"

# Call outcomes that make the call span an error: the caller got an
# exception. "fallback" (the caller got a value) and "cancelled" (the
# caller stopped) do not.
_FAILED_CALL: Final = frozenset({"failure", "rejected"})
_FAILED_ATTEMPT: Final = frozenset({"failure", "timeout"})


def _exception_type(error: BaseException) -> str:
    """``exception.type`` as the OTel SDK's ``record_exception`` writes it."""
    cls = type(error)
    module = cls.__module__
    if module and module != "builtins":
        return f"{module}.{cls.__qualname__}"
    return cls.__qualname__


class _Call:
    """One traced call: its span, its context and token, its open attempt."""

    __slots__ = ("attempt_span", "attempt_token", "context", "span", "token")

    def __init__(
        self, span: Span, context: Context, token: Token[Context]
    ) -> None:
        self.span = span
        self.context = context
        self.token = token
        self.attempt_span: Span | None = None
        self.attempt_token: Token[Context] | None = None


class TracingExporter:
    """
    Turn calls and attempts into OpenTelemetry spans.

    One INTERNAL span per call, named after the executor and a child of the
    span current when the call began; one child span per attempt, current
    while the function runs; retries, limiter waits, rejections and breaker
    transitions as span events on the call span (see the module docstring
    for every name).

    The handlers run inline in the calling thread or task, which is what
    lets the spans be *current* (``contextvars``) during the call. They
    open a span before, and close it after, every other subscriber's
    handler of that event, so the log exporters' lines carry the call's or
    the attempt's span ids whichever exporter was attached first. A call
    that began before `attach` is not traced; close the subscription at
    shutdown, when no call is in flight (a call cut off mid-way keeps its
    context attached in its thread and its span never ends).

    Args:
        tracer_provider: Where spans go (default: the global provider,
            resolved lazily, so `attach` may come before the SDK is set
            up).
        record_key: Record the call's key as ``stormwall.key`` on the call
            span. Off by default: keys are often user or tenant ids, that
            is personal data.
        record_exception_messages: Record a failed attempt's exception as
            OpenTelemetry's ``record_exception`` does, with its message and
            stack trace. Off by default: a message often quotes the call's
            arguments (an id, an address, a card number) and a stack trace
            its source lines, so only the exception's type is recorded
            (``error.type``, and ``exception.type`` on the ``exception``
            event). Turn it on where traces may hold personal data.

    Raises:
        ConfigError: ``tracer_provider`` has no ``get_tracer``, or
            ``record_key`` or ``record_exception_messages`` is not a bool.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        record_key: bool = False,
        record_exception_messages: bool = False,
    ) -> None:
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            raise ConfigError(
                "tracer_provider",
                "expected an OpenTelemetry TracerProvider, got "
                f"{type(tracer_provider).__name__}",
            )
        for param, flag in (
            ("record_key", record_key),
            ("record_exception_messages", record_exception_messages),
        ):
            if not isinstance(flag, bool):
                raise ConfigError(
                    param, f"expected a bool, got {type(flag).__name__}"
                )
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider)
        self._record_key = record_key
        self._record_messages = record_exception_messages
        # call_id -> _Call. Single dict operations (get, set, pop) are
        # atomic, and each call_id is only ever touched by the thread or
        # task running that call, so no lock is needed.
        self._calls: dict[int, _Call] = {}
        self._attachments = Attachments()
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            CallStarted: self._call_started,
            AttemptStarted: self._attempt_started,
            AttemptEnded: self._attempt_ended,
            CallEnded: self._call_ended,
            RetryScheduled: self._retry_scheduled,
            RetryBudgetExhausted: self._budget_exhausted,
            BreakerStateChanged: self._breaker_changed,
            BreakerRejected: self._breaker_rejected,
            LimiterWaited: self._limiter_waited,
            LimiterRejected: self._limiter_rejected,
            BulkheadAcquired: self._bulkhead_acquired,
            BulkheadRejected: self._bulkhead_rejected,
            FallbackUsed: self._fallback_used,
            BackendError: self._backend_error,
        }

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """
        Start tracing the calls of every executor reporting on ``bus``.

        Args:
            bus: The bus (`stormwall.default_bus` when ``None``).

        Returns:
            The subscription; close it to stop tracing.

        Raises:
            ConfigError: ``bus`` is not an `EventBus`.
        """
        # One route per handled type: the bus calls each handler directly,
        # and executors do not even build the events nobody handles. The
        # spans open before and close after every other subscriber's
        # handler, so a log exporter sees the call's or attempt's span
        # current for each of its events, whichever was attached first.
        return self._attachments.attach_routes(
            bus,
            self._handlers,
            first=(CallStarted, AttemptStarted),
            last=(AttemptEnded, CallEnded),
        )

    # -- spans ----------------------------------------------------------------

    def _call_started(self, event: CallStarted) -> None:
        if event.call_id is None:
            return
        executor = event.executor or "stormwall"
        attributes: dict[str, AttributeValue] = {_EXECUTOR: executor}
        if self._record_key and event.key is not None:
            attributes[_KEY] = event.key
        span = self._tracer.start_span(
            executor, kind=SpanKind.INTERNAL, attributes=attributes
        )
        # The call span also rides in the context under its own key, so the
        # log exporters find it for a call's events that happen while an
        # attempt span is current (a bulkhead release).
        context = trace.set_span_in_context(
            span,
            otel_context.set_value(vocab.CALL_SPAN, (event.call_id, span)),
        )
        token = otel_context.attach(context)
        self._calls[event.call_id] = _Call(span, context, token)

    def _attempt_started(self, event: AttemptStarted) -> None:
        call = self._calls.get(event.call_id)  # type: ignore[arg-type]
        if call is None:
            return
        if call.attempt_span is not None:  # an AttemptEnded went missing
            self._end_attempt(call, "cancelled", None)
        span = self._tracer.start_span(
            f"{event.executor or 'stormwall'} attempt",
            context=call.context,
            kind=SpanKind.INTERNAL,
            attributes={_ATTEMPT: event.attempt or 0},
        )
        call.attempt_span = span
        call.attempt_token = otel_context.attach(
            trace.set_span_in_context(span)
        )

    def _attempt_ended(self, event: AttemptEnded) -> None:
        call = self._calls.get(event.call_id)  # type: ignore[arg-type]
        if call is None or call.attempt_span is None:
            return
        self._end_attempt(call, event.outcome, event.error)

    def _end_attempt(
        self, call: _Call, outcome: str, error: BaseException | None
    ) -> None:
        span, token = call.attempt_span, call.attempt_token
        call.attempt_span = call.attempt_token = None
        if token is not None:
            otel_context.detach(token)
        if span is None:
            return
        span.set_attribute(_OUTCOME, outcome)
        if outcome in _FAILED_ATTEMPT:
            span.set_attribute(_ERROR_TYPE, vocab.error_type(error))
            if error is not None and self._record_messages:
                span.record_exception(error)
            elif error is not None:
                span.add_event(
                    _EXCEPTION, {_EXCEPTION_TYPE: _exception_type(error)}
                )
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def _call_ended(self, event: CallEnded) -> None:
        call = self._calls.pop(event.call_id, None)  # type: ignore[arg-type]
        if call is None:
            return
        if call.attempt_span is not None:
            # Detach in LIFO order: the attempt's context sits on the call's.
            self._end_attempt(call, "cancelled", None)
        otel_context.detach(call.token)
        span = call.span
        span.set_attributes(
            {_ATTEMPTS: event.attempts, _OUTCOME: event.outcome}
        )
        if event.outcome in _FAILED_CALL:
            span.set_attribute(_ERROR_TYPE, vocab.error_type(event.error))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # -- span events ----------------------------------------------------------

    def _add_event(
        self, event: Event, attributes: dict[str, AttributeValue]
    ) -> None:
        call = self._calls.get(event.call_id)  # type: ignore[arg-type]
        if call is not None:
            call.span.add_event(event.name, attributes)

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        self._add_event(
            event,
            {
                _ATTEMPT: event.attempt or 0,
                _RETRY_DELAY: event.delay,
                _ERROR_TYPE: vocab.error_type(event.error),
            },
        )

    def _budget_exhausted(self, event: RetryBudgetExhausted) -> None:
        self._add_event(
            event,
            {
                _ATTEMPT: event.attempt or 0,
                _ERROR_TYPE: vocab.error_type(event.error),
            },
        )

    def _breaker_changed(self, event: BreakerStateChanged) -> None:
        self._add_event(
            event,
            {
                _BREAKER_NAME: event.breaker,
                _BREAKER_FROM: str(event.from_state),
                _BREAKER_TO: str(event.to_state),
                _BREAKER_REASON: event.reason,
            },
        )

    def _breaker_rejected(self, event: BreakerRejected) -> None:
        attributes: dict[str, AttributeValue] = {
            _BREAKER_NAME: event.breaker,
            _BREAKER_STATE: str(event.state),
        }
        if event.retry_after is not None:
            attributes[_RETRY_AFTER] = event.retry_after
        self._add_event(event, attributes)

    def _limiter_waited(self, event: LimiterWaited) -> None:
        self._add_event(
            event,
            {_LIMITER_NAME: event.limiter, _LIMITER_WAITED: event.waited},
        )

    def _limiter_rejected(self, event: LimiterRejected) -> None:
        self._add_event(
            event,
            {_LIMITER_NAME: event.limiter, _RETRY_AFTER: event.retry_after},
        )

    def _bulkhead_acquired(self, event: BulkheadAcquired) -> None:
        # Entering at once is the normal case and not worth an event;
        # queueing for a slot is.
        if event.waited > 0:
            self._add_event(
                event,
                {
                    _BULKHEAD_NAME: event.bulkhead,
                    _BULKHEAD_WAITED: event.waited,
                    _BULKHEAD_IN_FLIGHT: event.in_flight,
                },
            )

    def _bulkhead_rejected(self, event: BulkheadRejected) -> None:
        self._add_event(
            event,
            {
                _BULKHEAD_NAME: event.bulkhead,
                _BULKHEAD_IN_FLIGHT: event.in_flight,
            },
        )

    def _fallback_used(self, event: FallbackUsed) -> None:
        self._add_event(event, {_ERROR_TYPE: vocab.error_type(event.error)})

    def _backend_error(self, event: BackendError) -> None:
        # On the call's span inside a call, else on whatever span is current
        # (a limiter used on its own inside the user's request span).
        attributes: dict[str, AttributeValue] = {
            _BACKEND_COMPONENT: event.component,
            _BACKEND_NAME: event.backend,
            _BACKEND_OPERATION: event.operation,
            _BACKEND_POLICY: event.policy,
            _BACKEND_COOLDOWN: event.cooldown,
            _ERROR_TYPE: vocab.error_type(event.error),
        }
        call = self._calls.get(event.call_id)  # type: ignore[arg-type]
        span = call.span if call is not None else trace.get_current_span()
        if span.is_recording():
            span.add_event(event.name, attributes)


class MetricsExporter:
    """
    Record the stormwall metrics through the OpenTelemetry metrics API.

    Every instrument of the shared vocabulary, with its name, unit,
    description and attributes, so one dashboard serves this path and the
    ``prometheus_client`` one. Histograms advise `DURATION_BUCKETS` (seconds;
    OTel's defaults are millisecond-shaped). The breaker state and the
    bulkhead's in-flight calls are observable gauges read from the
    exporter's own state at each collection, so their series exist from the
    breaker's or bulkhead's first use and never lapse between changes.

    Counter series whose label values are known in advance (calls and
    attempts by outcome, a breaker's transitions and rejections, a limiter's
    results, bulkhead rejections, retry-budget denials) are created at 0
    when their executor, breaker, limiter or bulkhead is first seen:
    Prometheus's ``rate()``/``increase()`` ignore a series' first sample,
    so a series born at 1 would hide the first breaker trip.

    Args:
        meter_provider: Where metrics go (default: the global provider,
            resolved lazily).

    Raises:
        ConfigError: ``meter_provider`` has no ``get_meter``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None
    ) -> None:
        if meter_provider is not None and not callable(
            getattr(meter_provider, "get_meter", None)
        ):
            raise ConfigError(
                "meter_provider",
                "expected an OpenTelemetry MeterProvider, got "
                f"{type(meter_provider).__name__}",
            )
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider)

        def counter(spec: vocab.MetricSpec) -> metrics.Counter:
            return meter.create_counter(
                spec.otel_name, unit=spec.unit, description=spec.description
            )

        def histogram(spec: vocab.MetricSpec) -> metrics.Histogram:
            return meter.create_histogram(
                spec.otel_name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=vocab.DURATION_BUCKETS,
            )

        self._calls = counter(vocab.CALLS)
        self._call_duration = histogram(vocab.CALL_DURATION)
        self._attempts = counter(vocab.ATTEMPTS)
        self._attempt_duration = histogram(vocab.ATTEMPT_DURATION)
        self._retries = counter(vocab.RETRIES)
        self._transitions = counter(vocab.BREAKER_TRANSITIONS)
        self._breaker_rejections = counter(vocab.BREAKER_REJECTIONS)
        self._limiter_requests = counter(vocab.LIMITER_REQUESTS)
        self._limiter_wait = histogram(vocab.LIMITER_WAIT)
        self._bulkhead_rejections = counter(vocab.BULKHEAD_REJECTIONS)
        self._budget_exhausted = counter(vocab.RETRY_BUDGET_EXHAUSTED)
        self._backend_errors = counter(vocab.BACKEND_ERRORS)
        self._backend_decisions = counter(vocab.BACKEND_DECISIONS)
        meter.create_observable_gauge(
            vocab.BREAKER_STATE.otel_name,
            callbacks=[self._observe_breakers],
            unit=vocab.BREAKER_STATE.unit,
            description=vocab.BREAKER_STATE.description,
        )
        meter.create_observable_gauge(
            vocab.BULKHEAD_IN_FLIGHT.otel_name,
            callbacks=[self._observe_bulkheads],
            unit=vocab.BULKHEAD_IN_FLIGHT.unit,
            description=vocab.BULKHEAD_IN_FLIGHT.description,
        )
        # What the gauges report: breaker -> state, bulkhead -> in flight.
        # Writers assign single keys; the callbacks read a copy(), which is
        # atomic, so a collection never sees a dict changing under it.
        self._breaker_states: dict[str, str] = {}
        self._in_flight: dict[str, int] = {}
        self._executors: set[str] = set()
        self._limiters: set[str] = set()
        self._lock = threading.Lock()
        self._newest = vocab.Newest()
        self._newest_bulkhead = vocab.Newest()
        self._attachments = Attachments()
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            ExecutorObserved: self._executor_observed,
            CallEnded: self._call_ended,
            AttemptEnded: self._attempt_ended,
            RetryScheduled: self._retry_scheduled,
            RetryBudgetExhausted: self._budget_exhausted_event,
            BreakerStateChanged: self._breaker_changed,
            BreakerRejected: self._breaker_rejected,
            LimiterAllowed: self._limiter_allowed,
            LimiterWaited: self._limiter_waited,
            LimiterRejected: self._limiter_rejected,
            BulkheadAcquired: self._bulkhead_moved,
            BulkheadReleased: self._bulkhead_moved,
            BulkheadRejected: self._bulkhead_rejected,
            BackendError: self._backend_error,
        }

    def attach(self, bus: EventBus | None = None) -> Subscription:
        """
        Start recording the metrics of every executor reporting on ``bus``.

        Attaching to a bus this exporter is already attached to returns the
        same subscription: counting every event twice would be wrong.

        Args:
            bus: The bus (`stormwall.default_bus` when ``None``).

        Returns:
            The subscription; close it to stop recording.

        Raises:
            ConfigError: ``bus`` is not an `EventBus`.
        """
        # One route per handled type: the bus calls each handler directly,
        # and executors do not even build the events nobody handles.
        return self._attachments.attach_routes(bus, self._handlers)

    # -- first sight: pre-created series --------------------------------------

    def _see_executor(self, name: str) -> None:
        if name in self._executors:
            return
        with self._lock:
            if name in self._executors:
                return
            self._executors.add(name)
        for outcome in vocab.CALL_OUTCOMES:
            self._calls.add(0, {"executor": name, "outcome": outcome})
        for outcome in vocab.ATTEMPT_OUTCOMES:
            self._attempts.add(0, {"executor": name, "outcome": outcome})
        self._budget_exhausted.add(0, {"executor": name})

    def _see_breaker(self, name: str, state: str | None) -> None:
        if name in self._breaker_states:
            return
        with self._lock:
            if name in self._breaker_states:
                return
            self._breaker_states[name] = str(state or "closed")
        for from_state, to_state in vocab.BREAKER_TRANSITION_PAIRS:
            self._transitions.add(
                0,
                {
                    "breaker": name,
                    "from_state": from_state,
                    "to_state": to_state,
                },
            )
        self._breaker_rejections.add(0, {"breaker": name})

    def _see_limiter(self, name: str) -> None:
        if name in self._limiters:
            return
        with self._lock:
            if name in self._limiters:
                return
            self._limiters.add(name)
        for result in vocab.LIMITER_RESULTS:
            self._limiter_requests.add(0, {"limiter": name, "result": result})

    def _see_bulkhead(self, name: str) -> None:
        if name in self._in_flight:
            return
        with self._lock:
            if name in self._in_flight:
                return
            self._in_flight[name] = 0
        self._bulkhead_rejections.add(0, {"bulkhead": name})

    # -- events ---------------------------------------------------------------

    def _executor_observed(self, event: ExecutorObserved) -> None:
        if event.executor is not None:
            self._see_executor(event.executor)
        if event.breaker is not None:
            self._see_breaker(event.breaker, event.breaker_state)
            if event.breaker_state is not None:
                self._breaker_states[event.breaker] = str(event.breaker_state)
        for limiter in event.limiters:
            self._see_limiter(limiter)
        if event.bulkhead is not None:
            self._see_bulkhead(event.bulkhead)

    def _call_ended(self, event: CallEnded) -> None:
        executor = event.executor or ""
        self._see_executor(executor)
        attributes = {"executor": executor, "outcome": event.outcome}
        self._calls.add(1, attributes)
        self._call_duration.record(event.duration, attributes)

    def _attempt_ended(self, event: AttemptEnded) -> None:
        executor = event.executor or ""
        self._see_executor(executor)
        attributes = {"executor": executor, "outcome": event.outcome}
        self._attempts.add(1, attributes)
        self._attempt_duration.record(event.duration, attributes)

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        self._retries.add(
            1,
            {
                "executor": event.executor or "",
                "error_type": vocab.error_type(event.error),
            },
        )

    def _budget_exhausted_event(self, event: RetryBudgetExhausted) -> None:
        executor = event.executor or ""
        self._see_executor(executor)
        self._budget_exhausted.add(1, {"executor": executor})

    def _breaker_changed(self, event: BreakerStateChanged) -> None:
        from_state, to_state = str(event.from_state), str(event.to_state)
        self._see_breaker(event.breaker, from_state)
        if self._newest.accept(event.breaker, event.sequence):
            self._breaker_states[event.breaker] = to_state
        self._transitions.add(
            1,
            {
                "breaker": event.breaker,
                "from_state": from_state,
                "to_state": to_state,
            },
        )

    def _breaker_rejected(self, event: BreakerRejected) -> None:
        self._see_breaker(event.breaker, str(event.state))
        self._breaker_rejections.add(1, {"breaker": event.breaker})

    def _limiter_allowed(self, event: LimiterAllowed) -> None:
        self._see_limiter(event.limiter)
        self._limiter_requests.add(
            1, {"limiter": event.limiter, "result": "allowed"}
        )

    def _limiter_waited(self, event: LimiterWaited) -> None:
        self._see_limiter(event.limiter)
        self._limiter_requests.add(
            1, {"limiter": event.limiter, "result": "waited"}
        )
        self._limiter_wait.record(event.waited, {"limiter": event.limiter})

    def _limiter_rejected(self, event: LimiterRejected) -> None:
        self._see_limiter(event.limiter)
        self._limiter_requests.add(
            1, {"limiter": event.limiter, "result": "rejected"}
        )

    def _bulkhead_moved(
        self, event: BulkheadAcquired | BulkheadReleased
    ) -> None:
        self._see_bulkhead(event.bulkhead)
        if self._newest_bulkhead.accept(event.bulkhead, event.sequence):
            self._in_flight[event.bulkhead] = event.in_flight

    def _bulkhead_rejected(self, event: BulkheadRejected) -> None:
        self._see_bulkhead(event.bulkhead)
        self._bulkhead_rejections.add(1, {"bulkhead": event.bulkhead})

    def _backend_error(self, event: BackendError) -> None:
        if not event.cooldown:  # a round trip failed (not a skipped one)
            self._backend_errors.add(
                1,
                {
                    "component": event.component,
                    "error_type": vocab.error_type(event.error),
                },
            )
        self._backend_decisions.add(
            1, {"component": event.component, "decision": event.policy}
        )

    # -- gauges ---------------------------------------------------------------

    def _observe_breakers(
        self, _options: CallbackOptions
    ) -> Iterable[Observation]:
        return [
            metrics.Observation(
                1 if state == current else 0,
                {"breaker": breaker, "state": state},
            )
            for breaker, current in self._breaker_states.copy().items()
            for state in vocab.BREAKER_STATES
        ]

    def _observe_bulkheads(
        self, _options: CallbackOptions
    ) -> Iterable[Observation]:
        return [
            metrics.Observation(in_flight, {"bulkhead": bulkhead})
            for bulkhead, in_flight in self._in_flight.copy().items()
        ]
