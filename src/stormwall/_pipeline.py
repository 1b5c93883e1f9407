"""
The pipeline, written once: what one call does, step by step, without I/O.

Per attempt, in a fixed order (docs/internals.md, "The life of one call")::

    admit    breaker gate  -> CircuitOpenError (fail fast: no permit spent)
             rate limiter  -> wait up to limiter_timeout, else RateLimitedError
             bulkhead      -> wait up to its max_wait, else BulkheadFullError
    invoke   the driver calls fn (async: under the per-attempt timeout)
    record   bulkhead release, breaker (its classifier decides), result test
    decide   retry? (attempts left, retryable, breaker not open, deadline,
             budget) -> RetryScheduled and a back-off sleep, then admit again;
             else the result, the fallback's value, or the error

Why this order: the breaker goes first because an open circuit must cost
nothing (no token spent on a call that cannot happen); the limiter before the
bulkhead because waiting for a token while holding a concurrency slot would
waste the slot; retry outermost so every retry passes every gate again.

A `Call` is one call's state. Each of its steps returns what the driver must
do next: `INVOKE` (run the function now), `RETURN` (``call.value`` is the
result), `RAISE` (raise ``call.raising``), or a `Wait`: something to block on
(a limiter reservation, a bulkhead slot, a back-off sleep, a round trip to an
asyncio breaker store), whose outcome goes to ``wait.then`` (or the exception
it raised to ``wait.fail``). A wait carries both its forms, ``blocking`` for
the sync driver and ``awaiting`` for the async one, so the drivers
(`_sync.py`, `_async.py`) differ only in ``await``, and every event is
reported here, once, whichever driver runs the call.

The steps granted at once (a closed breaker, a token in the bucket) return
the shared `INVOKE` sentinel and allocate nothing but the `Call` itself.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import types
from typing import TYPE_CHECKING, Any, Final

from . import _validate
from ._component import CallContext
from ._core._breaker import CLOSED
from ._errors import AttemptTimeoutError, CircuitOpenError, RejectedError
from ._events import (
    AttemptEnded,
    AttemptStarted,
    CallEnded,
    CallStarted,
    ExecutorObserved,
    FallbackUsed,
    LimiterAllowed,
    RetryBudgetExhausted,
    RetryScheduled,
    builder,
)
from ._limiters import give_back


if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._breaker import CircuitBreaker
    from ._bus import EventBus
    from ._core._breaker import BreakerRecord
    from ._executor import ExecutorBase
    from ._limiters import Limiter
    from ._tally import Tally


class Step:
    """What the driver does next (one shared instance per kind)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Run the function now: every gate granted the attempt.
INVOKE: Final = Step("INVOKE")
#: The call is over: return ``call.value``.
RETURN: Final = Step("RETURN")
#: The call is over: raise ``call.raising``.
RAISE: Final = Step("RAISE")


class Wait:
    """
    Something the driver must wait for before the call goes on.

    ``blocking(*args)`` is the sync driver's way to wait, ``awaiting(*args)``
    the async driver's (``None`` where that driver can never meet the wait).
    The driver passes what the wait returned to ``then``, or what it raised
    to ``fail``; each returns the next step.
    """

    __slots__ = ("args", "awaiting", "blocking", "fail", "then")

    def __init__(
        self,
        blocking: Callable[..., Any] | None,
        awaiting: Callable[..., Awaitable[Any]] | None,
        args: tuple[Any, ...],
        then: Callable[[Any], Step | Wait],
        fail: Callable[[BaseException], Step | Wait],
    ) -> None:
        self.blocking = blocking
        self.awaiting = awaiting
        self.args = args
        self.then = then
        self.fail = fail

    def __repr__(self) -> str:
        fn = self.blocking or self.awaiting
        return f"Wait({getattr(fn, '__qualname__', fn)}{self.args!r})"


class MisuseError(TypeError):
    """
    A function of the wrong colour for its executor (see the drivers).

    A usage error: never retried, never recorded as an upstream failure.
    """


def awaitable(value: object) -> bool:
    """
    Whether a result is awaitable (a misuse of the sync executor).

    Types found plain are remembered, so the check costs a set look-up.
    """
    if inspect.isawaitable(value):
        return True
    if len(plain) < PLAIN_MAX:
        plain.add(value.__class__)
    return False


# Result types known not to be awaitable (bounded: dynamic classes are not
# pinned forever).
plain: set[type] = {
    type(None),
    bool,
    int,
    float,
    str,
    bytes,
    dict,
    list,
    tuple,
}
PLAIN_MAX = 1024


class AwaitableError(MisuseError):
    """
    A coroutine function (or an awaitable) given to the sync executor.

    A usage error: never retried, never recorded as an upstream failure.
    The coroutine is closed, so Python does not warn it was never awaited.
    """

    def __init__(self, fn: object, value: object) -> None:
        if isinstance(value, types.CoroutineType):
            value.close()
        name = getattr(fn, "__qualname__", repr(fn))
        what = (
            "is a coroutine function"
            if value is None or isinstance(value, types.CoroutineType)
            else f"returned {type(value).__name__}, an awaitable"
        )
        super().__init__(
            f"{name} {what}: ResilientExecutor runs synchronous code; use "
            "AsyncResilientExecutor for coroutine functions"
        )


CoroutineType = types.CoroutineType


class NotAwaitableError(MisuseError):
    """
    A sync function given to the async executor.

    A usage error: never retried, never recorded as an upstream failure.
    """

    def __init__(self, fn: object, value: object) -> None:
        name = getattr(fn, "__qualname__", repr(fn))
        super().__init__(
            f"{name} returned {type(value).__name__}, not an awaitable: "
            "AsyncResilientExecutor runs coroutine functions; use "
            "ResilientExecutor for synchronous code"
        )


# Process-unique call ids; `next()` on itertools.count is atomic under the GIL.
_call_ids = itertools.count(1)

# The events of every observed call, built by function rather than by class
# call (no keyword dict per event: see `builder`).
_call_started = builder(CallStarted)
_attempt_started = builder(AttemptStarted)
_attempt_ended = builder(AttemptEnded)
_call_ended = builder(CallEnded)


# The outcomes the pipeline reports (`_outcome`, `failure_outcome`); the
# exporters' vocabulary has them as label values (a test holds them equal).
ATTEMPT_OUTCOMES: Final = ("success", "failure", "timeout", "cancelled")
CALL_OUTCOMES: Final = (
    "success",
    "failure",
    "rejected",
    "fallback",
    "cancelled",
)


class Wanted:
    """
    What the subscribers of an executor's bus take, at one ``version``.

    Read once per call instead of asking the bus per event; rebuilt by
    `Pipeline.refresh` when the subscriptions change (``bus._version``).
    ``hushed``: somebody listens, but to nothing a plain success reports
    (CallStarted, AttemptStarted, LimiterAllowed, a successful AttemptEnded
    or CallEnded): such a call builds no context unless it fails
    (`QuickCall`).
    """

    __slots__ = (
        "attempt_ended",
        "attempt_started",
        "call_ended",
        "call_started",
        "hushed",
        "limiter_allowed",
        "version",
    )

    def __init__(self, bus: EventBus) -> None:
        # The version first: a change landing while this is built makes the
        # next call build it again.
        self.version = bus._version
        self.call_started = bus.wants(CallStarted)
        self.attempt_started = bus.wants(AttemptStarted)
        #: The outcomes somebody takes.
        self.attempt_ended = frozenset(
            o for o in ATTEMPT_OUTCOMES if bus.wants_outcome(AttemptEnded, o)
        )
        self.call_ended = frozenset(
            o for o in CALL_OUTCOMES if bus.wants_outcome(CallEnded, o)
        )
        self.limiter_allowed = bus.wants(LimiterAllowed)
        self.hushed = bool(bus._subs) and not (
            self.call_started
            or self.attempt_started
            or "success" in self.attempt_ended
            or "success" in self.call_ended
            or self.limiter_allowed
        )


class Pipeline:
    """
    One executor's pipeline: its parts, and what a call needs to know.

    Built once per executor, when it is constructed; `call` starts a call.
    Whether the breaker must be awaited (its state lives behind an asyncio
    client) is decided here, once, by the class of the calls it starts.
    """

    __slots__ = (
        "awaits_fallback",
        "breaker",
        "budget",
        "bulkhead",
        "bus",
        "buses",
        "call",
        "clock",
        "dated",
        "deadline",
        "fallback",
        "gated",
        "limiter",
        "limiter_timeout",
        "lone_limiter",
        "max_attempts",
        "name",
        "now",
        "observed_generation",
        "others",
        "policy",
        "quick",
        "record",
        "refunds",
        "result_test",
        "settle",
        "sleep",
        "sleep_async",
        "timed",
        "wanted",
    )

    def __init__(self, executor: ExecutorBase, *, awaits: bool) -> None:
        policy = executor._policy
        breaker = executor._breaker
        self.name = executor._name
        self.breaker = breaker
        self.limiter = executor._limiter
        self.bulkhead = executor._bulkhead
        self.policy = policy
        self.fallback = executor._fallback
        self.limiter_timeout = executor._limiter_timeout
        self.bus = executor._bus
        self.buses = executor._buses
        # The components' own buses (usually none).
        self.others = tuple(b for b in self.buses if b is not self.bus)
        self.clock = executor._clock
        self.now = executor._clock.now
        self.sleep = executor._clock.sleep
        self.sleep_async = executor._clock.sleep_async
        # The async driver awaits an awaitable the fallback returns.
        self.awaits_fallback = awaits
        self.budget = None if policy is None else policy.budget
        self.max_attempts = 1 if policy is None else policy.max_attempts
        # What a call without a listener needs the clock for (each read is a
        # call): its start only for a budget or a deadline, its attempts'
        # durations only for a breaker with a slow-call rule.
        self.deadline = None if policy is None else policy.deadline
        self.dated = self.budget is not None or self.deadline is not None
        self.timed = breaker is not None and breaker._timed
        # The result check, or None when no policy judges results (the
        # policy is frozen): the success path then makes no call for it.
        self.result_test = (
            None
            if policy is None or policy.retry_on_result is None
            else policy._retries_result
        )
        # A permit taken for an attempt the bulkhead then refuses is given
        # back; the limiter says whether it can take one back.
        self.refunds = (
            self.bulkhead is not None
            and self.limiter is not None
            and self.limiter._refunds
        )
        # Whether an attempt passes a limiter or a bulkhead; and whether the
        # limiter is all there is to pass (no bulkhead, no deadline), so a
        # permit granted at once needs no bookkeeping.
        self.gated = self.limiter is not None or self.bulkhead is not None
        self.lone_limiter = (
            self.limiter is not None
            and self.bulkhead is None
            and self.deadline is None
        )
        # What a quick admission reads of the breaker (None: no breaker, or
        # one whose every decision is made elsewhere).
        self.record: BreakerRecord | None = (
            None if breaker is None else breaker._closed_record()
        )
        # Whether a call's first attempt may skip the `Call` (see `enter`):
        # nothing to date, time, test, or wait for but a limiter's permit.
        self.quick = (
            self.bulkhead is None
            and not self.dated
            and not self.timed
            and self.result_test is None
            and (breaker is None or self.record is not None)
        )
        #: ``settle(permit, 0.0, None)``: record a quick attempt's success.
        self.settle: Callable[[Any, float, None], None] = (
            _nothing if breaker is None else breaker._on_success
        )
        self.observed_generation = -1
        self.wanted = Wanted(self.bus)
        call_type = (
            StoredCall if breaker is not None and breaker._async_only else Call
        )
        #: ``call(key)``: start one call for ``key`` (a `Call`).
        self.call: Callable[[str], Call] = functools.partial(call_type, self)

    def enter(self, key: str) -> Call | int:
        """
        Start a call: a `Call`, or just its first attempt's permit.

        The quick way in is for the plainest call (nobody listening and no
        pull exporter counting, a str key, a closed breaker, a limiter with
        a permit to spare, no bulkhead, nothing to date or time): its first
        attempt needs no state beyond the breaker's permit (an int; 0
        without a breaker), which the driver hands to `settle` after a
        success, or to `resume` after a failure (then the error to the
        `Call` it returns). When somebody listens (but not to the limiter's
        grants), or a pull exporter counts, the same call starts as a
        `QuickCall`: its first attempt reports and counts what a `Call`'s
        would, with less state, and it becomes a `Call` if that attempt
        fails. Everything else goes through a `Call`.
        """
        bus = self.bus
        if (
            self.quick
            and key.__class__ is str
            and not (self.others and _listened(self.others))
        ):
            if bus._subs:
                return self.enter_observed(key)
            tally = bus._tally
            if tally is None:
                rec, limiter = self.record, self.limiter
                # The generation first: a transition writes the state
                # before bumping it (see `CircuitBreaker._admit`).
                permit = 0 if rec is None else rec.generation
                if (rec is None or rec.state is CLOSED) and (
                    limiter is None or limiter._grab(key)
                ):
                    return permit
            else:
                quick = self.quick_call(key, tally)
                if quick is not None:
                    return quick
        return self.call(key)

    def enter_observed(self, key: str) -> Call:
        """
        `enter` when somebody listens: a `QuickCall` if it may be.

        Not when somebody takes the limiter's grants (its event belongs
        between CallStarted and AttemptStarted, and a limiter that cannot
        grant at once sends the call through a `Call`, which reports
        CallStarted itself); nor for the first call a new subscriber
        hears, which tells it what the executor is made of (`open`).
        """
        bus = self.bus
        wanted = self.wanted
        if wanted.version != bus._version:
            wanted = self.refresh()
        if (
            not wanted.limiter_allowed
            and bus.generation == self.observed_generation
        ):
            call = self.quick_call(key, bus._tally)
            if call is not None:
                if not wanted.hushed:
                    # Reported as `open` would, now that it is admitted:
                    # the breaker and the limiter had nothing to say.
                    ctx = call.ctx = CallContext(
                        self.name, key, next(_call_ids), bus
                    )
                    self.call_started(ctx, call.started)
                return call
        return self.call(key)

    def quick_call(self, key: str, tally: Tally | None) -> QuickCall | None:
        """
        A `QuickCall` for ``key`` if it is admitted at once, else None.

        Its start is read before the admission, as a `Call` reads it.
        """
        rec, limiter = self.record, self.limiter
        started = self.now()
        # The generation first (see `enter`).
        permit = 0 if rec is None else rec.generation
        if (rec is None or rec.state is CLOSED) and (
            limiter is None or limiter._grab(key)
        ):
            return QuickCall(self, key, permit, started, tally)
        return None

    def refresh(self) -> Wanted:
        """What the bus's subscribers take now (see `Wanted`)."""
        wanted = self.wanted = Wanted(self.bus)
        return wanted

    def resume(self, key: str, permit: int) -> Call:
        """
        A quick first attempt failed: the call, as if it had run through it.

        The driver then hands it the error (`Call.failed`), so whatever
        the error leads to (a raising hook, an interrupt) finds a `Call`
        to close.
        """
        call: Call = Call.__new__(self.call.func)  # type: ignore[attr-defined]
        call.pipe = self
        call.key = key
        call.ctx = None
        call.started = 0.0
        call.attempt = 1
        call.previous = None
        call.receipt = None
        call.permit = permit
        call.t0 = 0.0
        call.tally = None
        call.timed = False
        return call

    # -- events ---------------------------------------------------------------

    def open(self, key: str, now: float) -> CallContext | None:
        """
        Start a call's telemetry: a context when anybody listens, else None.

        ``now``: when the call started (CallStarted's time).
        """
        if type(key) is not str:
            _validate.key(key)
        for bus in self.buses:
            if bus._subs:
                break
        else:
            return None
        ctx = CallContext(self.name, key, next(_call_ids), self.bus)
        bus = self.bus
        if bus._subs:
            if bus.generation != self.observed_generation:
                self.observed_generation = bus.generation
                self.announce(ctx)
            if self.wanted.version != bus._version:
                self.refresh()
            self.call_started(ctx, now)
        return ctx

    def announce(self, ctx: CallContext) -> None:
        """Tell a new listener what this executor is made of."""
        if not self.bus.wants(ExecutorObserved):
            return
        breaker, limiter, bulkhead = self.breaker, self.limiter, self.bulkhead
        self.bus.emit(
            ExecutorObserved(
                time=self.now(),
                executor=self.name,
                key=ctx.key,
                call_id=ctx.call_id,
                breaker=None if breaker is None else breaker.name,
                breaker_state=None if breaker is None else breaker.state.value,
                limiters=() if limiter is None else limiter._names(),
                bulkhead=None if bulkhead is None else bulkhead.name,
            )
        )

    def attempt_started(
        self, ctx: CallContext, attempt: int, now: float
    ) -> None:
        ctx.attempt = attempt
        ctx.attempt_at = now
        if self.wanted.attempt_started:
            self.bus.emit(
                _attempt_started(
                    time=now,
                    executor=self.name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=attempt,
                )
            )

    def call_started(self, ctx: CallContext, now: float) -> None:
        if self.wanted.call_started:
            self.bus.emit(
                _call_started(
                    time=now,
                    executor=self.name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                )
            )

    def attempt_ended(
        self,
        ctx: CallContext,
        outcome: str,
        duration: float,
        error: BaseException | None,
    ) -> None:
        ctx.attempt_at = None
        if outcome in self.wanted.attempt_ended:
            self.bus.emit(
                _attempt_ended(
                    time=self.now(),
                    executor=self.name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=ctx.attempt,
                    outcome=outcome,
                    duration=duration,
                    error=error,
                )
            )

    def call_ended(
        self,
        ctx: CallContext,
        outcome: str,
        attempts: int,
        started: float,
        error: BaseException | None,
    ) -> None:
        ctx.ended = True
        if outcome in self.wanted.call_ended:
            now = self.now()
            self.bus.emit(
                _call_ended(
                    time=now,
                    executor=self.name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    outcome=outcome,
                    attempts=attempts,
                    duration=now - started,
                    error=error,
                )
            )

    # -- decisions ------------------------------------------------------------

    def retry_delay(
        self,
        attempt: int,
        error: BaseException | None,
        result: object,
        started: float,
        previous: float | None,
        ctx: CallContext | None,
        tally: Tally | None,
    ) -> float | None:
        """
        Schedule a wanted retry: back-off, deadline, budget.

        ``tally`` is the call's (counting on or off when the call began),
        so a call is counted whole or not at all.

        Returns:
            The back-off delay, or ``None`` to give up with this failure.
        """
        policy = self.policy
        assert policy is not None  # noqa: S101 - Call._decide checked it
        delay: float = policy._backoff(
            attempt, result if error is None else error, previous
        )
        now = self.now()
        deadline = self.deadline
        if deadline is not None and now + delay >= started + deadline:
            return None
        budget = self.budget
        if budget is not None and not budget._withdraw(now):
            if tally is not None:
                tally.budget_exhausted(self.name)
            if ctx is not None and self.bus.wants(RetryBudgetExhausted):
                self.bus.emit(
                    RetryBudgetExhausted(
                        time=now,
                        executor=self.name,
                        key=ctx.key,
                        call_id=ctx.call_id,
                        attempt=attempt,
                        error=error,
                    )
                )
            return None
        if tally is not None:
            tally.retry(self.name, _error_type(error))
        if ctx is not None and self.bus.wants(RetryScheduled):
            self.bus.emit(
                RetryScheduled(
                    time=now,
                    executor=self.name,
                    key=ctx.key,
                    call_id=ctx.call_id,
                    attempt=attempt,
                    delay=delay,
                    error=error,
                )
            )
        return delay


class Call:
    """
    One call through the pipeline: its state, and its steps.

    The driver calls `admit` first, then, as the steps answer: the function
    on `INVOKE` (then `succeeded` or `failed`), a wait's ``then`` or
    ``fail``, and `abandon` when an exception escapes any of it.
    """

    __slots__ = (
        "attempt",
        "ctx",
        "error",
        "key",
        "left",
        "permit",
        "pipe",
        "previous",
        "raising",
        "receipt",
        "rejected",
        "started",
        "t0",
        "tally",
        "timed",
        "value",
    )

    permit: object  # the breaker's, for this attempt
    left: float | None  # time left before the deadline (None: no deadline)
    t0: float  # when the attempt started (0.0 when nothing reads it)
    value: Any  # what run() returns
    raising: BaseException  # what run() raises
    rejected: Any  # the last result the policy rejected

    def __init__(self, pipe: Pipeline, key: str) -> None:
        # A context (and CallStarted) only when somebody listens, or to
        # refuse a key that is not a str.
        opened = False
        for bus in pipe.buses:
            if bus._subs or key.__class__ is not str:
                opened = True
                break
        self.pipe = pipe
        self.key = key
        # Pull metrics (`_tally.py`): None unless a pull exporter counts on
        # this bus; it needs the times too.
        tally = self.tally = pipe.bus._tally
        # The clock is read only for what uses the time: events, counts, a
        # budget, a deadline (`dated`), a breaker's slow-call rule (`timed`).
        started = (
            pipe.now() if opened or pipe.dated or tally is not None else 0.0
        )
        ctx = self.ctx = pipe.open(key, started) if opened else None
        self.timed = ctx is not None or pipe.timed or tally is not None
        self.started = started
        if pipe.budget is not None:
            pipe.budget._deposit(started)
        self.attempt = 0
        # The last real failure (None: a result the policy rejected, kept in
        # ``rejected``), and the previous back-off delay.
        self.error: BaseException | None = None
        self.previous: float | None = None
        self.receipt: list[Any] | None = None

    # -- admit: breaker gate, limiter, bulkhead ------------------------------

    def admit(self, _: object = None) -> Step | Wait:
        """Pass the gates for the next attempt (also a back-off's ``then``)."""
        pipe = self.pipe
        ctx = self.ctx
        if ctx is not None:
            ctx.attempt = self.attempt + 1
        breaker = pipe.breaker
        if breaker is None:
            self.permit = None
        else:
            try:
                self.permit = breaker._admit(ctx)
            except CircuitOpenError as exc:
                self.permit = None
                return self._give_up(exc, self.error)
        if pipe.gated:
            if not pipe.lone_limiter:
                return self._limit()
            limiter = pipe.limiter
            assert limiter is not None  # noqa: S101 - lone_limiter says so
            if not limiter._take(self.key, ctx, None):
                self.left = None
                return self._limiter_wait(limiter, pipe.limiter_timeout, None)
        return self._invoke()

    def _gated(self, permit: object) -> Step | Wait:
        self.permit = permit
        return self._limit()

    def _gate_refused(self, exc: BaseException) -> Step | Wait:
        if isinstance(exc, CircuitOpenError):
            return self._give_up(exc, self.error)
        raise exc

    def _limit(self) -> Step | Wait:
        pipe = self.pipe
        limiter = pipe.limiter
        # No wait runs past the deadline (``left``: the time left).
        deadline = pipe.deadline
        left = (
            None if deadline is None else self.started + deadline - pipe.now()
        )
        self.left = left
        if limiter is None:
            return self._slot()
        receipt = self.receipt = [] if pipe.refunds else None
        if limiter._take(self.key, self.ctx, receipt):
            return self._slot()
        wait = pipe.limiter_timeout
        if left is not None and (wait is None or left < wait):
            wait = left if left > 0 else 0.0
        return self._limiter_wait(limiter, wait, receipt)

    def _limiter_wait(
        self, limiter: Limiter, wait: float | None, receipt: list[Any] | None
    ) -> Wait:
        if receipt is None:
            return Wait(
                limiter._acquire,
                limiter._acquire_async,
                (self.key, 1, wait, self.ctx),
                self._limited,
                self._refused,
            )
        return Wait(
            limiter._acquire_refundable,
            limiter._acquire_refundable_async,
            (self.key, 1, wait, self.ctx, receipt),
            self._limited,
            self._refused,
        )

    def _limited(self, waited: float) -> Step | Wait:
        if self.left is not None and waited:
            self.left -= waited
        return self._slot()

    def _slot(self) -> Step | Wait:
        bulkhead = self.pipe.bulkhead
        if bulkhead is None:
            return self._invoke()
        left = self.left
        return Wait(
            bulkhead._acquire,
            bulkhead._acquire_async,
            (self.ctx,) if left is None else (self.ctx, left),
            self._slotted,
            self._refused,
        )

    def _slotted(self, _: object) -> Step | Wait:
        return self._invoke()

    def _refused(self, exc: BaseException) -> Step | Wait:
        """A limiter or bulkhead wait ended in refusal (or was interrupted)."""
        # A permit the bulkhead then refuses is given back.
        if self.receipt:
            give_back(self.receipt)
        if isinstance(exc, RejectedError):
            return self._release(
                functools.partial(self._give_up, exc, self.error)
            )
        return self._release(functools.partial(self._raise, exc))

    def _invoke(self) -> Step | Wait:
        pipe = self.pipe
        self.attempt += 1
        ctx = self.ctx
        t0 = self.t0 = pipe.now() if self.timed else 0.0
        if ctx is not None:
            try:
                pipe.attempt_started(ctx, self.attempt, t0)
            except BaseException as exc:  # noqa: BLE001 - see the driver
                return self.failed(exc)
        return INVOKE

    # -- record ---------------------------------------------------------------

    def _over(self) -> float:
        """The attempt is over: free its bulkhead slot; how long it ran."""
        pipe = self.pipe
        duration = pipe.now() - self.t0 if self.timed else 0.0
        if pipe.bulkhead is not None:
            pipe.bulkhead._release(self.ctx)
        return duration

    def succeeded(self, result: Any) -> Step | Wait:
        """The attempt returned ``result``."""
        pipe = self.pipe
        ctx = self.ctx
        duration = self._over()
        test = pipe.result_test
        if test is not None:
            try:
                retry = test(result)
            except BaseException as exc:  # noqa: BLE001 - raised by the driver
                return self._release(functools.partial(self._raise, exc))
            if retry:
                if ctx is not None:
                    pipe.attempt_ended(ctx, "failure", duration, None)
                if self.tally is not None:
                    self.tally.attempt(pipe.name, "failure", duration)
                self.error, self.rejected = None, result
                return self._record_failure(None, duration)
        if ctx is not None:
            # `Pipeline.attempt_ended`, inline: the observed hot path.
            ctx.attempt_at = None
            if "success" in pipe.wanted.attempt_ended:
                pipe.bus.emit(
                    _attempt_ended(
                        time=pipe.now(),
                        executor=pipe.name,
                        key=ctx.key,
                        call_id=ctx.call_id,
                        attempt=ctx.attempt,
                        outcome="success",
                        duration=duration,
                        error=None,
                    )
                )
        if self.tally is not None:
            self.tally.attempt(pipe.name, "success", duration)
        self.value = result
        breaker = pipe.breaker
        if breaker is not None:
            return self._record_success(breaker, duration)
        if ctx is None and self.tally is None:
            return RETURN
        return self._won()

    def _record_success(
        self, breaker: CircuitBreaker, duration: float
    ) -> Step | Wait:
        breaker._on_success(self.permit, duration, self.ctx)
        if self.ctx is None and self.tally is None:
            return RETURN
        return self._won()

    def _won(self, _: object = None) -> Step:
        pipe = self.pipe
        ctx = self.ctx
        if ctx is not None:
            # `Pipeline.call_ended`, inline: the observed hot path.
            ctx.ended = True
            if "success" in pipe.wanted.call_ended:
                now = pipe.now()
                pipe.bus.emit(
                    _call_ended(
                        time=now,
                        executor=pipe.name,
                        key=ctx.key,
                        call_id=ctx.call_id,
                        outcome="success",
                        attempts=self.attempt,
                        duration=now - self.started,
                        error=None,
                    )
                )
        if self.tally is not None:
            self.tally.call(pipe.name, "success", pipe.now() - self.started)
        return RETURN

    def failed(self, exc: BaseException) -> Step | Wait:
        """The attempt raised ``exc`` (or was interrupted)."""
        pipe = self.pipe
        ctx = self.ctx
        duration = self._over()
        if self.tally is not None:
            self.tally.attempt(pipe.name, _outcome(exc), duration)
        if not isinstance(exc, Exception) or isinstance(exc, MisuseError):
            # Interrupted, not failed (or misused): free the probe slot,
            # record nothing; `abandon` reports it.
            return self._release(functools.partial(self._raise, exc))
        if ctx is not None:
            pipe.attempt_ended(ctx, _outcome(exc), duration, exc)
        self.error, self.rejected = exc, None
        return self._record_failure(exc, duration)

    def _record_failure(
        self, error: BaseException | None, duration: float
    ) -> Step | Wait:
        breaker = self.pipe.breaker
        if breaker is not None:
            try:
                breaker._on_failure(self.permit, error, duration, self.ctx)
            except Exception as exc:  # noqa: BLE001 - re-raised, chained
                # Its classifier (record_on, ignore_on) raised.
                return self._hook_raised(exc)
        return self._decide()

    def _release(self, then: Callable[[], Step | Wait]) -> Step | Wait:
        """Free the attempt's probe slot, if it holds one, then go on."""
        breaker = self.pipe.breaker
        if breaker is not None:
            breaker._release(self.permit)
        return then()

    def _raise(self, exc: BaseException) -> Step:
        self.raising = exc
        return RAISE

    # -- decide ---------------------------------------------------------------

    def _decide(self, _: object = None) -> Step | Wait:
        """
        Retry, or end the call with what the last attempt left.

        A retry needs attempts left and a retryable error (or a rejected
        result). An open breaker is then asked first (`_probe`): retrying
        into it is pointless, and asking reports the refusal
        (BreakerRejected, counted) like any other; its `CircuitOpenError`
        ends the call, chained to the failure.
        """
        pipe = self.pipe
        policy = pipe.policy
        if policy is None or self.attempt >= pipe.max_attempts:
            return self._stop()
        error = self.error
        if error is not None:
            try:
                wanted = policy._retries(error)
            except Exception as exc:  # noqa: BLE001 - re-raised, chained
                return self._hook_raised(exc)
            if not wanted:
                return self._stop()
        breaker = pipe.breaker
        if breaker is not None and breaker._rejecting():
            return self._probe(breaker)
        return self._schedule()

    def _probe(self, breaker: CircuitBreaker) -> Step | Wait:
        """Ask an open breaker before backing off: a refusal ends the call."""
        try:
            breaker._release(breaker._admit(self.ctx))
        except CircuitOpenError as exc:
            return self._give_up(exc, self.error)
        return self._schedule()

    def _schedule(self, _: object = None) -> Step | Wait:
        pipe = self.pipe
        try:
            delay = pipe.retry_delay(
                self.attempt,
                self.error,
                self.rejected,
                self.started,
                self.previous,
                self.ctx,
                self.tally,
            )
        except Exception as exc:  # noqa: BLE001 - re-raised, chained
            return self._hook_raised(exc)
        if delay is None:
            return self._stop()
        self.previous = delay
        return Wait(
            pipe.sleep, pipe.sleep_async, (delay,), self.admit, _reraise
        )

    def _hook_raised(self, exc: Exception) -> Step:
        # A user hook (retry_on, retry_after, the breaker's record_on or
        # ignore_on) raised: surface its bug, with the failure it was
        # judging as context.
        chain(exc, self.error, context=True)
        raise exc

    def _stop(self) -> Step | Wait:
        """No retry: the last result, or give up with the last error."""
        if self.error is None:
            # Retries on a result ran out: the caller gets the last result,
            # as the function returned it.
            pipe = self.pipe
            if self.ctx is not None:
                pipe.call_ended(
                    self.ctx, "failure", self.attempt, self.started, None
                )
            if self.tally is not None:
                self.tally.call(
                    pipe.name, "failure", pipe.now() - self.started
                )
            self.value = self.rejected
            return RETURN
        return self._give_up(self.error, None)

    def _give_up(
        self, error: BaseException, cause: BaseException | None
    ) -> Step | Wait:
        """End a failed call: the fallback's value, or raise ``error``."""
        chain(error, cause)
        pipe = self.pipe
        ctx = self.ctx
        fallback = pipe.fallback
        if fallback is None or not isinstance(error, Exception):
            if ctx is not None:
                pipe.call_ended(
                    ctx,
                    failure_outcome(error, self.attempt),
                    self.attempt,
                    self.started,
                    error,
                )
            return self._raise(error)
        self.raising = error
        try:
            value = fallback(error)
        except Exception as exc:  # noqa: BLE001 - re-raised, chained
            return self._fallback_failed(exc)
        if pipe.awaits_fallback and inspect.isawaitable(value):
            return Wait(
                None,
                _awaited,
                (value,),
                self._fallen_back,
                self._fallback_failed,
            )
        return self._fallen_back(value)

    def _fallen_back(self, value: object) -> Step:
        pipe = self.pipe
        ctx = self.ctx
        error = self.raising
        if ctx is not None:
            if pipe.bus.wants(FallbackUsed):
                pipe.bus.emit(
                    FallbackUsed(
                        time=pipe.now(),
                        executor=pipe.name,
                        key=ctx.key,
                        call_id=ctx.call_id,
                        error=error,
                    )
                )
            pipe.call_ended(ctx, "fallback", self.attempt, self.started, error)
        if self.tally is not None:
            self.tally.call(pipe.name, "fallback", pipe.now() - self.started)
        self.value = value
        return RETURN

    def _fallback_failed(self, exc: BaseException) -> Step:
        if isinstance(exc, Exception):
            # As if it had run while handling the failure: keep it.
            chain_handled(exc, self.raising)
            if self.ctx is not None:
                self.pipe.call_ended(
                    self.ctx, "failure", self.attempt, self.started, exc
                )
        raise exc

    # -- escape ---------------------------------------------------------------

    def abandon(self, error: BaseException) -> None:
        """
        Close what an escaping exception left open: the attempt, the call.

        Every CallStarted gets one CallEnded and every AttemptStarted one
        AttemptEnded, whatever escapes (cancellation, an interrupt, a raising
        user hook), so exporters never leak an open span.
        """
        pipe = self.pipe
        if self.tally is not None:
            self.tally.call(
                pipe.name,
                failure_outcome(error, self.attempt),
                pipe.now() - self.started,
            )
        ctx = self.ctx
        if ctx is None:
            return
        if ctx.attempt_at is not None:
            pipe.attempt_ended(
                ctx, _outcome(error), pipe.now() - ctx.attempt_at, error
            )
        if not ctx.ended:
            pipe.call_ended(
                ctx,
                failure_outcome(error, self.attempt),
                self.attempt,
                self.started,
                error,
            )


class QuickCall(Call):
    """
    A call through the quick way in while somebody listens or counts.

    `Pipeline.enter_observed` (or `Pipeline.enter`, counting with nobody
    listening) admitted it (a closed breaker, a permit at once) and read
    its start; it holds just that, the bus's `Tally` while a pull exporter
    counts, and its context when anybody takes what a success reports
    (else none, ``hushed``: a log exporter that drops successes). Its
    first attempt reports and counts what a `Call`'s would; a success ends
    it. A failure, or an escape, makes it the `Call` it would have been
    (building the context then if it has none: CallStarted, were it wanted
    now, dated at the start; counting on with the same `Tally`), which
    goes on from there.

    Without a context, the first attempt is timed from the call's start
    (the admission, which a `Call` leaves out of the attempt, is a few
    hundred nanoseconds of it), so a counted success reads the clock once
    more and counts its call and its attempt at once (`Tally.won`).
    """

    __slots__ = ()

    def __init__(
        self,
        pipe: Pipeline,
        key: str,
        permit: int,
        started: float,
        tally: Tally | None,
    ) -> None:
        self.pipe = pipe
        self.key = key
        self.permit = permit
        self.started = started
        self.t0 = started
        self.ctx = None
        self.tally = tally

    def admit(self, _: object = None) -> Step | Wait:
        """Admitted already, by `Pipeline.enter_observed`."""
        ctx = self.ctx
        if ctx is not None:
            pipe = self.pipe
            t0 = self.t0 = pipe.now()
            try:
                pipe.attempt_started(ctx, 1, t0)
            except BaseException as exc:  # noqa: BLE001 - see the driver
                return self.failed(exc)
        return INVOKE

    def succeeded(self, result: Any) -> Step | Wait:
        pipe = self.pipe
        ctx = self.ctx
        tally = self.tally
        if ctx is None:
            if tally is None:
                pipe.settle(self.permit, 0.0, None)
                self.value = result
                return RETURN
            duration = pipe.now() - self.started
            pipe.settle(self.permit, 0.0, None)
            tally.won(pipe.name, duration)
            self.value = result
            return RETURN
        duration = pipe.now() - self.t0
        pipe.attempt_ended(ctx, "success", duration, None)
        if tally is not None:
            tally.attempt(pipe.name, "success", duration)
        pipe.settle(self.permit, 0.0, None)
        self.value = result
        pipe.call_ended(ctx, "success", 1, self.started, None)
        if tally is not None:
            tally.call(pipe.name, "success", pipe.now() - self.started)
        return RETURN

    def _become_call(self) -> None:
        """From here on, a plain `Call` (the same slots)."""
        self.__class__ = Call  # type: ignore[assignment]
        self.attempt = 1
        self.error = None
        self.previous = None
        self.receipt = None
        self.timed = True
        if self.ctx is None:
            ctx = self.ctx = self.pipe.open(self.key, self.started)
            if ctx is not None:
                ctx.attempt = 1
                ctx.attempt_at = self.t0

    def failed(self, exc: BaseException) -> Step | Wait:
        self._become_call()
        return self.failed(exc)

    def abandon(self, error: BaseException) -> None:
        if self.ctx is not None or self.tally is not None:
            self._become_call()
            self.abandon(error)


class StoredCall(Call):
    """
    A call through a breaker whose state lives behind an asyncio client.

    Every breaker decision is a round trip to the store: a `Wait` the async
    driver awaits (the sync executor refuses such a breaker when built).
    """

    __slots__ = ()

    def admit(self, _: object = None) -> Step | Wait:
        ctx = self.ctx
        if ctx is not None:
            ctx.attempt = self.attempt + 1
        self.permit = None
        breaker = self.pipe.breaker
        assert breaker is not None  # noqa: S101 - chosen for its breaker
        return Wait(
            None,
            breaker._admit_async,
            (ctx,),
            self._gated,
            self._gate_refused,
        )

    def _record_success(
        self, breaker: CircuitBreaker, duration: float
    ) -> Step | Wait:
        return Wait(
            None,
            breaker._on_success_async,
            (self.permit, duration, self.ctx),
            self._won,
            _reraise,
        )

    def _record_failure(
        self, error: BaseException | None, duration: float
    ) -> Step | Wait:
        breaker = self.pipe.breaker
        assert breaker is not None  # noqa: S101 - chosen for its breaker
        return Wait(
            None,
            breaker._on_failure_async,
            (self.permit, error, duration, self.ctx),
            self._decide,
            self._record_raised,
        )

    def _record_raised(self, exc: BaseException) -> Step:
        """Recording the failure raised: a classifier's bug, chained."""
        if isinstance(exc, Exception):
            return self._hook_raised(exc)
        raise exc

    def _release(self, then: Callable[[], Step | Wait]) -> Step | Wait:
        breaker = self.pipe.breaker
        assert breaker is not None  # noqa: S101 - chosen for its breaker
        return Wait(
            None,
            breaker._release_async,
            (self.permit,),
            lambda _: then(),
            _reraise,
        )

    def _probe(self, breaker: CircuitBreaker) -> Step | Wait:
        return Wait(
            None,
            breaker._admit_async,
            (self.ctx,),
            lambda permit: Wait(
                None,
                breaker._release_async,
                (permit,),
                self._schedule,
                _reraise,
            ),
            self._gate_refused,
        )


def _listened(buses: tuple[EventBus, ...]) -> bool:
    """Whether anybody listens on any of ``buses``."""
    return any(bus._subs for bus in buses)


def _nothing(*_: object) -> None:
    """`Pipeline.settle` without a breaker."""


def _reraise(exc: BaseException) -> Step:
    """A wait's failure that ends the call as it is."""
    raise exc


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


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


def _error_type(error: BaseException | None) -> str:
    """The ``error_type`` label: the class name (``"result"``: none)."""
    return "result" if error is None else type(error).__name__


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
    "INVOKE",
    "RAISE",
    "RETURN",
    "Call",
    "MisuseError",
    "Pipeline",
    "Step",
    "Wait",
]
