"""
`TracingExporter`: spans per call and attempt (see `stormwall.exporters.otel`).

Re-exported by the public module `stormwall.exporters.otel`, whose docstring
lists every span, attribute and span event.
"""

from __future__ import annotations

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
    CallEnded,
    CallStarted,
    Event,
    FallbackUsed,
    LimiterRejected,
    LimiterWaited,
    RetryBudgetExhausted,
    RetryScheduled,
)

from . import _vocabulary as vocab
from ._attach import Attachments
from ._otel_guard import SpanKind, Status, StatusCode, otel_context, trace


if TYPE_CHECKING:
    from collections.abc import Callable
    from contextvars import Token
    from typing import TypeAlias

    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from stormwall import Subscription

    # One traced call: its span, the context that makes it current and the
    # token to detach it, and the name of its attempts' spans.
    _Call: TypeAlias = tuple[Span, Context, Token[Context], str]
    # One open attempt: its span and the token to detach it.
    _Attempt: TypeAlias = tuple[Span, Token[Context]]


__all__ = ["TracingExporter"]


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

# What every call and attempt uses, looked up once (not per span).
_INTERNAL: Final = SpanKind.INTERNAL
_in_context: Final = trace.set_span_in_context
_attach: Final = otel_context.attach
_detach: Final = otel_context.detach
_CALL_SPANS: Final = vocab.CALL_SPANS


def _exception_type(error: BaseException) -> str:
    """``exception.type`` as the OTel SDK's ``record_exception`` writes it."""
    cls = type(error)
    module = cls.__module__
    if module and module != "builtins":
        return f"{module}.{cls.__qualname__}"
    return cls.__qualname__


# Executors' names are few, but not a closed set: what is kept per name is
# bounded.
_CACHE_MAX: Final = 256


class TracingExporter:
    """
    Turn calls and attempts into OpenTelemetry spans.

    One INTERNAL span per call, named after the executor and a child of the
    span current when the call began; one child span per attempt, current
    while the function runs; retries, limiter waits, rejections and breaker
    transitions as span events on the call span (every name is listed in
    `stormwall.exporters.otel`).

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
        self._tracer = trace.get_tracer(
            vocab.SCOPE, __version__, tracer_provider
        )
        self._record_key = record_key
        self._record_messages = record_exception_messages
        # call_id -> its call, and its open attempt (plain tuples: cheaper
        # to build and read than an object). Single dict operations (get,
        # set, pop) are atomic, and each call_id is only ever touched by
        # the thread or task running that call, so no lock is needed.
        self._calls: dict[int, _Call] = {}
        self._attempts: dict[int, _Attempt] = {}
        # Executor -> its call spans' name and attributes (the SDK copies
        # them) and its attempt spans' name: built once, not per span.
        self._executors: dict[
            str | None, tuple[str, dict[str, AttributeValue], str]
        ] = {}
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

    def _executor(
        self, executor: str | None
    ) -> tuple[str, dict[str, AttributeValue], str]:
        """What the spans of ``executor``'s calls are named and start with."""
        name = executor or "stormwall"
        attributes: dict[str, AttributeValue] = {_EXECUTOR: name}
        known = (name, attributes, f"{name} attempt")
        if len(self._executors) < _CACHE_MAX:
            self._executors[executor] = known
        return known

    def _call_started(self, event: CallStarted) -> None:
        call_id = event.call_id
        if call_id is None:
            return
        known = self._executors.get(event.executor)
        if known is None:
            known = self._executor(event.executor)
        name, attributes, attempt_name = known
        # At the start, where a sampler can see them.
        if self._record_key and event.key is not None:
            attributes = {**attributes, _KEY: event.key}
        span = self._tracer.start_span(
            name, kind=_INTERNAL, attributes=attributes
        )
        context = _in_context(span)
        self._calls[call_id] = (span, context, _attach(context), attempt_name)
        # So the log exporters find the call span for a call's events that
        # happen while an attempt span is current (a bulkhead release).
        _CALL_SPANS[call_id] = span

    def _attempt_started(self, event: AttemptStarted) -> None:
        call_id: int = event.call_id  # type: ignore[assignment]
        call = self._calls.get(call_id)
        if call is None:
            return
        if call_id in self._attempts:  # an AttemptEnded went missing
            self._end_attempt(call_id, "cancelled", None)
        span = self._tracer.start_span(
            call[3], context=call[1], kind=_INTERNAL
        )
        # Set after the start: an attempt span is sampled as its call span
        # is (a child), and the SDK charges a mapping given at the start
        # about twice what it charges one `set_attribute` (1.45: the
        # sampler's result and a recursive clean of the mapping).
        span.set_attribute(_ATTEMPT, event.attempt or 0)
        self._attempts[call_id] = (span, _attach(_in_context(span)))

    def _attempt_ended(self, event: AttemptEnded) -> None:
        call_id: int = event.call_id  # type: ignore[assignment]
        outcome = event.outcome
        if outcome != "success":
            self._end_attempt(call_id, outcome, event.error)
            return
        # `_end_attempt` of a success, inline: the hot path.
        attempt = self._attempts.pop(call_id, None)
        if attempt is None:
            return
        span, token = attempt
        _detach(token)
        span.set_attribute(_OUTCOME, outcome)
        span.end()

    def _end_attempt(
        self, call_id: int, outcome: str, error: BaseException | None
    ) -> None:
        attempt = self._attempts.pop(call_id, None)
        if attempt is None:
            return
        span, token = attempt
        _detach(token)
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
        call_id: int = event.call_id  # type: ignore[assignment]
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        _CALL_SPANS.pop(call_id, None)
        if call_id in self._attempts:
            # Detach in LIFO order: the attempt's context sits on the call's.
            self._end_attempt(call_id, "cancelled", None)
        _detach(call[2])
        span = call[0]
        outcome = event.outcome
        # One `set_attribute` per attribute: cheaper in the SDK than a
        # mapping (see `_attempt_started`).
        span.set_attribute(_ATTEMPTS, event.attempts)
        span.set_attribute(_OUTCOME, outcome)
        if outcome in _FAILED_CALL:
            span.set_attribute(_ERROR_TYPE, vocab.error_type(event.error))
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # -- span events ----------------------------------------------------------

    def _add_event(
        self, event: Event, attributes: dict[str, AttributeValue]
    ) -> None:
        call = self._calls.get(event.call_id)  # type: ignore[arg-type]
        if call is not None:
            call[0].add_event(event.name, attributes)

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
        span = call[0] if call is not None else trace.get_current_span()
        if span.is_recording():
            span.add_event(event.name, attributes)
