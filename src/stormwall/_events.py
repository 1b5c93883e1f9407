"""
Events: the facts the pipeline reports, one frozen dataclass each.

Every event has a stable dotted `name`, the clock `time` it happened at, and
the `executor` that reported it; inside a call also its `key`, `call_id` and
`attempt` (``None`` outside a call, e.g. for ``breaker.force_open()``).
Outcomes and states are plain lowercase strings (or ``str`` enums), so
exporters and tests compare them directly.

Exporters map these to OpenTelemetry, Prometheus and logs; nothing else
does. Events are only built when somebody subscribed to their type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


__all__ = [
    "AttemptEnded",
    "AttemptStarted",
    "BackendError",
    "BreakerRejected",
    "BreakerStateChanged",
    "BulkheadAcquired",
    "BulkheadRejected",
    "BulkheadReleased",
    "CallEnded",
    "CallStarted",
    "Event",
    "ExecutorObserved",
    "FallbackUsed",
    "LimiterAllowed",
    "LimiterRejected",
    "LimiterWaited",
    "RetryBudgetExhausted",
    "RetryScheduled",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """
    The base of every event.

    Attributes:
        time: The clock's time when it happened.
        executor: The reporting executor's name (``None`` when a component
            reported on its own, outside any executor).
        key: The call's key, inside a call.
        call_id: A process-unique id of the logical call, inside a call.
        attempt: The attempt number (1-based), inside an attempt.
    """

    name: ClassVar[str] = "stormwall.event"

    time: float
    executor: str | None = None
    key: str | None = None
    call_id: int | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorObserved(Event):
    """
    An executor ran its first call since a subscriber joined its bus.

    Lets exporters create every series they know in advance (a breaker's
    state gauge, zeroed counters) before anything happens to them.

    Attributes:
        breaker: The breaker's name, or ``None``.
        breaker_state: The breaker's state now, or ``None``.
        limiters: The names of the limiters (a composite's tiers each).
        bulkhead: The bulkhead's name, or ``None``.
    """

    name: ClassVar[str] = "stormwall.executor.observed"

    breaker: str | None = None
    breaker_state: str | None = None
    limiters: tuple[str, ...] = ()
    bulkhead: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    """A logical call began (before any admission check)."""

    name: ClassVar[str] = "stormwall.call.started"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    """
    A logical call ended.

    Attributes:
        outcome: ``"success"``; ``"failure"`` (the function was reached and
            the call failed); ``"rejected"`` (refused before the function ran
            even once); ``"fallback"`` (the fallback supplied the value).
        attempts: How many times the function was called.
        duration: Seconds from `CallStarted`.
        error: The exception the call raised (or that the fallback
            replaced), else ``None``.
    """

    name: ClassVar[str] = "stormwall.call.ended"

    outcome: str
    attempts: int
    duration: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted(Event):
    """The function is about to be called (admission passed)."""

    name: ClassVar[str] = "stormwall.attempt.started"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptEnded(Event):
    """
    One call of the function returned or raised.

    Attributes:
        outcome: ``"success"``, ``"failure"`` or ``"timeout"``.
            A result rejected by ``retry_on_result`` is a ``"failure"``
            with ``error=None``.
        duration: Seconds the function ran.
        error: The exception, else ``None``.
    """

    name: ClassVar[str] = "stormwall.attempt.ended"

    outcome: str
    duration: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """
    A retry was decided; the back-off sleep follows.

    Attributes:
        delay: Seconds of back-off before the next attempt.
        error: The exception that is retried (``None`` for a retried result).
    """

    name: ClassVar[str] = "stormwall.retry.scheduled"

    delay: float
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetExhausted(Event):
    """
    The retry budget denied a retry; the call fails with `error`.

    Attributes:
        error: The exception that would have been retried.
    """

    name: ClassVar[str] = "stormwall.retry_budget.exhausted"

    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerStateChanged(Event):
    """
    A circuit breaker changed state (forced transitions included).

    Attributes:
        breaker: The breaker's name.
        from_state: The state left (a `CircuitState` value).
        to_state: The state entered.
        reason: Why, e.g. ``"failure_threshold"``, ``"failure_rate"``,
            ``"slow_call_rate"``, ``"recovery_timeout"``,
            ``"probe_succeeded"``, ``"probe_failed"``, ``"forced_open"``,
            ``"disabled"``, ``"reset"``.
        sequence: The breaker's change counter at this transition. Events
            are delivered after the breaker's lock is released, so two
            threads' transitions can reach a handler in either order: keep
            the state of the highest sequence (the exporters do).
    """

    name: ClassVar[str] = "stormwall.circuit_breaker.state_changed"

    breaker: str
    from_state: str
    to_state: str
    reason: str
    sequence: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerRejected(Event):
    """
    The breaker short-circuited a call.

    Attributes:
        breaker: The breaker's name.
        state: Its state (``"open"``, ``"forced_open"`` or ``"half_open"``
            when every probe slot is taken).
        retry_after: Seconds until a probe may pass, or ``None``.
    """

    name: ClassVar[str] = "stormwall.circuit_breaker.rejected"

    breaker: str
    state: str
    retry_after: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterAllowed(Event):
    """
    A limiter admitted a request at once.

    Attributes:
        limiter: The limiter's name.
        cost: The permits taken.
    """

    name: ClassVar[str] = "stormwall.rate_limiter.allowed"

    limiter: str
    cost: float = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterWaited(Event):
    """
    A limiter admitted a request after making it wait.

    Attributes:
        limiter: The limiter's name.
        waited: Seconds waited.
        cost: The permits taken.
    """

    name: ClassVar[str] = "stormwall.rate_limiter.waited"

    limiter: str
    waited: float
    cost: float = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LimiterRejected(Event):
    """
    A limiter refused a request (nothing consumed).

    Attributes:
        limiter: The limiter's name.
        retry_after: Exact seconds until it would be admitted.
        cost: The permits asked for.
    """

    name: ClassVar[str] = "stormwall.rate_limiter.rejected"

    limiter: str
    retry_after: float
    cost: float = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadAcquired(Event):
    """
    A call entered the bulkhead.

    Attributes:
        bulkhead: The bulkhead's name.
        in_flight: Calls inside after this one entered.
        waited: Seconds it queued for its slot.
        sequence: Orders this snapshot of ``in_flight`` among the
            bulkhead's acquisitions and releases: events can reach a handler
            out of order across threads, so a gauge keeps the highest.
    """

    name: ClassVar[str] = "stormwall.bulkhead.acquired"

    bulkhead: str
    in_flight: int
    waited: float = 0.0
    sequence: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadReleased(Event):
    """
    A call left the bulkhead.

    Attributes:
        bulkhead: The bulkhead's name.
        in_flight: Calls inside after this one left.
        sequence: As for `BulkheadAcquired`.
    """

    name: ClassVar[str] = "stormwall.bulkhead.released"

    bulkhead: str
    in_flight: int
    sequence: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadRejected(Event):
    """
    The bulkhead had no slot within its ``max_wait``.

    Attributes:
        bulkhead: The bulkhead's name.
        in_flight: Calls inside when this one was refused.
    """

    name: ClassVar[str] = "stormwall.bulkhead.rejected"

    bulkhead: str
    in_flight: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(Event):
    """
    The fallback supplied the call's value.

    Attributes:
        error: The final exception the fallback replaced.
    """

    name: ClassVar[str] = "stormwall.fallback.used"

    error: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendError(Event):
    """
    A shared-state backend (e.g. Redis) failed, and a policy decided.

    Attributes:
        component: The limiter's or breaker's name.
        backend: The backend, e.g. ``"redis"``.
        operation: What was attempted, e.g. ``"acquire"``, ``"admit"``.
        policy: What was done about it: ``"fail_open"`` (admitted),
            ``"fail_closed"`` (refused) or ``"raise"``.
        error: The backend's exception.
    """

    name: ClassVar[str] = "stormwall.backend.error"

    component: str
    backend: str
    operation: str
    policy: str
    error: BaseException
