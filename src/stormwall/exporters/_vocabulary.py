"""
One vocabulary for every exporter: metric names, labels, buckets, log levels.

The OpenTelemetry, Prometheus and log exporters all map events through this
module and nothing else, so a metric is called the same whether it travels
through ``prometheus_client`` or through the OTel SDK and its Prometheus
exporter (one dashboard serves both), and a log line is named like its event
in structlog and stdlib logging alike. Standard library only.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .._breaker import CircuitState
from .._errors import ConfigError


if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._events import Event


# -- metrics ------------------------------------------------------------------

# Seconds-shaped buckets, 5 ms to 10 s (OTel's defaults are ms-shaped: its
# first bucket, 5, would hold every call).
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


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

# Label values known in advance: their counter series are created at 0 when
# their executor, breaker or limiter is first seen, because Prometheus's
# rate()/increase() ignore the first sample of a new series, so a series born
# at 1 would hide the very first breaker trip.
CALL_OUTCOMES: Final = ("success", "failure", "rejected", "fallback")
ATTEMPT_OUTCOMES: Final = ("success", "failure", "timeout")
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
            raise ConfigError(
                "key_label_limit", f"expected an int >= 0, got {limit!r}"
            )
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether keys are labels at all (``limit > 0``)."""
        return self.limit > 0

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


# -- logs ---------------------------------------------------------------------

# The level of each log line, by "event name" or "event name:qualifier", where
# the qualifier is the outcome (calls, attempts) or the state entered
# (breakers). A qualified entry wins over the bare name; None means "no line".
DEFAULT_LEVELS: Final[Mapping[str, int | None]] = {
    "stormwall.call.started": None,
    "stormwall.call.ended": logging.DEBUG,
    "stormwall.call.ended:failure": logging.WARNING,
    "stormwall.call.ended:rejected": logging.WARNING,
    "stormwall.call.ended:fallback": logging.WARNING,
    "stormwall.call.ended:cancelled": logging.INFO,
    "stormwall.attempt.started": None,
    "stormwall.attempt.ended": logging.INFO,
    "stormwall.attempt.ended:success": logging.DEBUG,
    "stormwall.retry.scheduled": logging.WARNING,
    "stormwall.retry_budget.exhausted": logging.WARNING,
    "stormwall.circuit_breaker.state_changed": logging.WARNING,
    "stormwall.circuit_breaker.state_changed:open": logging.ERROR,
    "stormwall.circuit_breaker.state_changed:forced_open": logging.ERROR,
    "stormwall.circuit_breaker.state_changed:half_open": logging.WARNING,
    "stormwall.circuit_breaker.state_changed:closed": logging.INFO,
    "stormwall.circuit_breaker.rejected": logging.INFO,
    "stormwall.rate_limiter.allowed": None,
    "stormwall.rate_limiter.waited": logging.DEBUG,
    "stormwall.rate_limiter.rejected": logging.WARNING,
    "stormwall.bulkhead.acquired": None,
    "stormwall.bulkhead.released": None,
    "stormwall.bulkhead.rejected": logging.WARNING,
    "stormwall.fallback.used": logging.WARNING,
    "stormwall.executor.observed": None,
    "stormwall.backend.error": logging.ERROR,
    # Decided without asking the backend (it failed < retry_interval ago):
    # one line per call would flood the logs during an outage.
    "stormwall.backend.error:cooldown": logging.DEBUG,
}

_LEVEL_NAMES: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def resolve_levels(
    levels: Mapping[str, int | str | None] | None,
) -> dict[str, int | None]:
    """
    The defaults overridden by ``levels`` (ints or names like ``"info"``).

    Raises:
        ConfigError: ``levels`` is not a mapping or a level is unknown.
    """
    merged: dict[str, int | None] = dict(DEFAULT_LEVELS)
    if levels is None:
        return merged
    if not hasattr(levels, "items"):
        raise ConfigError(
            "levels", f"expected a mapping, got {type(levels).__name__}"
        )
    for name, level in levels.items():
        if not isinstance(name, str) or not name.startswith(  # type: ignore[redundant-expr]
            "stormwall."
        ):
            raise ConfigError(
                "levels", f"{name!r} is not a stormwall event name"
            )
        if level is None or (
            isinstance(level, int) and not isinstance(level, bool)
        ):
            merged[name] = level
        elif isinstance(level, str) and level.lower() in _LEVEL_NAMES:
            merged[name] = _LEVEL_NAMES[level.lower()]
        else:
            raise ConfigError(
                "levels", f"{level!r} is not a logging level (for {name!r})"
            )
    return merged


def qualifier(event: Event) -> str | None:
    """
    What refines an event's level: its outcome or the state entered.

    ``"cooldown"`` for a backend decision taken without a round trip.
    """
    if getattr(event, "cooldown", False):
        return "cooldown"
    outcome = getattr(event, "outcome", None)
    if outcome is not None:
        return str(outcome)
    to_state = getattr(event, "to_state", None)
    return None if to_state is None else str(to_state)


def level_of(event: Event, levels: Mapping[str, int | None]) -> int | None:
    """The level to log ``event`` at, or ``None`` for no line."""
    q = qualifier(event)
    if q is not None:
        qualified = f"{event.name}:{q}"
        if qualified in levels:
            return levels[qualified]
    return levels.get(event.name)


# Fields copied onto every log line, when present on the event.
_LOG_FIELDS: Final = (
    "executor",
    "key",
    "call_id",
    "attempt",
    "outcome",
    "attempts",
    "duration",
    "delay",
    "breaker",
    "from_state",
    "to_state",
    "reason",
    "state",
    "retry_after",
    "limiter",
    "waited",
    "bulkhead",
    "in_flight",
    "component",
    "backend",
    "operation",
    "policy",
    "cooldown",
)


def log_fields(event: Event) -> dict[str, object]:
    """
    The structured fields of ``event``'s log line.

    Never the call's arguments; the error as its type only (messages may
    carry personal data).
    """
    fields: dict[str, object] = {}
    for name in _LOG_FIELDS:
        value = getattr(event, name, None)
        if value is not None:
            fields[name] = value
    if hasattr(event, "error"):
        error = event.error
        if error is not None:
            fields["error_type"] = type(error).__name__
    return fields


def trace_ids() -> dict[str, str]:
    """
    ``trace_id`` and ``span_id`` (hex) of the active OpenTelemetry span.

    Empty when OpenTelemetry is not installed or no span is active.
    """
    trace = _otel_trace()
    if trace is None:
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }


_otel_module: Any = None
_otel_checked = False


def _otel_trace() -> Any:
    global _otel_module, _otel_checked  # noqa: PLW0603 - a lazy import cache
    if not _otel_checked:
        try:
            from opentelemetry import trace
        except ImportError:
            trace = None  # type: ignore[assignment]
        _otel_module = trace
        _otel_checked = True
    return _otel_module
