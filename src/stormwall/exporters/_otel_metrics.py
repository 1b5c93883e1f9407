"""
`MetricsExporter`: the stormwall metrics through the OpenTelemetry API.

Re-exported by the public module `stormwall.exporters.otel`; the instruments
are those of the shared vocabulary (`_vocabulary`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from stormwall import ConfigError, EventBus, __version__
from stormwall.events import (
    AttemptEnded,
    BackendError,
    BreakerRejected,
    BreakerStateChanged,
    BulkheadAcquired,
    BulkheadRejected,
    BulkheadReleased,
    CallEnded,
    Event,
    ExecutorObserved,
    LimiterAllowed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)

from . import _vocabulary as vocab
from ._attach import Attachments
from ._otel_guard import metrics


if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from opentelemetry.metrics import CallbackOptions, Observation

    from stormwall import Subscription


__all__ = ["MetricsExporter"]


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
        meter = metrics.get_meter(vocab.SCOPE, __version__, meter_provider)

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
