"""
What the sync and async executors share: configuration, decisions, events.

The pipeline, per attempt, in a fixed order (docs/internals.md)::

    breaker gate  -> CircuitOpenError (fail fast: no permit used, no retry)
    rate limiter  -> wait up to limiter_timeout, else RateLimitedError
    bulkhead      -> wait up to its max_wait, else BulkheadFullError
    call fn       (async: per-attempt timeout -> AttemptTimeoutError)
    record        -> breaker (its classifier decides), retry budget
    retry?        -> retryable, attempts left, deadline, budget, breaker
                     still closed -> RetryScheduled, back-off sleep, loop
    fallback      (optional) on the final exception

Why this order: the breaker goes first because an open circuit must cost
nothing (no token spent on a call that cannot happen); the limiter before the
bulkhead because waiting for a token while holding a concurrency slot would
waste the slot; retry outermost so every retry passes every gate again.

Everything here is decision and bookkeeping; the two shells (`_sync.py`,
`_async.py`) only call, wait and sleep, so both report identical events.
"""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from . import _validate
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead
from ._bus import EventBus, default_bus
from ._clock import DEFAULT_CLOCK, Clock, one_clock
from ._component import CallContext, Component, check_bus, check_clock
from ._errors import AttemptTimeoutError, ConfigError
from ._events import (
    AttemptEnded,
    AttemptStarted,
    CallEnded,
    CallStarted,
    ExecutorObserved,
    FallbackUsed,
    RetryBudgetExhausted,
    RetryScheduled,
    builder,
)
from ._limiters import Limiter
from ._retry import RetryPolicy


if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self


logger = logging.getLogger("stormwall")

# Process-unique call ids; `next()` on itertools.count is atomic under the GIL.
_call_ids = itertools.count(1)

C = TypeVar("C")

# The events of every observed call, built by function rather than by class
# call (no keyword dict per event: see `builder`).
_call_started = builder(CallStarted)
_attempt_started = builder(AttemptStarted)
_attempt_ended = builder(AttemptEnded)
_call_ended = builder(CallEnded)


class ExecutorBase:
    """
    Configuration and decisions shared by both executors.

    See `ResilientExecutor` for the parameters.
    """

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_budget",
        "_bulkhead",
        "_bus",
        "_buses",
        "_clock",
        "_dated",
        "_deadline",
        "_fallback",
        "_limiter",
        "_limiter_timeout",
        "_max_attempts",
        "_name",
        "_observed_generation",
        "_policy",
        "_refunds",
        "_result_test",
        "_timed",
        "_timeout",
    )

    def __init__(
        self,
        name: str = "default",
        *,
        limiter: Limiter | None = None,
        retry_policy: RetryPolicy | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        timeout: float | None = None,
        limiter_timeout: float | None = None,
        fallback: Callable[[BaseException], Any] | None = None,
        clock: Clock | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._name = _validate.name("name", name, "default")
        self._limiter: Limiter | None = _optional(
            "limiter", limiter, Limiter, "a Limiter"
        )
        if self._limiter is not None:
            _check_grants_one(self._limiter)
        self._policy: RetryPolicy | None = _optional(
            "retry_policy", retry_policy, RetryPolicy, "a RetryPolicy"
        )
        self._breaker: CircuitBreaker | None = _optional(
            "circuit_breaker",
            circuit_breaker,
            CircuitBreaker,
            "a CircuitBreaker",
        )
        self._bulkhead: Bulkhead | None = _optional(
            "bulkhead", bulkhead, Bulkhead, "a Bulkhead"
        )
        self._timeout = self._check_timeout(timeout)
        self._limiter_timeout = _validate.optional_non_negative(
            "limiter_timeout", limiter_timeout, seconds=True
        )
        if fallback is not None and not callable(fallback):
            raise ConfigError(
                "fallback",
                f"expected a callable, got {type(fallback).__name__}",
            )
        self._fallback = fallback
        self._bus = check_bus("bus", bus) or default_bus
        self._budget = None if self._policy is None else self._policy.budget
        self._max_attempts = (
            1 if self._policy is None else self._policy.max_attempts
        )
        # What a call without a listener needs the clock for (each read is a
        # call): its start only for a budget or a deadline, its attempts'
        # durations only for a breaker with a slow-call rule.
        self._deadline: float | None = (
            None if self._policy is None else self._policy.deadline
        )
        self._dated = self._budget is not None or self._deadline is not None
        self._timed = self._breaker is not None and self._breaker._timed
        # The result check, or None when no policy judges results (the
        # policy is frozen): the success path then makes no call for it.
        self._result_test = (
            None
            if self._policy is None or self._policy.retry_on_result is None
            else self._policy._retries_result
        )
        # A permit taken for an attempt the bulkhead then refuses is given
        # back; the limiter says whether it can take one back.
        self._refunds = (
            self._bulkhead is not None
            and self._limiter is not None
            and self._limiter._refunds
        )
        self._check_async_only()
        self._clock = self._bind_components(check_clock("clock", clock))
        buses = [self._bus]
        for _, component in self._components():
            buses.extend(b for b in component._buses() if b not in buses)
        self._buses = tuple(buses)
        self._observed_generation = -1
        _check_names(self)

    def _check_timeout(self, timeout: object) -> float | None:
        return _validate.optional_positive("timeout", timeout, seconds=True)

    def _check_async_only(self) -> None:
        """Refuse components this executor cannot drive (the sync one)."""

    def _components(self) -> list[tuple[str, Component]]:
        found: list[tuple[str, Component]] = []
        if self._breaker is not None:
            found.append(("circuit_breaker", self._breaker))
        if self._limiter is not None:
            found.append(("limiter", self._limiter))
        if self._bulkhead is not None:
            found.append(("bulkhead", self._bulkhead))
        if self._budget is not None:
            found.append(("retry_policy", self._budget))
        return found

    def _bind_components(self, clock: Clock | None) -> Clock:
        """
        Pick the one clock of this pipeline and wire every component to it.

        The executor's own ``clock=`` wins; else the one clock its components
        were given; two different clocks are a `ConfigError`.
        """
        components = self._components()
        clock = (
            one_clock(
                ("clock", clock),
                *((param, c._explicit_clock) for param, c in components),
                hint="one executor needs one clock",
            )
            or DEFAULT_CLOCK
        )
        for param, component in components:
            component._bind(self._name, clock, self._bus, param)
        return clock

    # -- public ---------------------------------------------------------------

    @property
    def name(self) -> str:
        """The executor's name (the ``executor`` of its events and metrics)."""
        return self._name

    @property
    def clock(self) -> Clock:
        """The clock the whole pipeline keeps time with."""
        return self._clock

    @property
    def bus(self) -> EventBus:
        """The bus the executor reports on."""
        return self._bus

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The circuit breaker, if any."""
        return self._breaker

    @property
    def limiter(self) -> Limiter | None:
        """The rate limiter, if any."""
        return self._limiter

    @property
    def bulkhead(self) -> Bulkhead | None:
        """The bulkhead, if any."""
        return self._bulkhead

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The retry policy, if any."""
        return self._policy

    def _without_retries(self) -> Self:
        """
        This pipeline without its retry policy.

        Integrations use it for calls that must not be repeated (e.g. a
        POST). Itself when it has no retry policy.
        """
        return self if self._policy is None else self._with_policy(None)

    def _with_policy(self, policy: RetryPolicy | None) -> Self:
        """
        A twin of this pipeline with another retry policy.

        The same name, components (so the same breaker state, limiter
        tokens and budget), clock, bus, timeouts and fallback.
        """
        return type(self)(
            self._name,
            limiter=self._limiter,
            retry_policy=policy,
            circuit_breaker=self._breaker,
            bulkhead=self._bulkhead,
            timeout=self._timeout,
            limiter_timeout=self._limiter_timeout,
            fallback=self._fallback,
            clock=self._clock,
            bus=self._bus,
        )

    def __repr__(self) -> str:
        parts = [repr(self._name)]
        for param, component in self._components():
            parts.append(f"{param}={component!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- call bookkeeping -----------------------------------------------------

    def _open(self, key: str) -> CallContext | None:
        """
        Start a call's telemetry: a context when anybody listens, else None.
        """
        if type(key) is not str:
            _validate.key(key)
        for bus in self._buses:
            if bus._subs:
                break
        else:
            return None
        ctx = CallContext(self._name, key, next(_call_ids), self._bus)
        bus = self._bus
        if bus._subs:
            if bus.generation != self._observed_generation:
                self._observed_generation = bus.generation
                self._announce(ctx)
            if bus.wants(CallStarted):
                bus.emit(
                    _call_started(
                        time=self._clock.now(),
                        executor=self._name,
                        key=key,
                        call_id=ctx.call_id,
                    )
                )
        return ctx

    def _announce(self, ctx: CallContext) -> None:
        if not self._bus.wants(ExecutorObserved):
            return
        breaker = self._breaker
        self._bus.emit(
            ExecutorObserved(
                time=self._clock.now(),
                executor=self._name,
                key=ctx.key,
                call_id=ctx.call_id,
                breaker=None if breaker is None else breaker.name,
                breaker_state=None if breaker is None else breaker.state.value,
                limiters=()
                if self._limiter is None
                else self._limiter._names(),
                bulkhead=None
                if self._bulkhead is None
                else self._bulkhead.name,
            )
        )

    def _attempt_started(
        self, ctx: CallContext, attempt: int, now: float
    ) -> None:
        ctx.attempt = attempt
        ctx.attempt_at = now
        if self._bus.wants(AttemptStarted):
            self._bus.emit(
                _attempt_started(
                    time=now,
                    executor=self._name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=attempt,
                )
            )

    def _attempt_ended(
        self,
        ctx: CallContext,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        ctx.attempt_at = None
        if self._bus.wants(AttemptEnded):
            self._bus.emit(
                _attempt_ended(
                    time=self._clock.now(),
                    executor=self._name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=ctx.attempt,
                    outcome=outcome,
                    duration=duration,
                    error=error,
                )
            )

    def _call_ended(
        self,
        ctx: CallContext,
        outcome: str,
        attempts: int,
        started: float,
        error: BaseException | None,
    ) -> None:
        ctx.ended = True
        if self._bus.wants(CallEnded):
            now = self._clock.now()
            self._bus.emit(
                _call_ended(
                    time=now,
                    executor=self._name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    outcome=outcome,
                    attempts=attempts,
                    duration=now - started,
                    error=error,
                )
            )

    def _abandon(
        self,
        ctx: CallContext,
        error: BaseException,
        attempts: int,
        started: float,
    ) -> None:
        """
        Close what an escaping exception left open: the attempt, the call.

        Every CallStarted gets one CallEnded and every AttemptStarted one
        AttemptEnded, whatever escapes (cancellation, an interrupt, a raising
        user hook), so exporters never leak an open span.
        """
        if ctx.attempt_at is not None:
            self._attempt_ended(
                ctx,
                _outcome(error),
                self._clock.now() - ctx.attempt_at,
                error,
            )
        if not ctx.ended:
            self._call_ended(
                ctx, failure_outcome(error, attempts), attempts, started, error
            )

    # -- decisions ------------------------------------------------------------

    def _retry_wanted(self, attempt: int, error: BaseException | None) -> bool:
        """
        Whether the policy would retry this failure.

        That is: attempts are left, and the error is retryable (or the result
        was rejected). The shells then ask an open breaker before
        `_retry_delay`: retrying into it is pointless, and asking reports the
        refusal (BreakerRejected, counted) like any other; its
        `CircuitOpenError` ends the call, chained to the failure.
        """
        policy = self._policy
        if policy is None or attempt >= self._max_attempts:
            return False
        return error is None or policy._retries(error)

    def _retry_delay(
        self,
        attempt: int,
        error: BaseException | None,
        result: object,
        started: float,
        previous: float | None,
        ctx: CallContext | None,
    ) -> float | None:
        """
        Schedule a wanted retry: back-off, deadline, budget.

        Returns:
            The back-off delay, or ``None`` to give up with this failure.
        """
        policy = self._policy
        assert policy is not None  # noqa: S101 - _retry_wanted checked it
        delay: float = policy._backoff(
            attempt, result if error is None else error, previous
        )
        now = self._clock.now()
        deadline = policy.deadline
        if deadline is not None and now + delay >= started + deadline:
            return None
        budget = self._budget
        if budget is not None and not budget._withdraw(now):
            if ctx is not None and self._bus.wants(RetryBudgetExhausted):
                self._bus.emit(
                    RetryBudgetExhausted(
                        time=now,
                        executor=self._name,
                        key=ctx.key,
                        call_id=ctx.call_id,
                        attempt=attempt,
                        error=error,
                    )
                )
            return None
        if ctx is not None and self._bus.wants(RetryScheduled):
            self._bus.emit(
                RetryScheduled(
                    time=now,
                    executor=self._name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=attempt,
                    delay=delay,
                    error=error,
                )
            )
        return delay

    def _fallback_used(
        self,
        ctx: CallContext | None,
        error: BaseException,
        attempts: int,
        started: float,
    ) -> None:
        if ctx is None:
            return
        if self._bus.wants(FallbackUsed):
            self._bus.emit(
                FallbackUsed(
                    time=self._clock.now(),
                    executor=self._name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    error=error,
                )
            )
        self._call_ended(ctx, "fallback", attempts, started, error)


def _optional(param: str, value: object, cls: type[Any], what: str) -> Any:
    if value is None:
        return None
    return _validate.instance_of(param, value, cls, what)


def _check_grants_one(limiter: Limiter) -> None:
    """
    Refuse a limiter that can never grant the 1 permit an attempt costs.

    Every ``run()`` through it would fail, so it is a configuration error.
    """
    for tier in getattr(limiter, "_tiers", None) or (limiter,):
        most = getattr(tier, "_max_cost", None)
        if most is not None and most < 1:
            raise ConfigError(
                "limiter",
                f"{tier.name!r} grants at most {most:g} permits at once "
                f"({getattr(tier, '_what', 'its maximum')}), but every "
                "attempt takes 1: no call could ever pass; give it 1 or more",
            )


# What the executor says when two distinct components report under one name:
# their metrics would blend into one series (one label value).
_KINDS = {
    "circuit_breaker": "circuit breaker",
    "limiter": "limiter",
    "bulkhead": "bulkhead",
}

# Per bus: (kind, name) -> the component wired under that name. Weak on both
# sides, so a component (or a bus) nobody uses any more frees its name.
_wired: weakref.WeakKeyDictionary[
    EventBus, weakref.WeakValueDictionary[tuple[str, str], Component]
] = weakref.WeakKeyDictionary()
_wired_lock = threading.Lock()


def _labelled(executor: ExecutorBase) -> list[tuple[str, Component]]:
    """The executor's components that name a metric series, with kind."""
    found: list[tuple[str, Component]] = []
    for param, component in executor._components():
        if param == "retry_policy":
            continue
        if param == "limiter":
            tiers = getattr(component, "_tiers", None) or (component,)
            found.extend(("limiter", tier) for tier in tiers)
        else:
            found.append((param, component))
    return found


def _check_names(executor: ExecutorBase) -> None:
    """
    Warn when a distinct component already reports under the same name.

    Two components of one kind with one name on one bus write one metric
    series, so their numbers blend (one open breaker and one closed one show
    as a single breaker). A component object shared by several executors
    is one series, as it should be, and is never reported.
    """
    clashes = []
    with _wired_lock:
        for kind, component in _labelled(executor):
            bus = component._explicit_bus or executor._bus
            names = _wired.get(bus)
            if names is None:
                names = _wired[bus] = weakref.WeakValueDictionary()
            key = (kind, component.name)
            seen = names.get(key)
            if seen is None:
                names[key] = component
            elif seen is not component:
                clashes.append((kind, component))
    for kind, component in clashes:
        logger.warning(
            "executor %r: another %s named %r already reports on this bus; "
            "their events and metrics will share one name and blend: give "
            "each its own name=",
            executor.name,
            _KINDS[kind],
            component.name,
        )


def chain(
    later: BaseException,
    failure: BaseException | None,
    *,
    context: bool = False,
) -> None:
    """
    Link the last real failure to a later exception.

    As its ``__cause__`` (a rejection because of it), or with
    ``context=True`` as its ``__context__`` (raised while judging it).
    """
    if failure is None or failure is later:
        return
    if context:
        if later.__context__ is None:
            later.__context__ = failure
    elif later.__cause__ is None:
        later.__cause__ = failure


def chain_handled(later: BaseException, failure: BaseException) -> None:
    """
    Link ``failure`` as if ``later`` had been raised while handling it.

    At the end of ``later``'s ``__context__`` chain, as Python would have
    put it had the fallback run inside an ``except`` clause; an explicit
    ``raise ... from`` of the fallback stays as it is.
    """
    seen = set()
    current = later
    while current.__context__ is not None and id(current) not in seen:
        if current.__context__ is failure:
            return
        seen.add(id(current))
        current = current.__context__
    if current is not failure:
        current.__context__ = failure


def _outcome(error: BaseException) -> str:
    """`AttemptEnded.outcome` for an attempt that raised ``error``."""
    if not isinstance(error, Exception):
        return "cancelled"
    return "timeout" if isinstance(error, AttemptTimeoutError) else "failure"


def failure_outcome(error: BaseException, attempts: int) -> str:
    """`CallEnded.outcome` for a call ending in ``error``."""
    if not isinstance(error, Exception):
        return "cancelled"
    return "failure" if attempts else "rejected"


__all__ = [
    "ExecutorBase",
    "_outcome",
    "chain",
    "chain_handled",
    "failure_outcome",
]
