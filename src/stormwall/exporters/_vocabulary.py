"""
One vocabulary for every exporter: metric names, labels, buckets, outcomes.

The OpenTelemetry and Prometheus exporters map events through this module, so
a metric is called the same whether it travels through ``prometheus_client``
or through the OTel SDK and its Prometheus exporter (one dashboard serves
both); the log exporters take their levels and fields from `_logs`, which
builds on the outcomes and states named here. Standard library only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from stormwall import CircuitState, ConfigError
from stormwall import tally as _tally_api
from stormwall.events import BackendError, Event


if TYPE_CHECKING:
    from collections.abc import Iterable


# -- metrics ------------------------------------------------------------------

SCOPE: Final = "stormwall"
"""The instrumentation scope of the OpenTelemetry tracer and meter."""

# Seconds-shaped buckets, 5 ms to 10 s (OTel's defaults are ms-shaped: its
# first bucket, 5, would hold every call).
DURATION_BUCKETS: Final = _tally_api.BUCKETS


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """
    One metric, as both paths name it.

    Attributes:
        otel_name: The OpenTelemetry instrument name.
        prometheus_name: The exposed Prometheus name (with ``_total`` for
            counters and the unit suffix for durations).
        kind: ``"counter"``, ``"histogram"`` or ``"gauge"``.
        unit: The OTel unit (UCUM; ``{...}`` annotations are dropped by the
            Prometheus translation, ``s`` becomes ``_seconds``).
        description: The help text.
        labels: The label (attribute) names, in order.
    """

    otel_name: str
    prometheus_name: str
    kind: str
    unit: str
    description: str
    labels: tuple[str, ...]

    @property
    def prometheus_base(self) -> str:
        """The name to give ``prometheus_client`` (it appends ``_total``)."""
        name = self.prometheus_name
        return name.removesuffix("_total") if self.kind == "counter" else name


CALLS = MetricSpec(
    "stormwall.calls",
    "stormwall_calls_total",
    "counter",
    "{call}",
    "Logical calls through a stormwall executor, by outcome.",
    ("executor", "outcome"),
)
CALL_DURATION = MetricSpec(
    "stormwall.call.duration",
    "stormwall_call_duration_seconds",
    "histogram",
    "s",
    "Duration of logical calls, retries and back-off included.",
    ("executor", "outcome"),
)
ATTEMPTS = MetricSpec(
    "stormwall.attempts",
    "stormwall_attempts_total",
    "counter",
    "{attempt}",
    "Calls of the protected function, by outcome.",
    ("executor", "outcome"),
)
ATTEMPT_DURATION = MetricSpec(
    "stormwall.attempt.duration",
    "stormwall_attempt_duration_seconds",
    "histogram",
    "s",
    "Duration of single attempts.",
    ("executor", "outcome"),
)
RETRIES = MetricSpec(
    "stormwall.retries",
    "stormwall_retries_total",
    "counter",
    "{retry}",
    "Retries scheduled, by the type of the error retried.",
    ("executor", "error_type"),
)
BREAKER_STATE = MetricSpec(
    "stormwall.circuit_breaker.state",
    "stormwall_circuit_breaker_state",
    "gauge",
    "",
    "1 for the breaker's current state, 0 for the others.",
    ("breaker", "state"),
)
BREAKER_TRANSITIONS = MetricSpec(
    "stormwall.circuit_breaker.transitions",
    "stormwall_circuit_breaker_transitions_total",
    "counter",
    "{transition}",
    "Circuit breaker state transitions.",
    ("breaker", "from_state", "to_state"),
)
BREAKER_REJECTIONS = MetricSpec(
    "stormwall.circuit_breaker.rejections",
    "stormwall_circuit_breaker_rejections_total",
    "counter",
    "{call}",
    "Calls short-circuited by a circuit breaker.",
    ("breaker",),
)
LIMITER_REQUESTS = MetricSpec(
    "stormwall.rate_limiter.requests",
    "stormwall_rate_limiter_requests_total",
    "counter",
    "{request}",
    "Rate limiter decisions: allowed at once, allowed after a wait, or "
    "rejected.",
    ("limiter", "result"),
)
LIMITER_WAIT = MetricSpec(
    "stormwall.rate_limiter.wait.duration",
    "stormwall_rate_limiter_wait_duration_seconds",
    "histogram",
    "s",
    "Time requests waited for a rate limiter.",
    ("limiter",),
)
BULKHEAD_IN_FLIGHT = MetricSpec(
    "stormwall.bulkhead.in_flight",
    "stormwall_bulkhead_in_flight",
    "gauge",
    "{call}",
    "Calls inside a bulkhead.",
    ("bulkhead",),
)
BULKHEAD_REJECTIONS = MetricSpec(
    "stormwall.bulkhead.rejections",
    "stormwall_bulkhead_rejections_total",
    "counter",
    "{call}",
    "Calls refused by a full bulkhead.",
    ("bulkhead",),
)
RETRY_BUDGET_EXHAUSTED = MetricSpec(
    "stormwall.retry_budget.exhausted",
    "stormwall_retry_budget_exhausted_total",
    "counter",
    "{retry}",
    "Retries denied by the retry budget.",
    ("executor",),
)
BACKEND_ERRORS = MetricSpec(
    "stormwall.backend.errors",
    "stormwall_backend_errors_total",
    "counter",
    "{error}",
    "Shared-state backend (e.g. Redis) failures: each round trip that "
    "failed, by error type.",
    ("component", "error_type"),
)
BACKEND_DECISIONS = MetricSpec(
    "stormwall.backend.decisions",
    "stormwall_backend_decisions_total",
    "counter",
    "{decision}",
    "Decisions taken by on_backend_error because the backend failed or is "
    "cooling down: fail_open admitted, fail_closed refused, raise raised.",
    ("component", "decision"),
)

METRICS: Final = (
    CALLS,
    CALL_DURATION,
    ATTEMPTS,
    ATTEMPT_DURATION,
    RETRIES,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    BREAKER_REJECTIONS,
    LIMITER_REQUESTS,
    LIMITER_WAIT,
    BULKHEAD_IN_FLIGHT,
    BULKHEAD_REJECTIONS,
    RETRY_BUDGET_EXHAUSTED,
    BACKEND_ERRORS,
    BACKEND_DECISIONS,
)

# State gauges read at collection time from the live components.
# Absent rather than NaN: a breaker below minimum_calls (or keeping no
# window) has no failure rate, a per-key limiter no global permit count.
BREAKER_FAILURE_RATE = MetricSpec(
    "stormwall.circuit_breaker.failure_rate",
    "stormwall_circuit_breaker_failure_rate",
    "gauge",
    "",
    "Failed calls / calls in the breaker's current window (absent below "
    "minimum_calls).",
    ("breaker",),
)
BREAKER_SLOW_CALL_RATE = MetricSpec(
    "stormwall.circuit_breaker.slow_call_rate",
    "stormwall_circuit_breaker_slow_call_rate",
    "gauge",
    "",
    "Slow calls / calls in the breaker's current window (absent below "
    "minimum_calls or without slow_call_duration).",
    ("breaker",),
)
BREAKER_FAILURE_RATE_THRESHOLD = MetricSpec(
    "stormwall.circuit_breaker.failure_rate_threshold",
    "stormwall_circuit_breaker_failure_rate_threshold",
    "gauge",
    "",
    "The failure rate at which the breaker opens (its "
    "failure_rate_threshold; absent without that rule).",
    ("breaker",),
)
BREAKER_SLOW_CALL_RATE_THRESHOLD = MetricSpec(
    "stormwall.circuit_breaker.slow_call_rate_threshold",
    "stormwall_circuit_breaker_slow_call_rate_threshold",
    "gauge",
    "",
    "The slow-call rate at which the breaker opens (its "
    "slow_call_rate_threshold; absent without that rule).",
    ("breaker",),
)
LIMITER_AVAILABLE = MetricSpec(
    "stormwall.rate_limiter.available_permits",
    "stormwall_rate_limiter_available_permits",
    "gauge",
    "{permit}",
    "Permits a global limiter (one state shared by every key) could grant "
    "now without a wait: a token bucket's tokens, a sliding window's room, "
    "a leaky bucket's 1 or 0 (per key too, under the key-label cap).",
    ("limiter",),
)
BULKHEAD_LIMIT = MetricSpec(
    "stormwall.bulkhead.limit",
    "stormwall_bulkhead_limit",
    "gauge",
    "{call}",
    "The bulkhead's cap on calls in flight.",
    ("bulkhead",),
)
RETRY_BUDGET_AVAILABLE = MetricSpec(
    "stormwall.retry_budget.available",
    "stormwall_retry_budget_available",
    "gauge",
    "{retry}",
    "Retries the executor's retry budget would allow now.",
    ("executor",),
)

GAUGES: Final = (
    BREAKER_FAILURE_RATE,
    BREAKER_SLOW_CALL_RATE,
    BREAKER_FAILURE_RATE_THRESHOLD,
    BREAKER_SLOW_CALL_RATE_THRESHOLD,
    LIMITER_AVAILABLE,
    BULKHEAD_LIMIT,
    RETRY_BUDGET_AVAILABLE,
)
"""The state gauges read at collection time (both paths)."""

ALL_METRICS: Final = (*METRICS, *GAUGES)
"""Every metric: the vocabulary's table and the state gauges."""

# Label values known in advance: their counter series are created at 0 when
# their executor, breaker or limiter is first seen, because Prometheus's
# rate()/increase() ignore the first sample of a new series, so a series born
# at 1 would hide the very first breaker trip.
CALL_OUTCOMES: Final = (
    "success",
    "failure",
    "rejected",
    "fallback",
    "cancelled",
)
ATTEMPT_OUTCOMES: Final = ("success", "failure", "timeout", "cancelled")
LIMITER_RESULTS: Final = ("allowed", "waited", "rejected")
BREAKER_STATES: Final = tuple(s.value for s in CircuitState)
BREAKER_TRANSITION_PAIRS: Final = (
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "closed"),
    ("half_open", "open"),
    ("closed", "forced_open"),
    ("open", "forced_open"),
    ("half_open", "forced_open"),
    ("forced_open", "closed"),
    ("closed", "disabled"),
    ("disabled", "closed"),
)


def error_type(error: BaseException | None) -> str:
    """
    The ``error_type`` label: the exception's class name.

    ``"result"`` for a result the retry policy rejected.
    """
    return "result" if error is None else type(error).__name__


OVERFLOW_KEY: Final = "__other__"


class KeyLabels:
    """
    The opt-in ``key`` label with a hard cap on distinct values.

    The first ``limit`` distinct keys keep their own value; every later one
    is reported as ``"__other__"``, so a user-id key cannot explode a
    metric's cardinality.
    """

    def __init__(self, limit: int) -> None:
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)  # type: ignore[redundant-expr]
            or limit < 0
        ):
            # A negative int is not shown: repr() of one past 4300 digits
            # raises ValueError, which would escape in place of this.
            got = "a negative int" if type(limit) is int else repr(limit)
            raise ConfigError(
                "key_label_limit", f"expected an int >= 0, got {got}"
            )
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether keys are labels at all (``limit > 0``)."""
        return self.limit > 0

    def named(self) -> list[str]:
        """The keys that are labels of their own, sorted."""
        with self._lock:
            return sorted(self._seen)

    def __call__(self, key: str | None) -> str:
        if key is None:
            return ""
        if key in self._seen:
            return key
        with self._lock:
            if key in self._seen:
                return key
            if len(self._seen) < self.limit:
                self._seen.add(key)
                return key
        return OVERFLOW_KEY


class Newest:
    """
    Keep only the newest snapshot of each gauge.

    Components report state snapshots (a breaker's state, a bulkhead's
    in-flight count) after releasing their lock, so two threads' events can
    reach a handler in either order. Each carries the component's
    ``sequence``; `accept` is true only for one newer than any seen for that
    name. A sequence of 0 (unknown) is always accepted.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def accept(self, name: str, sequence: int) -> bool:
        """Whether this snapshot is newer than the last one applied."""
        if not sequence:
            return True
        with self._lock:
            if sequence <= self._seen.get(name, 0):
                return False
            self._seen[name] = sequence
            return True


# -- traces -------------------------------------------------------------------

CALL_SPANS: Final[dict[int, Any]] = {}
"""
``call_id`` -> the call's span, kept by `TracingExporter` from CallStarted to
CallEnded, so a log line of a call's own event carries the call span even
while one of its attempt spans is current. Single dict operations are
atomic, and each entry is only touched by the thread or task running its
call (call ids are unique in the process).
"""


# -- the one event -> metric table of the pull path ---------------------------


class Family:
    """
    One metric's samples at collection time, as both pull paths expose it.

    Attributes:
        spec: The metric.
        values: labels (in ``spec.labels`` order) -> value (counters and
            gauges).
        cells: labels -> histogram cell (`stormwall.tally.cell_parts`).
    """

    __slots__ = ("cells", "spec", "values")

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.values: dict[tuple[str, ...], float] = {}
        self.cells: dict[tuple[str, ...], list[float]] = {}

    def add(self, labels: tuple[str, ...], value: float) -> None:
        """Add to a counter series (created at 0 when ``value`` is 0)."""
        self.values[labels] = self.values.get(labels, 0) + value

    def set(self, labels: tuple[str, ...], value: float) -> None:
        """Set a gauge series."""
        self.values[labels] = value

    def observe(self, labels: tuple[str, ...], cell: list[float]) -> None:
        """Merge a histogram cell into a series."""
        mine = self.cells.get(labels)
        if mine is None:
            self.cells[labels] = list(cell)
        else:
            for i, v in enumerate(cell):
                mine[i] += v


class Backend:
    """Backend failures, counted from `BackendError` (a rare event)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: dict[tuple[str, str], int] = {}
        self.decisions: dict[tuple[str, str], int] = {}

    def handle(self, event: Event) -> None:
        """Count one `BackendError` (the only type it is routed)."""
        assert isinstance(event, BackendError)  # noqa: S101 - routed so
        with self._lock:
            if not event.cooldown:  # a round trip failed (not a skipped one)
                key = (event.component, error_type(event.error))
                self.errors[key] = self.errors.get(key, 0) + 1
            key = (event.component, event.policy)
            self.decisions[key] = self.decisions.get(key, 0) + 1

    def read(self) -> tuple[dict[tuple[str, str], int], ...]:
        with self._lock:
            return dict(self.errors), dict(self.decisions)


def families(
    readings: Iterable[_tally_api.Reading], backend: Backend | None = None
) -> list[Family]:
    """
    Every metric of `ALL_METRICS` from ``readings`` (one per bus).

    The one table both pull exporters read: counters and histograms of
    several buses add up, a gauge keeps the last bus's value. Series whose
    labels are known in advance are created at 0 (see `CALL_OUTCOMES`).
    """
    out = {spec.otel_name: Family(spec) for spec in ALL_METRICS}
    calls, attempts = out[CALLS.otel_name], out[ATTEMPTS.otel_name]
    call_time = out[CALL_DURATION.otel_name]
    attempt_time = out[ATTEMPT_DURATION.otel_name]
    budget = out[RETRY_BUDGET_EXHAUSTED.otel_name]
    for reading in readings:
        for executor, available in reading.executors:
            for outcome in CALL_OUTCOMES:
                calls.add((executor, outcome), 0)
            for outcome in ATTEMPT_OUTCOMES:
                attempts.add((executor, outcome), 0)
            budget.add((executor,), 0)
            if available is not None:
                out[RETRY_BUDGET_AVAILABLE.otel_name].set(
                    (executor,), available
                )
        tally = reading.tally
        for labels, cell in tally.calls.items():
            calls.add(labels, _count(cell))
            call_time.observe(labels, cell)
        for labels, cell in tally.attempts.items():
            attempts.add(labels, _count(cell))
            attempt_time.observe(labels, cell)
        for labels, n in tally.retries.items():
            out[RETRIES.otel_name].add(labels, n)
        for executor, n in tally.exhausted.items():
            budget.add((executor,), n)
        _breakers(out, reading.breakers)
        _limiters(out, reading.limiters)
        for bulkhead in reading.bulkheads:
            name = (bulkhead.name,)
            if bulkhead.in_flight is not None:
                out[BULKHEAD_IN_FLIGHT.otel_name].set(name, bulkhead.in_flight)
            if bulkhead.limit is not None:
                out[BULKHEAD_LIMIT.otel_name].set(name, bulkhead.limit)
            out[BULKHEAD_REJECTIONS.otel_name].add(name, bulkhead.rejected)
    if backend is not None:
        errors, decisions = backend.read()
        for labels, n in errors.items():
            out[BACKEND_ERRORS.otel_name].add(labels, n)
        for labels, n in decisions.items():
            out[BACKEND_DECISIONS.otel_name].add(labels, n)
    return list(out.values())


def _count(cell: list[float]) -> int:
    return int(sum(cell[: len(DURATION_BUCKETS) + 1]))


def _breakers(
    out: dict[str, Family], breakers: Iterable[_tally_api.BreakerReading]
) -> None:
    for breaker in breakers:
        name = breaker.name
        if breaker.state is not None:  # None: retired (garbage collected)
            for state in BREAKER_STATES:
                out[BREAKER_STATE.otel_name].set(
                    (name, state), float(state == breaker.state)
                )
        moves = out[BREAKER_TRANSITIONS.otel_name]
        for pair in BREAKER_TRANSITION_PAIRS:
            moves.add((name, *pair), 0)
        for pair, n in breaker.transitions.items():
            moves.add((name, *pair), n)
        out[BREAKER_REJECTIONS.otel_name].add((name,), breaker.rejected)
        # Absent, never NaN: a rate below minimum_calls, a rule not set.
        for spec, value in (
            (BREAKER_FAILURE_RATE, breaker.failure_rate),
            (BREAKER_SLOW_CALL_RATE, breaker.slow_call_rate),
            (BREAKER_FAILURE_RATE_THRESHOLD, breaker.failure_rate_threshold),
            (
                BREAKER_SLOW_CALL_RATE_THRESHOLD,
                breaker.slow_call_rate_threshold,
            ),
        ):
            if value is not None:
                out[spec.otel_name].set((name,), value)


def _limiters(
    out: dict[str, Family], limiters: Iterable[_tally_api.LimiterReading]
) -> None:
    requests = out[LIMITER_REQUESTS.otel_name]
    for limiter in limiters:
        name = limiter.name
        requests.add((name, "allowed"), limiter.allowed)
        requests.add((name, "waited"), limiter.waited)
        requests.add((name, "rejected"), limiter.rejected)
        if limiter.waits is not None:
            out[LIMITER_WAIT.otel_name].observe((name,), limiter.waits)
        if limiter.available is not None:
            out[LIMITER_AVAILABLE.otel_name].set((name,), limiter.available)
