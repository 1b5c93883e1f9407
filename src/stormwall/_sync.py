"""
ResilientExecutor: the pipeline for synchronous code.

The loop here and in `_async.py` list the same steps in the same order; the
diff between the two is ``await`` and which wait primitive is used.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from . import _validate
from ._errors import CircuitOpenError, ConfigError, RejectedError
from ._executor import (
    ExecutorBase,
    _outcome,
    chain,
    chain_handled,
    failure_outcome,
    tally_abandon,
)
from ._limiters import give_back


if TYPE_CHECKING:
    from collections.abc import Callable

    from ._component import CallContext


P = ParamSpec("P")
T = TypeVar("T")


class ResilientExecutor(ExecutorBase):
    """
    Run synchronous calls through the resilience pipeline.

    Every call passes the circuit breaker, the rate limiter and the bulkhead,
    runs, is recorded, and is retried with back-off while the retry policy
    allows; the fallback, if any, supplies the value of a call that failed
    for good. When retries run out, the function's own last exception is
    raised unchanged.

    Args:
        name: Names the executor in events, metrics and traces.
        limiter: A rate limiter, keyed by the call's key.
        retry_policy: When and how long to back off; ``None`` = one attempt.
        circuit_breaker: Fails calls fast while the upstream is unhealthy.
        bulkhead: Caps concurrent calls.
        timeout: Not supported here: a running thread cannot be interrupted
            safely. Use `AsyncResilientExecutor` for per-attempt timeouts, or
            ``RetryPolicy(deadline=...)`` to bound the total time.
        limiter_timeout: The longest a call may wait for the limiter;
            ``None`` waits as long as needed, ``0`` never waits. A retry
            policy's ``deadline`` bounds this wait and the bulkhead's too:
            a wait that would end past it is refused at once.
        fallback: ``fallback(error)`` returns the value of a call that failed
            for good (rejections included).
        clock: The clock of the whole pipeline (default: the one its
            components were given, else real time).
        bus: Where events go (default: `stormwall.default_bus`).

    Components given no ``name`` take the executor's, so each executor's
    breaker, limiter and bulkhead report under their own name; two distinct
    components of one kind and name on one bus are logged as a warning on
    the ``stormwall`` logger when wired (their metrics would blend).

    Raises:
        ConfigError: a parameter outside its domain, components whose
            clocks disagree, or a limiter that can never grant the 1 permit
            an attempt takes.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    def _check_async_only(self) -> None:
        # A component whose state lives behind an asyncio client (a Redis
        # backend built on redis.asyncio) cannot serve a synchronous caller:
        # refuse it now rather than on the first call.
        for param, component in self._components():
            if getattr(component, "_async_only", False) or getattr(
                component, "_async_store", False
            ):
                raise ConfigError(
                    param,
                    f"{component.name!r} uses an asyncio client; give it a "
                    "synchronous client or use AsyncResilientExecutor",
                )

    def _check_timeout(self, timeout: object) -> float | None:
        if timeout is not None:
            raise ConfigError(
                "timeout",
                "per-attempt timeouts need AsyncResilientExecutor (a running "
                "thread cannot be interrupted safely); bound the total time "
                "with RetryPolicy(deadline=...)",
            )
        return None

    def run(
        self,
        key: str,
        fn: Callable[P, T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """
        Call ``fn(*args, **kwargs)`` through the pipeline.

        Args:
            key: Whose call this is: the limiter's key (e.g. a user or
                tenant id). Never a metric label unless opted in.
            fn: The function to protect.
            args: Its positional arguments.
            kwargs: Its keyword arguments.

        Returns:
            What ``fn`` returned (or the fallback's value). When retries on
            a result rejected by ``retry_on_result`` run out, that last
            result is returned as is: the fallback replaces exceptions only.

        Raises:
            CircuitOpenError: the breaker is open (chained to the last
                failure when it opened mid-retry).
            RateLimitedError: the limiter would have made the call wait past
                ``limiter_timeout``, or past the retry policy's ``deadline``.
            BulkheadFullError: no concurrency slot within ``max_wait`` (or
                before the ``deadline``).
            TypeError: ``fn`` is a coroutine function, or returned an
                awaitable: use `AsyncResilientExecutor` (not retried, not a
                breaker failure).
            Exception: ``fn``'s own last exception, when retries ran out.
        """
        # `_open` only when it has work (a key to refuse, a listener to
        # tell): a call without listeners skips it.
        ctx = None
        for bus in self._buses:
            if bus._subs or key.__class__ is not str:
                ctx = self._open(key)
                break
        clock = self._clock
        breaker, limiter, bulkhead = (
            self._breaker,
            self._limiter,
            self._bulkhead,
        )
        # The clock is read only for what uses the time: events, a budget, a
        # deadline (`_dated`), a breaker's slow-call rule (`_timed`).
        # tally: pull metrics (stormwall/_tally.py), None unless a pull
        # exporter is attached to this bus; it needs the times too.
        tally = self._bus._tally
        started = (
            clock.now()
            if ctx is not None or self._dated or tally is not None
            else 0.0
        )
        timed = ctx is not None or self._timed or tally is not None
        if self._budget is not None:
            self._budget._deposit(started)
        attempt = 0
        error: BaseException | None = None
        previous: float | None = None
        try:
            while True:
                # -- admission: breaker, limiter, bulkhead
                if ctx is not None:
                    ctx.attempt = attempt + 1
                permit = None
                if breaker is not None:
                    try:
                        permit = breaker._admit(ctx)
                    except CircuitOpenError as exc:
                        return cast(
                            "T",
                            self._give_up(ctx, exc, error, attempt, started),
                        )
                if limiter is not None or bulkhead is not None:
                    # A permit the bulkhead then refuses is given back; no
                    # wait runs past the deadline (``left``: the time left).
                    deadline = self._deadline
                    receipt: list[Any] | None = None
                    try:
                        left = (
                            None
                            if deadline is None
                            else started + deadline - clock.now()
                        )
                        if limiter is not None:
                            wait = self._limiter_timeout
                            if left is not None and (
                                wait is None or left < wait
                            ):
                                wait = left if left > 0 else 0.0
                            if self._refunds:
                                receipt = []
                                waited = limiter._acquire_refundable(
                                    key, 1, wait, ctx, receipt
                                )
                            else:
                                waited = limiter._acquire(key, 1, wait, ctx)
                            if left is not None and waited:
                                left -= waited
                        if bulkhead is not None:
                            if left is None:
                                bulkhead._acquire(ctx)
                            else:
                                bulkhead._acquire(ctx, left)
                    except BaseException as exc:
                        if receipt:
                            give_back(receipt)
                        if breaker is not None:
                            breaker._release(permit)
                        if isinstance(exc, RejectedError):
                            return cast(
                                "T",
                                self._give_up(
                                    ctx, exc, error, attempt, started
                                ),
                            )
                        raise

                # -- the call
                attempt += 1
                t0 = clock.now() if timed else 0.0
                try:
                    if ctx is not None:
                        self._attempt_started(ctx, attempt, t0)
                    result = fn(*args, **kwargs)
                    if type(result) not in _plain and _awaitable(result):
                        raise _AwaitableError(fn, result)  # noqa: TRY301
                except BaseException as exc:
                    duration = clock.now() - t0 if timed else 0.0
                    if tally is not None:  # tally: attempt end (raised)
                        tally.attempt(self._name, _outcome(exc), duration)
                    if bulkhead is not None:
                        bulkhead._release(ctx)
                    if not isinstance(exc, Exception) or isinstance(
                        exc, _AwaitableError
                    ):
                        # Interrupted, not failed (or misused): free the
                        # probe slot, record nothing; the outer handler
                        # reports it.
                        if breaker is not None:
                            breaker._release(permit)
                        raise
                    if ctx is not None:
                        self._attempt_ended(ctx, _outcome(exc), duration, exc)
                    if breaker is not None:
                        breaker._on_failure(permit, exc, duration, ctx)
                    error, rejected_result = exc, None
                else:
                    duration = clock.now() - t0 if timed else 0.0
                    if bulkhead is not None:
                        bulkhead._release(ctx)
                    test = self._result_test
                    try:
                        retry = test is not None and test(result)
                    except BaseException:
                        if breaker is not None:
                            breaker._release(permit)
                        raise
                    if tally is not None:  # tally: attempt end (returned)
                        tally.attempt(
                            self._name,
                            "failure" if retry else "success",
                            duration,
                        )
                    if not retry:
                        if ctx is not None:
                            self._attempt_ended(ctx, "success", duration, None)
                        if breaker is not None:
                            breaker._on_success(permit, duration, ctx)
                        if ctx is not None:
                            self._call_ended(
                                ctx, "success", attempt, started, None
                            )
                        if tally is not None:  # tally: call end (success)
                            tally.call(
                                self._name, "success", t0 + duration - started
                            )
                        return result
                    if ctx is not None:
                        self._attempt_ended(ctx, "failure", duration, None)
                    if breaker is not None:
                        breaker._on_failure(permit, None, duration, ctx)
                    error, rejected_result = None, result

                # -- retry?
                try:
                    delay = None
                    if self._retry_wanted(attempt, error):
                        if breaker is not None and breaker._rejecting():
                            breaker._release(breaker._admit(ctx))
                        delay = self._retry_delay(
                            attempt,
                            error,
                            rejected_result,
                            started,
                            previous,
                            ctx,
                        )
                except CircuitOpenError as exc:
                    return cast(
                        "T", self._give_up(ctx, exc, error, attempt, started)
                    )
                except Exception as exc:
                    # A user hook (retry_on, retry_after) raised: surface its
                    # bug, with the failure it was judging as context.
                    chain(exc, error, context=True)
                    raise
                if delay is None:
                    if error is None:
                        # Retries on a result ran out: the caller gets the
                        # last result, as the function returned it.
                        if ctx is not None:
                            self._call_ended(
                                ctx, "failure", attempt, started, None
                            )
                        if tally is not None:  # tally: call end (result)
                            tally.call(
                                self._name, "failure", clock.now() - started
                            )
                        return cast("T", rejected_result)
                    return cast(
                        "T", self._give_up(ctx, error, None, attempt, started)
                    )
                clock.sleep(delay)
                previous = delay
        except BaseException as exc:
            if ctx is not None:
                self._abandon(ctx, exc, attempt, started)
            if tally is not None:  # tally: call end (raised)
                tally_abandon(self, tally, exc, attempt, started)
            raise

    def _give_up(
        self,
        ctx: CallContext | None,
        error: BaseException,
        cause: BaseException | None,
        attempts: int,
        started: float,
    ) -> Any:
        """End a failed call: the fallback's value, or raise ``error``."""
        chain(error, cause)
        fallback = self._fallback
        if fallback is None or not isinstance(error, Exception):
            if ctx is not None:
                self._call_ended(
                    ctx,
                    failure_outcome(error, attempts),
                    attempts,
                    started,
                    error,
                )
            raise error
        try:
            value = fallback(error)
        except Exception as exc:
            # As if it had run while handling the failure: keep it.
            chain_handled(exc, error)
            if ctx is not None:
                self._call_ended(ctx, "failure", attempts, started, exc)
            raise
        self._fallback_used(ctx, error, attempts, started)
        return value

    @overload
    def protect(self, fn: Callable[P, T], /) -> Callable[P, T]: ...

    @overload
    def protect(
        self, key: str = "default", /
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...

    @overload
    def protect(
        self, /, *, key: str | Callable[..., str]
    ) -> Callable[[Callable[P, T]], Callable[P, T]]: ...

    def protect(
        self,
        fn: Any = None,
        /,
        *,
        key: Any = None,
    ) -> Any:
        """
        Decorate a function so every call of it runs through `run`.

        Use it bare (``@executor.protect``) or called
        (``@executor.protect(key=...)``); bare, or called without a key,
        every call uses the key ``"default"``, like `run` callers who share
        one budget.

        Args:
            fn: The function, when used bare; or a fixed key (a str).
            key: A fixed key, or a function of the call's arguments that
                returns it (e.g. ``lambda user_id, **_: user_id``); by
                keyword, since a function given first is the one to protect.

        Raises:
            TypeError: the function is a coroutine function (use
                `AsyncResilientExecutor`), at decoration time.
            ConfigError: ``key`` is neither a str nor a function.

        .. versionadded:: 0.1.0
        """
        key_of, bare = _protect_args(fn, key)

        def decorate(fn: Callable[P, T]) -> Callable[P, T]:
            if inspect.iscoroutinefunction(fn):
                raise _AwaitableError(fn, None)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
                return self.run(key_of(*args, **kwargs), fn, *args, **kwargs)

            return wrapper

        return decorate if bare is None else decorate(bare)


def _protect_args(fn: Any, key: Any) -> tuple[Callable[..., str], Any]:
    """
    Sort out ``protect``'s forms.

    Returns:
        The key function, and the function to protect at once when used
        bare (else ``None``).
    """
    if fn is not None and key is not None:
        raise ConfigError(
            "key", "give the key once: protect(key=...) or protect('key')"
        )
    if fn is None:
        return _key_function("default" if key is None else key), None
    if isinstance(fn, str) or not callable(fn):
        return _key_function(fn), None  # a fixed key, or a ConfigError
    return _key_function("default"), fn


def _awaitable(value: object) -> bool:
    """
    Whether a result is awaitable (a misuse of the sync executor).

    Types found plain are remembered, so the check costs a set look-up.
    """
    if inspect.isawaitable(value):
        return True
    if len(_plain) < _PLAIN_MAX:
        _plain.add(value.__class__)
    return False


# Result types known not to be awaitable (bounded: dynamic classes are not
# pinned forever).
_plain: set[type] = {
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
_PLAIN_MAX = 1024


class _AwaitableError(TypeError):
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


def _key_function(key: object) -> Callable[..., str]:
    return _validate.key_function(
        key, "a str or a function returning one", fixed=True
    )


__all__ = ["ResilientExecutor"]
